"""Alerts and their per-customer state in the billing table.

Keys:
- `alert#<id>` / `#`: the alert (exact-JSON document), read by id;
- `alerts#<customer id or *>` / `alert#<id>`: the same document under its scope, so an evaluator
  finds a customer's alerts and the all-customer ones with two strongly consistent Queries (a GSI
  could miss an alert created a moment ago);
- `alert_uniq#<uniqueness key>` / `#`: claims a uniqueness key in the create transaction;
- `alert#<id>` / `state#<customer id>`: the (alert, customer) state. Every change is a
  compare-and-set on `version`, so of two evaluators that read the same state only one can
  move it; `pending` holds a claimed crossing's envelope until it is known to be published.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from botocore.exceptions import ClientError

from tally.adapters.dynamo.audit import unaudited
from tally.adapters.dynamo.client import claim, dynamodb, error_code, transact_or_conflict, translate
from tally.adapters.dynamo.reads import ITEM, batch_get, get_item
from tally.billing import exact_json
from tally.billing.alerts import Alert, AlertState, CustomFieldFilter, AlertStatus, AlertType, CustomerStatus, GroupValue
from tally.billing.errors import Conflict, NotFound
from tally.billing.time import format_rfc3339, parse_rfc3339

ALL_CUSTOMERS = "*"
_NAMES = {"#s": "status", "#w": "window", "#v": "value"}


def _scope(customer_id: str | None) -> str:
    return f"alerts#{customer_id or ALL_CUSTOMERS}"


def alert_document(alert: Alert) -> dict:
    return {
        "id": alert.id,
        "name": alert.name,
        "type": alert.type.value,
        "threshold": alert.threshold,
        "credit_type_id": alert.credit_type_id,
        "created_at": format_rfc3339(alert.created_at),
        "updated_at": format_rfc3339(alert.updated_at or alert.created_at),
        "customer_id": alert.customer_id,
        "billable_metric_id": alert.billable_metric_id,
        "group_values": [{"key": g.key, "value": g.value} for g in alert.group_values],
        "invoice_types_filter": list(alert.invoice_types_filter),
        "uniqueness_key": alert.uniqueness_key,
        "status": alert.status.value,
        "custom_field_filters": [{"entity": f.entity, "key": f.key, "value": f.value} for f in alert.custom_field_filters],
        "custom_fields": dict(alert.custom_fields),
    }


def alert_from_document(doc: dict) -> Alert:
    return Alert(
        id=doc["id"],
        name=doc["name"],
        type=AlertType(doc["type"]),
        threshold=Decimal(doc["threshold"]),
        credit_type_id=doc["credit_type_id"],
        created_at=parse_rfc3339(doc["created_at"]),
        updated_at=parse_rfc3339(doc["updated_at"]),
        customer_id=doc.get("customer_id"),
        billable_metric_id=doc.get("billable_metric_id"),
        group_values=tuple(GroupValue(g["key"], g.get("value")) for g in doc.get("group_values") or ()),
        invoice_types_filter=tuple(doc.get("invoice_types_filter") or ()),
        uniqueness_key=doc.get("uniqueness_key"),
        status=AlertStatus(doc["status"]),
        custom_field_filters=tuple(
            CustomFieldFilter(f["entity"], f["key"], f["value"]) for f in doc.get("custom_field_filters") or ()
        ),
        custom_fields=doc.get("custom_fields") or {},
    )


def _state_key(alert_id: str, customer_id: str) -> dict:
    return {"pk": {"S": f"alert#{alert_id}"}, "sk": {"S": f"state#{customer_id}"}}


def _state(alert_id: str, customer_id: str, item: dict | None) -> AlertState:
    if not item:
        return AlertState(alert_id, customer_id)
    return AlertState(
        alert_id=alert_id,
        customer_id=customer_id,
        status=CustomerStatus(item["status"]["S"]),
        version=int(item["version"]["N"]),
        crossings=int(item["crossings"]["N"]),
        window=item["window"]["S"] if "window" in item else None,
        value=Decimal(item["value"]["N"]) if "value" in item else None,
        triggered_at=parse_rfc3339(item["triggered_at"]["S"]) if "triggered_at" in item else None,
        updated_at=parse_rfc3339(item["updated_at"]["S"]) if "updated_at" in item else None,
        pending=exact_json.loads(item["pending"]["S"]) if "pending" in item else None,
        lease_until=parse_rfc3339(item["lease_until"]["S"]) if "lease_until" in item else None,
    )


def _version_condition(state: AlertState) -> tuple[str, dict]:
    """Compare-and-set on the version read (a state never stored has no item yet)."""
    if state.version == 0:
        return "attribute_not_exists(pk)", {}
    return "version = :read", {":read": {"N": str(state.version)}}


class DynamoAlertStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    # -- alerts ------------------------------------------------------------------------------
    def create(self, alert: Alert) -> None:
        document = {"S": exact_json.dumps(alert_document(alert))}
        actions = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": f"alert#{alert.id}"}, "sk": {"S": ITEM}, "document": document},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": _scope(alert.customer_id)}, "sk": {"S": f"alert#{alert.id}"}, "document": document},
                }
            },
        ]
        if alert.uniqueness_key is not None:
            actions.append(claim(self._table, f"alert_uniq#{alert.uniqueness_key}", alert_id=alert.id))
        # One transaction: the alert, its scope entry and its uniqueness claim, or nothing.
        transact_or_conflict(
            self._client,
            actions,
            f"an alert with uniqueness_key {alert.uniqueness_key!r} already exists"
            if alert.uniqueness_key is not None
            else f"alert {alert.id} already exists",
        )

    def get(self, alert_id: str) -> Alert | None:
        item = get_item(self._client, self._table, f"alert#{alert_id}")
        return None if item is None else alert_from_document(exact_json.loads(item["document"]["S"]))

    def archive(self, alert_id: str, at: datetime, release_uniqueness_key: bool) -> Alert:
        alert = self.get(alert_id)
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        if alert.status is AlertStatus.ARCHIVED and not release_uniqueness_key:
            return alert
        archived = replace(alert, status=AlertStatus.ARCHIVED, updated_at=at)
        document = {"S": exact_json.dumps(alert_document(archived))}
        actions = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": f"alert#{alert.id}"}, "sk": {"S": ITEM}, "document": document},
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": _scope(alert.customer_id)}, "sk": {"S": f"alert#{alert.id}"}, "document": document},
                }
            },
        ]
        if release_uniqueness_key and alert.uniqueness_key is not None:
            actions.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": f"alert_uniq#{alert.uniqueness_key}"}, "sk": {"S": ITEM}},
                        "ConditionExpression": "attribute_not_exists(pk) OR alert_id = :me",
                        "ExpressionAttributeValues": {":me": {"S": alert.id}},
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            raise translate(exc) from exc
        return archived

    def replace_custom_fields(self, alert: Alert, after: dict[str, str]) -> None:
        """Write the alert's custom field values, conditional on its document being the one read
        as `alert` (Conflict otherwise); its scope copy is written in the same transaction."""
        item = get_item(self._client, self._table, f"alert#{alert.id}")
        if item is None or alert_from_document(exact_json.loads(item["document"]["S"])) != alert:
            raise Conflict(f"alert {alert.id} changed while its custom fields were being set; retry")
        document = {"S": exact_json.dumps(alert_document(replace(alert, custom_fields=dict(after))))}
        actions = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": f"alert#{alert.id}"}, "sk": {"S": ITEM}, "document": document},
                    "ConditionExpression": "document = :read",
                    "ExpressionAttributeValues": {":read": item["document"]},
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": _scope(alert.customer_id)}, "sk": {"S": f"alert#{alert.id}"}, "document": document},
                }
            },
        ]
        transact_or_conflict(self._client, actions, f"alert {alert.id} changed while its custom fields were being set; retry")

    def in_scope(self, customer_id: str | None) -> list[Alert]:
        """Alerts stored under one scope (a customer, or None: the all-customer ones), archived too."""
        alerts = []
        paginator = self._client.get_paginator("query")
        try:
            for page in paginator.paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": _scope(customer_id)}},
                ConsistentRead=True,
            ):
                alerts += [alert_from_document(exact_json.loads(i["document"]["S"])) for i in page["Items"]]
        except ClientError as exc:
            raise translate(exc) from exc
        return alerts

    # -- per-customer state ------------------------------------------------------------------
    def state(self, alert_id: str, customer_id: str) -> AlertState:
        try:
            item = self._client.get_item(
                TableName=self._table, Key=_state_key(alert_id, customer_id), ConsistentRead=True
            ).get("Item")
        except ClientError as exc:
            raise translate(exc) from exc
        return _state(alert_id, customer_id, item)

    def states(self, alert_ids: list[str], customer_id: str) -> dict[str, AlertState]:
        found: dict[str, AlertState] = {a: AlertState(a, customer_id) for a in alert_ids}
        for item in batch_get(self._client, self._table, [_state_key(a, customer_id) for a in alert_ids]):
            alert_id = item["pk"]["S"].removeprefix("alert#")
            found[alert_id] = _state(alert_id, customer_id, item)
        return found

    def _update(self, state: AlertState, expression: str, condition: str, values: dict) -> AlertState | None:
        # DynamoDB refuses unused attribute names; these three are reserved words.
        names = {n: a for n, a in _NAMES.items() if n in expression or n in condition}
        try:
            item = unaudited(self._client).update_item(  # the crossing's state: the system's, see unaudited
                TableName=self._table,
                Key=_state_key(state.alert_id, state.customer_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc) from exc
        return _state(state.alert_id, state.customer_id, item)

    def fire(self, state: AlertState, window: str | None, value: Decimal, at: datetime, message: dict,
             lease_until: datetime) -> AlertState | None:
        """Claim crossing `state.crossings + 1` (ok → in_alarm) and park its envelope in `pending`.
        None if the state changed since it was read: someone else decided first."""
        condition, values = _version_condition(state)
        values |= {
            ":next": {"N": str(state.version + 1)},
            ":crossing": {"N": str(state.crossings + 1)},
            ":alarm": {"S": CustomerStatus.IN_ALARM.value},
            ":value": {"N": str(value)},
            ":at": {"S": format_rfc3339(at)},
            ":pending": {"S": exact_json.dumps(message)},
            ":lease": {"S": format_rfc3339(lease_until)},
        }
        expression = (
            "SET #s = :alarm, version = :next, crossings = :crossing, #v = :value, triggered_at = :at, "
            "updated_at = :at, pending = :pending, lease_until = :lease"
        )
        if window is not None:
            values[":window"] = {"S": window}
            expression += ", #w = :window"
        else:
            expression += " REMOVE #w"
        if state.version == 0:
            return self._first_fire(state, values)
        # A claimed crossing not yet published blocks the next one (its republish comes first).
        return self._update(state, expression, f"({condition}) AND attribute_not_exists(pending)", values)

    def _first_fire(self, state: AlertState, values: dict) -> AlertState | None:
        """The first crossing creates the state item whole (PutItem), so no reader ever sees a part
        of it (moto builds an UpdateItem-created item in place)."""
        item = {
            **_state_key(state.alert_id, state.customer_id),
            "status": values[":alarm"],
            "version": values[":next"],
            "crossings": values[":crossing"],
            "value": values[":value"],
            "triggered_at": values[":at"],
            "updated_at": values[":at"],
            "pending": values[":pending"],
            "lease_until": values[":lease"],
            **({"window": values[":window"]} if ":window" in values else {}),
        }
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc) from exc
        return _state(state.alert_id, state.customer_id, item)

    def rearm(self, state: AlertState, at: datetime) -> AlertState | None:
        """in_alarm → ok, silently; None if the state changed since it was read."""
        condition, values = _version_condition(state)
        values |= {":next": {"N": str(state.version + 1)}, ":ok": {"S": CustomerStatus.OK.value}, ":at": {"S": format_rfc3339(at)}}
        return self._update(
            state,
            "SET #s = :ok, version = :next, updated_at = :at",
            f"({condition}) AND attribute_not_exists(pending)",
            values,
        )

    def take_lease(self, state: AlertState, lease_until: datetime) -> AlertState | None:
        """Take over publishing a pending crossing whose lease has run out."""
        assert state.lease_until is not None
        return self._update(
            state,
            "SET lease_until = :lease",
            "crossings = :crossing AND lease_until = :seen AND attribute_exists(pending)",
            {
                ":crossing": {"N": str(state.crossings)},
                ":seen": {"S": format_rfc3339(state.lease_until)},
                ":lease": {"S": format_rfc3339(lease_until)},
            },
        )

    def clear_pending(self, state: AlertState) -> None:
        """The crossing is published: forget its envelope (only if it is still that crossing's)."""
        self._update(
            state,
            "REMOVE pending, lease_until",
            "crossings = :crossing AND attribute_exists(pending)",
            {":crossing": {"N": str(state.crossings)}},
        )
