"""Billing table: customers, ingest aliases, billable metrics and API keys.

Keys: `customer#<id>` / `alias#<alias>` / `apikey#<sha256>` items with sk `#`; all metrics share the
partition `metrics` (few items) so the aggregator can read them in one strongly consistent Query,
which a GSI cannot give. Listings of customers and keys use gsi1 (eventually consistent is fine).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from functools import lru_cache

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import ITEM, PARSED_KEPT, all_gsi1, batch_get, get_item, query_gsi1
from tally.billing import exact_json
from tally.billing.customers import Customer, KeyHandover, KeyWindow
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric, EventTypeFilter, PropertyFilter
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.ports import ApiKeyRecord, Page

METRICS = "metrics"


def _time(value: datetime | None) -> dict | None:
    return None if value is None else {"S": format_sortable(value)}


def _opt_time(item: dict, name: str) -> datetime | None:
    return parse_rfc3339(item[name]["S"]) if name in item else None


def _compact(item: dict) -> dict:
    return {k: v for k, v in item.items() if v is not None}


def encode_cursor(last_key: dict | None) -> str | None:
    if not last_key:
        return None
    return base64.urlsafe_b64encode(json.dumps(last_key).encode()).decode()


def decode_cursor(cursor: str | None, field: str = "next_page") -> dict | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(key, dict):
            raise ValueError
        return key
    except ValueError as exc:
        raise InvalidInput(field, "is not a cursor this API returned") from exc


def _customer_item(c: Customer) -> dict:
    return _compact(
        {
            "pk": {"S": f"customer#{c.id}"},
            "sk": {"S": ITEM},
            "gsi1pk": {"S": "customers"},
            "gsi1sk": {"S": f"{format_sortable(c.created_at)}#{c.id}"},
            "id": {"S": c.id},
            "name": {"S": c.name},
            "external_id": {"S": c.external_id} if c.external_id else None,
            "aliases": {"S": json.dumps(list(c.ingest_aliases))},
            "custom_fields": {"S": json.dumps(c.custom_fields)},
            "created_at": _time(c.created_at),
            "updated_at": _time(c.updated_at),
            "archived_at": _time(c.archived_at),
            "salesforce_account_id": {"S": c.salesforce_account_id} if c.salesforce_account_id else None,
            "alias_since": {"S": json.dumps({a: format_sortable(t) for a, t in c.alias_since.items()})}
            if c.alias_since
            else None,
            "former_keys": {"S": json.dumps([_window_json(w) for w in c.former_keys])} if c.former_keys else None,
        }
    )


def _window_json(w: KeyWindow) -> list:
    return [w.key, None if w.since is None else format_sortable(w.since), None if w.until is None else format_sortable(w.until)]


def _window(value: list) -> KeyWindow:
    key, since, until = value
    return KeyWindow(key, None if since is None else parse_rfc3339(since), None if until is None else parse_rfc3339(until))


def _customer(item: dict) -> Customer:
    return Customer(
        id=item["id"]["S"],
        name=item["name"]["S"],
        external_id=item.get("external_id", {}).get("S"),
        ingest_aliases=tuple(json.loads(item["aliases"]["S"])),
        custom_fields=json.loads(item["custom_fields"]["S"]),
        created_at=_opt_time(item, "created_at"),
        updated_at=_opt_time(item, "updated_at"),
        archived_at=_opt_time(item, "archived_at"),
        salesforce_account_id=item.get("salesforce_account_id", {}).get("S"),
        alias_since={a: parse_rfc3339(t) for a, t in json.loads(item["alias_since"]["S"]).items()}
        if "alias_since" in item
        else {},
        former_keys=tuple(_window(w) for w in json.loads(item["former_keys"]["S"])) if "former_keys" in item else (),
    )


def _alias_put(alias: str, customer_id: str, since: datetime | None = None, at: datetime | None = None) -> dict:
    if since is not None:
        # Taken over after another customer released it: still free, and released at the edge read
        # (where this customer's reads of it begin). An update, so the release's window stays on the
        # item with the claim's instant: ingest routes the handover hour's events by them.
        return {
            "Update": {
                "Key": {"pk": {"S": f"alias#{alias}"}, "sk": {"S": ITEM}},
                "UpdateExpression": "SET customer_id = :me, claimed_at = :at",
                "ConditionExpression": "customer_id = :me OR (attribute_not_exists(customer_id) AND released_until = :since)",
                "ExpressionAttributeValues": {":me": {"S": customer_id}, ":since": _time(since), ":at": _time(at or since)},
            }
        }
    if since is None:
        # An alias belongs to one customer: new, or already this customer's.
        condition, values = "attribute_not_exists(pk) OR customer_id = :me", {":me": {"S": customer_id}}
    else:
        # Taken over after another customer released it: still free, and released at the edge read
        # (which is where this customer's reads of it begin).
        condition = "customer_id = :me OR (attribute_not_exists(customer_id) AND released_until = :since)"
        values = {":me": {"S": customer_id}, ":since": _time(since)}
    return {
        "Put": {
            "Item": {"pk": {"S": f"alias#{alias}"}, "sk": {"S": ITEM}, "customer_id": {"S": customer_id}},
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


def _alias_release(alias: str, customer_id: str, until: datetime, at: datetime) -> dict:
    """Free an alias but keep when (`at`) and where its former owner's usage of it ends, for the
    next owner and for ingest (KeyHandover)."""
    return {
        "Update": {
            "Key": {"pk": {"S": f"alias#{alias}"}, "sk": {"S": ITEM}},
            "UpdateExpression": "REMOVE customer_id, claimed_at SET released_until = :until, released_at = :at",
            "ConditionExpression": "customer_id = :me",
            "ExpressionAttributeValues": {":me": {"S": customer_id}, ":until": _time(until), ":at": _time(at)},
        }
    }


# Attributes a customer update never rewrites (keys and creation facts).
_FIXED = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "id", "created_at"})


def _customer_update(before: Customer, after: Customer) -> dict:
    """An Update of the attributes that differ between `before` and `after` alone, conditional on
    each of them (and the aliases) still being as read: a concurrent write of another attribute (a
    custom field, say) is kept, and a concurrent write of the same ones is a Conflict."""
    old, new = _customer_item(before), _customer_item(after)
    changed = sorted(n for n in (set(old) | set(new)) - _FIXED if old.get(n) != new.get(n))
    names = {f"#a{i}": n for i, n in enumerate(changed)}
    names["#aliases"] = "aliases"
    values: dict = {":aliases": old["aliases"]}
    sets, removes, conditions = [], [], ["attribute_exists(pk)", "#aliases = :aliases"]
    for i, n in enumerate(changed):
        if n in new:
            values[f":n{i}"] = new[n]
            sets.append(f"#a{i} = :n{i}")
        else:
            removes.append(f"#a{i}")
        if n == "updated_at":
            continue  # every write moves it; custom field writes too
        if n in old:
            values[f":o{i}"] = old[n]
            conditions.append(f"#a{i} = :o{i}")
        else:
            conditions.append(f"attribute_not_exists(#a{i})")
    expression = " ".join(part for part in (
        "SET " + ", ".join(sets) if sets else "", "REMOVE " + ", ".join(removes) if removes else ""
    ) if part)
    update = {
        "Key": {"pk": old["pk"], "sk": old["sk"]},
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if not expression:  # nothing differs: still check the record is as read
        return {"ConditionCheck": update}
    return {"Update": {**update, "UpdateExpression": expression}}


class DynamoBillingStore:
    """Implements CustomerStore, MetricStore and ApiKeyStore over the billing table."""

    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    # -- customers ---------------------------------------------------------------------------
    def _transact(self, actions: list[dict], aliases: list[str | None]) -> None:
        for action in actions:
            next(iter(action.values()))["TableName"] = self._table
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            for alias, reason in zip(aliases, reasons):
                if reason.get("Code") == "ConditionalCheckFailed" and alias is not None:
                    raise Conflict(f"ingest alias {alias!r} already belongs to another customer") from exc
            if error_code(exc) == "TransactionCanceledException" and any(
                r.get("Code") == "ConditionalCheckFailed" for r in reasons
            ):
                raise Conflict("the customer changed or already exists; retry") from exc
            raise translate(exc) from exc

    def create(self, customer: Customer) -> None:
        actions = [{"Put": {"Item": _customer_item(customer), "ConditionExpression": "attribute_not_exists(pk)"}}]
        # The customer's own id is an ingest key too: claiming it in the same namespace, in the same
        # transaction, makes "an alias equal to another customer's id" lose a conditional write
        # (that once counted one event for two customers).
        actions.append(_alias_put(customer.id, customer.id))
        actions += [_alias_put(alias, customer.id, customer.alias_since.get(alias), customer.created_at)
                    for alias in customer.claimed_aliases]
        self._transact(actions, [None, None, *customer.claimed_aliases])

    def get(self, customer_id: str) -> Customer | None:
        item = self._get(f"customer#{customer_id}")
        return None if item is None else _customer(item)

    def by_alias(self, alias: str) -> Customer | None:
        item = self._get(f"alias#{alias}")  # a released alias keeps its item, without an owner
        return None if item is None or "customer_id" not in item else self.get(item["customer_id"]["S"])

    def list(self, limit: int, cursor: str | None) -> Page:
        return self._list_gsi("customers", limit, cursor, _customer)

    def replace_aliases(self, before: Customer, after: Customer) -> None:
        removed = [a for a in before.claimed_aliases if a not in after.claimed_aliases]
        added = [a for a in after.claimed_aliases if a not in before.claimed_aliases]
        ends = {w.key: w.until for w in after.former_keys}
        # Only the attributes that change are written, each conditional on its value as read (and
        # the aliases, whose claims this transaction moves): nothing written concurrently is lost.
        actions = [_customer_update(before, after)]
        actions += [_alias_release(a, after.id, ends.get(a) or after.updated_at, after.updated_at) for a in removed]
        actions += [_alias_put(a, after.id, after.alias_since.get(a), after.updated_at) for a in added]
        if after.archived_at is not None and before.archived_at is None:
            # The id's own claim records the archive instant: ingest reads it to ignore later events.
            claim = _alias_put(after.id, after.id)
            claim["Put"]["Item"]["archived_at"] = _time(after.archived_at)
            actions.append(claim)
        if len(actions) > 100:
            raise InvalidInput("ingest_aliases", "changes too many aliases at once (at most 99)")
        self._transact(actions, [None, *[None] * len(removed), *added])

    def released_until(self, aliases: list[str] | tuple[str, ...]) -> dict[str, datetime]:
        """Where each released alias's former owner's usage ends (the aliases free after a release),
        read consistently: a claim is conditional on it (see _alias_put)."""
        keys = [{"pk": {"S": f"alias#{a}"}, "sk": {"S": ITEM}} for a in aliases]
        return {
            item["pk"]["S"].removeprefix("alias#"): parse_rfc3339(item["released_until"]["S"])
            for item in batch_get(self._client, self._table, keys)
            if "customer_id" not in item and "released_until" in item
        }

    def handovers(self, keys: set[str]) -> dict[str, KeyHandover]:
        """One BatchGetItem per 100 keys on the `alias#` claims (eventually consistent: an event
        racing its customer's archive by milliseconds may still count)."""
        found: dict[str, KeyHandover] = {}
        claims = [{"pk": {"S": f"alias#{k}"}, "sk": {"S": ITEM}} for k in sorted(keys)]
        projection = "pk, customer_id, archived_at, released_at, released_until, claimed_at"
        for item in batch_get(self._client, self._table, claims, projection, consistent=False):
            key = item["pk"]["S"].removeprefix("alias#")
            if "archived_at" in item:
                found[key] = KeyHandover(ignored_from=parse_rfc3339(item["archived_at"]["S"]))
            elif "released_at" in item:
                found[key] = KeyHandover(
                    released=(parse_rfc3339(item["released_at"]["S"]), parse_rfc3339(item["released_until"]["S"])),
                    owner=item["customer_id"]["S"] if "customer_id" in item else None,
                    claimed_at=_opt_time(item, "claimed_at"),
                )
        return found

    # -- metrics -----------------------------------------------------------------------------
    def put(self, metric: BillableMetric) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_metric_item(metric),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"billable metric {metric.id} already exists") from exc
            raise translate(exc) from exc

    def all(self) -> list[BillableMetric]:
        metrics = []
        paginator = self._client.get_paginator("query")
        try:
            for page in paginator.paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": METRICS}},
                ConsistentRead=True,
            ):
                metrics.extend(_metric(item) for item in page["Items"])
        except ClientError as exc:
            raise translate(exc) from exc
        return metrics

    def archive(self, metric_id: str, at: datetime) -> BillableMetric:
        try:
            item = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": METRICS}, "sk": {"S": metric_id}},
                UpdateExpression="SET archived_at = if_not_exists(archived_at, :at)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":at": _time(at)},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFound(f"billable metric {metric_id} not found") from exc
            raise translate(exc) from exc
        return _metric(item)

    # -- api keys ----------------------------------------------------------------------------
    def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        item = self._get(f"apikey#{key_hash}")
        return None if item is None else _api_key(item)

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        for record in self.list_api_keys():
            if record.key_id == key_id:
                item = self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": f"apikey#{record.key_hash}"}, "sk": {"S": ITEM}},
                    UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :at)",
                    ExpressionAttributeValues={":at": _time(at)},
                    ReturnValues="ALL_NEW",
                )["Attributes"]
                return _api_key(item)
        raise KeyError(key_id)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        return [_api_key(item) for item in all_gsi1(self._client, self._table, "apikeys")]

    def put_api_key(self, record: ApiKeyRecord) -> None:
        item = _compact(
            {
                "pk": {"S": f"apikey#{record.key_hash}"},
                "sk": {"S": ITEM},
                "gsi1pk": {"S": "apikeys"},
                "gsi1sk": {"S": f"{format_sortable(record.created_at)}#{record.key_id}"},
                "key_id": {"S": record.key_id},
                "key_hash": {"S": record.key_hash},
                "name": {"S": record.name},
                "created_at": _time(record.created_at),
                "revoked_at": _time(record.revoked_at),
            }
        )
        self._client.put_item(TableName=self._table, Item=item)

    # -- shared ------------------------------------------------------------------------------
    def _get(self, pk: str, sk: str = ITEM) -> dict | None:
        return get_item(self._client, self._table, pk, sk)

    def _list_gsi(self, partition: str, limit: int, cursor: str | None, convert) -> Page:
        items, last_key = query_gsi1(self._client, self._table, partition, limit, decode_cursor(cursor))
        return Page([convert(item) for item in items], encode_cursor(last_key))


