"""The audit log in DynamoDB: written with each change, read by time or by resource.

`AuditedClient` wraps the process's one DynamoDB client (client.dynamodb()). While an audit scope
is open (an API request that may change something), each write to the billing table becomes one
TransactWriteItems holding the write and the request's entry, so the entry and the change commit
or fail together: a put, update or delete becomes a 2- to 4-item transaction, a transaction gains
at most 3 items (limits.MAX_TRANSACTION_ITEMS), a batch write becomes transactions. Outside a scope it is
the client itself. Writes to the events and counters tables (usage and what is derived from it)
are not audited: the configuration they follow from (a metric, a customer) is.

Items (billing table; no index needed):
- by time: `audit#<shard>` / `<timestamp>#<entry id>`, the shard from the entry id, so a busy
  deployment spreads over AUDIT_LOG_SHARDS partitions; a page reads each shard once and merges.
- by resource: `audit_resource#<type>#<id>` / `<timestamp>#<entry id>`, written once the request's
  resource is known.
The entry's key is fixed per request, so writing it again with a later write of the same request
is idempotent (same key, same content, or the same content plus the resource learnt since).
"""

from __future__ import annotations

import heapq
import random
import time
from typing import Callable

from botocore.exceptions import ClientError

from tally.billing import exact_json
from tally.billing.audit import AuditEntry, AuditQuery, Resource, format_instant, resource_of_key
from tally.billing.limits import AUDIT_LOG_SHARDS, MAX_TRANSACTION_ITEMS
from tally.services.audit_logs import AuditScope, current_scope
from tally.services.ports import StoreRefused

CONFLICT_ATTEMPTS = 5  # a transaction cancelled by a concurrent write of its items is sent this many times at most
_ACTION_FIELDS = ("TableName", "Item", "Key", "UpdateExpression", "ConditionExpression",
                  "ExpressionAttributeNames", "ExpressionAttributeValues", "ReturnValuesOnConditionCheckFailure")


def position(entry: AuditEntry) -> str:
    return f"{format_instant(entry.timestamp)}#{entry.id}"


def time_partition(entry_id: str) -> str:
    return f"audit#{int(entry_id[:8], 16) % AUDIT_LOG_SHARDS}"


def resource_partition(resource: Resource) -> str:
    return f"audit_resource#{resource.type}#{resource.id}"


def entry_items(table: str, entry: AuditEntry, stored: AuditEntry | None = None) -> list[dict]:
    """The transaction actions storing `entry` (unconditional: the same key always holds the same
    request's entry). If an earlier write of the request stored it under another resource (a guess
    a later write corrected), that resource's item goes, so the index never lists it wrongly."""
    stored_text = {"S": exact_json.dumps(entry.to_stored())}
    sk = {"S": position(entry)}
    items = [{"pk": {"S": time_partition(entry.id)}, "sk": sk, "entry": stored_text}]
    if entry.resource is not None:
        items.append({"pk": {"S": resource_partition(entry.resource)}, "sk": sk, "entry": stored_text})
    actions: list[dict] = [{"Put": {"TableName": table, "Item": item}} for item in items]
    if stored is not None and stored.resource is not None and stored.resource != entry.resource:
        actions.append({"Delete": {"TableName": table, "Key": {"pk": {"S": resource_partition(stored.resource)}, "sk": sk}}})
    return actions


def _written_resources(table: str, actions: list[dict]) -> list[Resource]:
    found = []
    for action in actions:
        (kind, body), = action.items()
        if kind == "ConditionCheck" or body.get("TableName") != table:
            continue
        key = body.get("Item") or body.get("Key") or {}
        pk, sk = key.get("pk", {}).get("S"), key.get("sk", {}).get("S")
        if pk is not None and sk is not None and (resource := resource_of_key(pk, sk)) is not None:
            found.append(resource)
    return found


def unaudited(client):
    """The client without the audit entry: for the system's own state machines (an alert's
    crossing, a threshold charge) that an API request may advance while it evaluates. They are not
    the request's change, and they need their new values from the write itself, atomically (an
    audited write is a transaction, which returns none)."""
    return client._client if isinstance(client, AuditedClient) else client


