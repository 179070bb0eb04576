"""Offset notification configurations, the lifecycle occurrence index and delivery claims, in the
billing table (services/notifications.py explains the protocol).

Keys:
- `notification#<id>` / `#`: a configuration (exact JSON `document`, `version`), listed through
  gsi1 `notifications` by creation; its delivery watermark is kept beside it (`evaluated_until`,
  `evaluated_key`), in attributes an edit never writes.
- `notifications#count` / `#`: how many configurations were ever created (bounded at create).
- `notification_uniq#<uniqueness_key>` / `#`: a create's uniqueness claim.
- `lifecycle#<type>#<YYYY-MM-DD>` / `<sortable instant>#<occurrence key>`: one occurrence, in the
  partition of its type and UTC day, sorted by instant.
- `notification_late#<config id>` / `<occurrence key>`: an occurrence that was already due for
  that configuration when it was written (billing/notifications.py `late_for`), with `written_at`;
  the next run delivers it and deletes the entry.
- `notification_delivery#<config id>#<occurrence key>` / `#`: one delivery's claim and outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Callable, Iterable, Iterator

from botocore.exceptions import ClientError

from tally.adapters.clock import system_clock
from tally.adapters.dynamo.client import claim, dynamodb, error_code, translate
from tally.adapters.dynamo.reads import ITEM, all_gsi1, get_item, query_pages
from tally.billing import exact_json
from tally.billing.errors import Conflict, InvalidInput
from tally.billing.limits import MAX_NOTIFICATION_CONFIGS
from tally.billing.notifications import Occurrence, is_live, late_for, may_be_late, parse_offset, window_days
from tally.billing.time import format_rfc3339, format_sortable, parse_rfc3339
from tally.services.notifications import BUSY, CLAIMED, DELIVERED, Watermark

_LIST = "notifications"
_COUNT = "notifications#count"


def _config_pk(config_id: str) -> str:
    return f"notification#{config_id}"


def _late_pk(config_id: str) -> str:
    return f"notification_late#{config_id}"


def _delivery_pk(config_id: str, key: str) -> str:
    return f"notification_delivery#{config_id}#{key}"


def _index_key(occurrence: Occurrence) -> dict:
    day = occurrence.instant.astimezone(UTC).date().isoformat()
    return {
        "pk": {"S": f"lifecycle#{occurrence.type}#{day}"},
        "sk": {"S": f"{format_sortable(occurrence.instant)}#{occurrence.key}"},
    }


def _occurrence_json(occurrence: Occurrence) -> str:
    return exact_json.dumps(
        {
            "type": occurrence.type,
            "instant": format_rfc3339(occurrence.instant),
            "customer_id": occurrence.customer_id,
            "contract_id": occurrence.contract_id,
            "subject": occurrence.subject,
            "properties": occurrence.properties,
        }
    )


def _occurrence(item: dict) -> Occurrence:
    d = exact_json.loads(item["document"]["S"])
    return Occurrence(d["type"], parse_rfc3339(d["instant"]), d["customer_id"], d["contract_id"], d["subject"], d["properties"])


class DynamoLifecycleIndex:
    """Writes occurrences ahead of the contract or invoice write that makes them (see the module
    of services/notifications.py). Idempotent by key: an occurrence is always the same item."""

    def __init__(self, table: str, client=None, clock: Callable[[], datetime] = system_clock) -> None:
        self._table = table
        self._client = client or dynamodb()
        self._clock = clock

    def record(self, occurrences: Iterable[Occurrence]) -> None:
        # One PutItem each (not BatchWriteItem): every function that writes contracts or invoices
        # already holds dynamodb:PutItem on the table, and a contract has a handful of them.
        occurrences = list(occurrences)
        for occurrence in occurrences:
            self._put({**_index_key(occurrence), "document": {"S": _occurrence_json(occurrence)}})
        self._record_late(occurrences)

    def _record_late(self, occurrences: list[Occurrence]) -> None:
        """After the index entries (so that a run either walks an occurrence or finds it here):
        the occurrences already due for a live configuration, in that configuration's late
        partition. The configurations are read only when some occurrence is near enough to be."""
        written_at = self._clock()
        near = [o for o in occurrences if may_be_late(o, written_at)]
        if not near:
            return
        for config in DynamoNotificationStore(self._table, self._client).list():
            if not is_live(config):
                continue
            offset = parse_offset(config["policy"]["offset"])
            for occurrence in near:
                if occurrence.type == config["policy"]["type"] and late_for(offset, occurrence, written_at):
                    # Idempotent by key (configuration, occurrence): a retried write is the same item.
                    self._put({
                        "pk": {"S": _late_pk(config["id"])},
                        "sk": {"S": occurrence.key},
                        "document": {"S": _occurrence_json(occurrence)},
                        "written_at": {"S": format_rfc3339(written_at)},
                    })

    def _put(self, item: dict) -> None:
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except ClientError as exc:
            raise translate(exc) from exc


class DynamoNotificationStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    # -- configurations ------------------------------------------------------------------------
    def create(self, config: dict, uniqueness_key: str | None) -> None:
        # Idempotent by key: the new id (attribute_not_exists), the uniqueness claim and the count,
        # all in one transaction or not at all.
        actions: list[dict] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._item(config, 1),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": _COUNT}, "sk": {"S": ITEM}},
                    "UpdateExpression": "ADD n :one",
                    "ConditionExpression": "attribute_not_exists(n) OR n < :max",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":max": {"N": str(MAX_NOTIFICATION_CONFIGS)}},
                }
            },
        ]
        if uniqueness_key is not None:
            actions.append(claim(self._table, f"notification_uniq#{uniqueness_key}", notification_id=config["id"]))
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if len(codes) > 2 and codes[2] == "ConditionalCheckFailed":
                raise Conflict(f"a notification with uniqueness_key {uniqueness_key!r} already exists") from exc
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                raise InvalidInput("body", f"at most {MAX_NOTIFICATION_CONFIGS} notifications can be created") from exc
            raise translate(exc) from exc

    def _item(self, config: dict, version: int) -> dict:
        stored = {k: v for k, v in config.items() if not k.startswith("_")}
        return {
            "pk": {"S": _config_pk(config["id"])},
            "sk": {"S": ITEM},
            "gsi1pk": {"S": _LIST},
            "gsi1sk": {"S": f"{format_sortable(parse_rfc3339(config['created_at']))}#{config['id']}"},
            "document": {"S": exact_json.dumps(stored)},
            "version": {"N": str(version)},
        }

    @staticmethod
    def _config(item: dict) -> dict:
        config = exact_json.loads(item["document"]["S"])
        config["_version"] = int(item["version"]["N"])
        if "evaluated_until" in item:
            config["_evaluated_until"] = item["evaluated_until"]["S"]
            if "evaluated_key" in item:
                config["_evaluated_key"] = item["evaluated_key"]["S"]
        return config

    def get(self, config_id: str) -> dict | None:
        item = get_item(self._client, self._table, _config_pk(config_id))
        return None if item is None else self._config(item)

    def list(self) -> list[dict]:
        return [self._config(item) for item in all_gsi1(self._client, self._table, _LIST)]

    def replace(self, config: dict) -> None:
        """Write a changed document, conditional on the version read; the watermark is untouched."""
        version = config["_version"]
        stored = {k: v for k, v in config.items() if not k.startswith("_")}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _config_pk(config["id"])}, "sk": {"S": ITEM}},
                UpdateExpression="SET document = :d, version = :next",
                ConditionExpression="version = :v",
                ExpressionAttributeValues={
                    ":d": {"S": exact_json.dumps(stored)},
                    ":v": {"N": str(version)},
                    ":next": {"N": str(version + 1)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict("the notification changed while it was being edited; read it again") from exc
            raise translate(exc) from exc

    def put_system(self, config: dict) -> None:
        """Write a system notification's configuration (one item per lifecycle type, so a repeat
        is the same write); its watermark attributes are kept."""
        item = self._item(config, 0)
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET document = :d, gsi1pk = :g, gsi1sk = :s, version = if_not_exists(version, :zero) + :one",
                ExpressionAttributeValues={
                    ":d": item["document"], ":g": item["gsi1pk"], ":s": item["gsi1sk"], ":zero": {"N": "0"}, ":one": {"N": "1"},
                },
            )
        except ClientError as exc:
            raise translate(exc) from exc

    @staticmethod
    def watermark(config: dict) -> Watermark | None:
        if "_evaluated_until" not in config:
            return None
        return Watermark(parse_rfc3339(config["_evaluated_until"]), config.get("_evaluated_key"))

    def advance(self, config_id: str, mark: Watermark) -> None:
        # Never backwards past an instant (an overlapping run with an earlier as_of); moving back
        # within one instant only re-walks occurrences whose claims are taken.
        names = "SET evaluated_until = :u, evaluated_sortable = :s" + (
            ", evaluated_key = :k" if mark.key is not None else " REMOVE evaluated_key"
        )
        values = {":u": {"S": format_rfc3339(mark.until)}, ":s": {"S": format_sortable(mark.until)}}
        if mark.key is not None:
            values[":k"] = {"S": mark.key}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _config_pk(config_id)}, "sk": {"S": ITEM}},
                UpdateExpression=names,
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(evaluated_sortable) OR evaluated_sortable <= :s)",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    # -- the index -----------------------------------------------------------------------------
    def occurrences(self, lifecycle_type: str, low: datetime, high: datetime) -> Iterator[Occurrence]:
        """The indexed occurrences of a type with low <= instant <= high, in (instant, key) order,
        read a page at a time (the caller may stop early)."""
        for day in window_days(low, high):
            for item in query_pages(
                self._client,
                TableName=self._table,
                KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
                ExpressionAttributeValues={
                    ":p": {"S": f"lifecycle#{lifecycle_type}#{day.isoformat()}"},
                    ":a": {"S": format_sortable(low)},
                    ":b": {"S": format_sortable(high) + "$"},  # '$' sorts after '#': the instant itself is in
                },
                ConsistentRead=True,
                Limit=100,
            ):
                yield _occurrence(item)

    def late(self, config_id: str) -> Iterator[tuple[Occurrence, datetime]]:
        """The occurrences written when already due for this configuration, with when they were
        written, read a page at a time (entries are deleted once handled, so this stays short)."""
        for item in query_pages(
            self._client,
            TableName=self._table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": _late_pk(config_id)}},
            ConsistentRead=True,
            Limit=100,
        ):
            yield _occurrence(item), parse_rfc3339(item["written_at"]["S"])

    def forget_late(self, config_id: str, key: str) -> None:
        try:  # idempotent: deleting an absent item succeeds
            self._client.delete_item(TableName=self._table, Key={"pk": {"S": _late_pk(config_id)}, "sk": {"S": key}})
        except ClientError as exc:
            raise translate(exc) from exc

    # -- delivery claims -----------------------------------------------------------------------
    def claim(self, config_id: str, key: str, token: str, now: datetime, lease_before: datetime) -> str:
        """Take the delivery (CLAIMED): never claimed, or claimed before `lease_before` and not
        delivered. Otherwise DELIVERED, or BUSY: another run holds an unexpired claim (it may have
        crashed, and then only the lease's end lets a run deliver it)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": _delivery_pk(config_id, key)},
                    "sk": {"S": ITEM},
                    "token": {"S": token},
                    "claimed_at": {"S": format_sortable(now)},
                },
                ConditionExpression="attribute_not_exists(pk) OR (attribute_not_exists(delivered_at) AND claimed_at < :lease)",
                ExpressionAttributeValues={":lease": {"S": format_sortable(lease_before)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                held = get_item(self._client, self._table, _delivery_pk(config_id, key))
                return DELIVERED if held is not None and "delivered_at" in held else BUSY
            raise translate(exc) from exc
        return CLAIMED

    def release(self, config_id: str, key: str, token: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": _delivery_pk(config_id, key)}, "sk": {"S": ITEM}},
                ConditionExpression="#t = :t AND attribute_not_exists(delivered_at)",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":t": {"S": token}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    def mark_delivered(self, config_id: str, key: str, token: str, at: datetime, message_id: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _delivery_pk(config_id, key)}, "sk": {"S": ITEM}},
                UpdateExpression="SET delivered_at = :at, message_id = :m",
                ConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":t": {"S": token}, ":at": {"S": format_rfc3339(at)}, ":m": {"S": message_id}},
            )
        except ClientError as exc:
            # Another run took the expired claim and delivers with the same message id.
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    def delivered(self, config_id: str, key: str) -> bool:
        item = get_item(self._client, self._table, _delivery_pk(config_id, key))
        return item is not None and "delivered_at" in item