class DynamoMetricStore:
    """MetricStore view of the billing table (get by id)."""

    def __init__(self, billing: DynamoBillingStore) -> None:
        self._billing = billing
        self.put, self.all, self.archive = billing.put, billing.all, billing.archive

    def get(self, metric_id: str) -> BillableMetric | None:
        item = self._billing._get(METRICS, metric_id)
        return None if item is None else _metric(item)

    def replace(self, before: BillableMetric, after: BillableMetric) -> None:
        """Rewrite the definition if the stored one still reads as `before`: conditional on the
        exact definition text read (a concurrent rename or custom field change is a Conflict)."""
        item = self._billing._get(METRICS, before.id)
        if item is None or _metric(item) != before:
            raise Conflict(f"billable metric {before.id} changed while it was being updated; retry")
        try:
            self._billing._client.update_item(
                TableName=self._billing._table,
                Key={"pk": {"S": METRICS}, "sk": {"S": before.id}},
                UpdateExpression="SET #d = :after",
                ConditionExpression="#d = :before",
                ExpressionAttributeNames={"#d": "definition"},  # a reserved word
                ExpressionAttributeValues={":before": item["definition"], ":after": _metric_item(after)["definition"]},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"billable metric {before.id} changed while it was being updated; retry") from exc
            raise translate(exc) from exc


    def activate(self, metric_id: str, at: datetime) -> BillableMetric:
        # Conditional on no activation instant yet: the first activation wins, the others read it.
        # It names only pk and activated_at and returns nothing: the aggregator's role may make
        # exactly this write (infra/constructs/backfill.py grant_activation), then reads.
        try:
            self._billing._client.update_item(
                TableName=self._billing._table,
                Key={"pk": {"S": METRICS}, "sk": {"S": metric_id}},
                UpdateExpression="SET activated_at = :at",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(activated_at)",
                ExpressionAttributeValues={":at": _time(at)},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc
        stored = self.get(metric_id)
        if stored is None:
            raise NotFound(f"billable metric {metric_id} not found")
        return stored


class DynamoApiKeyStore:
    """ApiKeyStore view of the billing table."""

    def __init__(self, billing: DynamoBillingStore) -> None:
        self.put = billing.put_api_key
        self.by_hash = billing.by_hash
        self.list = billing.list_api_keys
        self.revoke = billing.revoke


def _metric_item(m: BillableMetric) -> dict:
    definition = {
        "name": m.name,
        "aggregation_type": m.aggregation_type.value,
        "aggregation_key": m.aggregation_key,
        "event_type_filter": None
        if m.event_type_filter is None
        else {"in_values": m.event_type_filter.in_values, "not_in_values": m.event_type_filter.not_in_values},
        "property_filters": [
            {"name": f.name, "exists": f.exists, "in_values": f.in_values, "not_in_values": f.not_in_values}
            for f in m.property_filters
        ],
        "group_keys": [list(k) for k in m.group_keys],
        "custom_fields": m.custom_fields,
    }
    return _compact(
        {
            "pk": {"S": METRICS},
            "sk": {"S": m.id},
            "definition": {"S": exact_json.dumps(definition)},
            "created_at": _time(m.created_at),
            "activated_at": _time(m.activated_at),
            "archived_at": _time(m.archived_at),
        }
    )


def _tuple(values):
    return None if values is None else tuple(values)


def _metric(item: dict) -> BillableMetric:
    times = tuple(item[name]["S"] if name in item else None for name in ("created_at", "activated_at", "archived_at"))
    return _parsed_metric(item["sk"]["S"], item["definition"]["S"], *times)


@lru_cache(maxsize=PARSED_KEPT)  # see PARSED_KEPT: the metric is immutable by convention, shared
def _parsed_metric(
    metric_id: str, definition: str, created_at: str | None, activated_at: str | None, archived_at: str | None
) -> BillableMetric:
    d = json.loads(definition)
    etf = d.get("event_type_filter")
    return BillableMetric(
        id=metric_id,
        name=d["name"],
        aggregation_type=Aggregation(d["aggregation_type"]),
        aggregation_key=d.get("aggregation_key"),
        event_type_filter=None if etf is None else EventTypeFilter(_tuple(etf["in_values"]), _tuple(etf["not_in_values"])),
        property_filters=tuple(
            PropertyFilter(f["name"], f["exists"], _tuple(f["in_values"]), _tuple(f["not_in_values"]))
            for f in d["property_filters"]
        ),
        group_keys=tuple(tuple(k) for k in d["group_keys"]),
        custom_fields=d.get("custom_fields") or {},
        created_at=None if created_at is None else parse_rfc3339(created_at),
        activated_at=None if activated_at is None else parse_rfc3339(activated_at),
        archived_at=None if archived_at is None else parse_rfc3339(archived_at),
    )


def _api_key(item: dict) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=item["key_id"]["S"],
        key_hash=item["key_hash"]["S"],
        name=item["name"]["S"],
        created_at=_opt_time(item, "created_at"),
        revoked_at=_opt_time(item, "revoked_at"),
    )