class AuditedClient:
    """A DynamoDB client whose writes to `audit_table()` carry the open audit scope's entry."""

    def __init__(self, client, audit_table: Callable[[], str], sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._audit_table = audit_table
        self._sleep = sleep

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    # -- writes ----------------------------------------------------------------------------------
    def transact_write_items(self, **kwargs):
        scope = current_scope()
        actions = kwargs["TransactItems"]
        if scope is None or not self._touches_audit_table(actions):
            return self._client.transact_write_items(**kwargs)
        return self._with_entry(scope, actions, kwargs)

    def put_item(self, **kwargs):
        return self._single("Put", "PutItem", kwargs)

    def update_item(self, **kwargs):
        return self._single("Update", "UpdateItem", kwargs)

    def delete_item(self, **kwargs):
        return self._single("Delete", "DeleteItem", kwargs)

    def batch_write_item(self, **kwargs):
        scope = current_scope()
        table = self._audit_table() if scope is not None else None
        if scope is None or table not in kwargs["RequestItems"]:
            return self._client.batch_write_item(**kwargs)
        others = {name: requests for name, requests in kwargs["RequestItems"].items() if name != table}
        actions = []
        for request in kwargs["RequestItems"][table]:
            if "PutRequest" in request:
                actions.append({"Put": {"TableName": table, "Item": request["PutRequest"]["Item"]}})
            else:
                actions.append({"Delete": {"TableName": table, "Key": request["DeleteRequest"]["Key"]}})
        # Not atomic as a whole (a batch write never was); each transaction carries the entry.
        for start in range(0, len(actions), MAX_TRANSACTION_ITEMS):
            self._with_entry(scope, actions[start : start + MAX_TRANSACTION_ITEMS], {})
        if others:
            return self._client.batch_write_item(**{**kwargs, "RequestItems": others})
        return {"UnprocessedItems": {}}

    # -- how ---------------------------------------------------------------------------------------
    def _touches_audit_table(self, actions: list[dict]) -> bool:
        table = self._audit_table()
        return any(body.get("TableName") == table for action in actions for kind, body in action.items() if kind != "ConditionCheck")

    def _with_entry(self, scope: AuditScope, actions: list[dict], kwargs: dict):
        if len(actions) > MAX_TRANSACTION_ITEMS:
            raise StoreRefused(
                "body", f"would change {len(actions)} items at once; one change holds at most {MAX_TRANSACTION_ITEMS}"
            )
        table = self._audit_table()
        entry, final = scope.entry_for(_written_resources(table, actions))
        try:
            response = self._transact(**{**kwargs, "TransactItems": [*actions, *entry_items(table, entry, scope.stored)]})
        except ClientError as exc:
            # The callers read the reasons by their own items' positions; the entry's are not theirs.
            reasons = exc.response.get("CancellationReasons")
            if reasons is not None:
                exc.response["CancellationReasons"] = reasons[: len(actions)]
            raise
        scope.written(entry, final)  # only a committed write moves the request's entry on
        return response

    def _transact(self, **kwargs):
        """TransactWriteItems, again after a transaction conflict. A single put or update waits for a
        concurrent write of its item; a transaction is cancelled instead (TransactionConflict), so
        an audited write, now a transaction, would turn a race that used to serialize into an error.
        A cancelled transaction wrote nothing, so sending it again is safe."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return self._client.transact_write_items(**kwargs)
            except ClientError as exc:
                codes = {r.get("Code") for r in exc.response.get("CancellationReasons") or []}
                retry = "TransactionConflict" in codes and not codes - {"TransactionConflict", "None", None}
                if not retry or attempt + 1 == CONFLICT_ATTEMPTS:
                    raise
                self._sleep(random.uniform(0, 0.02 * 2**attempt))  # full jitter, 20 ms doubling
        raise AssertionError("unreachable")

    def _single(self, kind: str, operation: str, kwargs: dict):
        scope = current_scope()
        if scope is None or kwargs.get("TableName") != self._audit_table():
            return getattr(self._client, operation_method(operation))(**kwargs)
        return_values = kwargs.get("ReturnValues", "NONE")
        if return_values not in ("NONE", "ALL_NEW") or (return_values == "ALL_NEW" and kind != "Update"):
            raise ValueError(f"an audited {operation} cannot return {return_values}")
        unknown = set(kwargs) - set(_ACTION_FIELDS) - {"ReturnValues"}
        if unknown:
            raise ValueError(f"an audited {operation} cannot take {sorted(unknown)}")
        action = {name: value for name, value in kwargs.items() if name in _ACTION_FIELDS}
        try:
            self._with_entry(scope, [{kind: action}], {})
        except ClientError as exc:
            raise _as_single_error(exc, operation) from exc
        if return_values == "ALL_NEW":
            # Transactions return no values: read the item back. Consistent, but not atomic with
            # the write (a later write may show); the callers use it for the fields they just set.
            item = self._client.get_item(TableName=kwargs["TableName"], Key=kwargs["Key"], ConsistentRead=True).get("Item")
            return {"Attributes": item or {}}
        return {}


def operation_method(operation: str) -> str:
    return {"PutItem": "put_item", "UpdateItem": "update_item", "DeleteItem": "delete_item"}[operation]


def _as_single_error(exc: ClientError, operation: str) -> ClientError:
    """A cancelled 1-write transaction as the error the single write would have raised, so the
    adapters' handling (ConditionalCheckFailedException: a conflict, a not-found) is unchanged."""
    reasons = exc.response.get("CancellationReasons") or []
    code = reasons[0].get("Code") if reasons else None
    single = {"ConditionalCheckFailed": "ConditionalCheckFailedException", "TransactionConflict": "TransactionConflictException"}
    if code not in single:
        return exc
    response: dict = {"Error": {"Code": single[code], "Message": reasons[0].get("Message") or code}}
    if reasons[0].get("Item"):
        response["Item"] = reasons[0]["Item"]
    return ClientError(response, operation)  # type: ignore[arg-type]


class DynamoAuditLogStore:
    """Pages of the audit log: by resource, one query of its partition; by time, one query of
    each shard, merged. Every query is bounded by the page's limit."""

    def __init__(self, table: str, client=None) -> None:
        from tally.adapters.dynamo.client import dynamodb

        self._table = table
        self._client = client or dynamodb()

    def page(self, query: AuditQuery) -> tuple[list[tuple[str, AuditEntry]], bool]:
        partitions = (
            [resource_partition(query.resource)] if query.resource is not None
            else [f"audit#{shard}" for shard in range(AUDIT_LOG_SHARDS)]
        )
        ascending = query.sort == "date_asc"
        streams = [self._query(pk, query, ascending) for pk in partitions]
        merged = heapq.merge(*streams, key=lambda found: found[0], reverse=not ascending)
        found = []
        for pair in merged:
            found.append(pair)
            if len(found) > query.limit:
                break
        return found[: query.limit], len(found) > query.limit

    def _query(self, pk: str, query: AuditQuery, ascending: bool) -> list[tuple[str, AuditEntry]]:
        # Window [starting_on, ending_before) as sort keys: `<start>` sorts before every entry at
        # or after the start, `<end>` before every entry at the end. The cursor's own entry is
        # inside the BETWEEN and dropped here (hence limit + 2).
        low = format_instant(query.starting_on) if query.starting_on is not None else "0"
        high = format_instant(query.ending_before) if query.ending_before is not None else "9"
        if query.after is not None:
            low, high = (query.after, high) if ascending else (low, query.after)
        if low > high:
            return []
        try:
            response = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues={":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
                ScanIndexForward=ascending,
                Limit=query.limit + 2,
                ConsistentRead=True,
            )
        except ClientError as exc:
            from tally.adapters.dynamo.client import translate

            raise translate(exc) from exc
        return [
            (item["sk"]["S"], AuditEntry.from_stored(exact_json.loads(item["entry"]["S"])))
            for item in response["Items"]
            if item["sk"]["S"] != query.after
        ]
