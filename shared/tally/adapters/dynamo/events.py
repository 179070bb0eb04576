"""Raw events table: pk `txn#<transaction_id>`; sk `event` for the first receipt (the one that
counts) and `dup#<ingested_at>#<id>` for each later duplicate (kept for search only)."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Iterable

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.billing import exact_json
from tally.billing.events import MAX_AGE, UsageEvent
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.ports import StoredEvent, StoreUnavailable

ORIGINAL = "event"
# Items outlive the dedup window by a day: TTL deletion is lazy, never early.
RETENTION = MAX_AGE + timedelta(days=1)
MAX_TRANSACTION_ATTEMPTS = 8


def event_item(event: UsageEvent, ingested: str, expires_at: str, sort_key: str, item_id: str) -> dict:
    """The stored form; `ingested` and `expires_at` are formatted once per request by the caller."""
    return {
        "pk": {"S": "txn#" + event.transaction_id},
        "sk": {"S": sort_key},
        "id": {"S": item_id},
        "cid": {"S": event.customer_id},
        "et": {"S": event.event_type},
        "ts": {"S": format_sortable(event.timestamp)},
        "props": {"S": exact_json.dumps(event.properties)},
        "ing": {"S": ingested},
        "expires_at": {"N": expires_at},
    }


def stored_event(item: dict) -> StoredEvent:
    event = UsageEvent(
        transaction_id=item["pk"]["S"][4:],
        customer_id=item["cid"]["S"],
        event_type=item["et"]["S"],
        timestamp=parse_rfc3339(item["ts"]["S"]),
        properties=exact_json.loads(item["props"]["S"]),
    )
    return StoredEvent(item["id"]["S"], event, parse_rfc3339(item["ing"]["S"]), item["sk"]["S"] != ORIGINAL)


class DynamoEventStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def put_new(self, events: list[UsageEvent], ingested_at: datetime) -> list[UsageEvent]:
        """One conditional transaction per request: the first receipt of a transaction_id wins."""
        pending = list(events)
        known: list[UsageEvent] = []
        ingested, expires_at = stamps(ingested_at)
        request_id = uuid.uuid4().hex  # item ids: one random id per request, plus the position
        for attempt in range(MAX_TRANSACTION_ATTEMPTS):
            if not pending:
                return known
            items = [event_item(e, ingested, expires_at, ORIGINAL, f"{request_id}{i:03d}") for i, e in enumerate(pending)]
            try:
                self._write_all_new(items)
                return known
            except ClientError as exc:
                reasons = _cancellation_codes(exc, len(items))
                if reasons is None:
                    raise translate(exc) from exc
            # The transaction wrote nothing. Drop the duplicates, retry the rest.
            retry = []
            for event, code in zip(pending, reasons):
                if code == "ConditionalCheckFailed":
                    known.append(event)
                elif code in ("None", "", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"):
                    retry.append(event)
                else:
                    raise StoreUnavailable(f"event write cancelled: {code}")
            if len(retry) == len(pending):  # nothing was a duplicate: back off before retrying
                time.sleep(min(0.05 * 2**attempt, 1.0) * random.random())
            pending = retry
        raise StoreUnavailable("events could not be written: the transaction kept conflicting")

    def _write_all_new(self, items: list[dict]) -> None:
        condition = "attribute_not_exists(pk)"
        if len(items) == 1:
            self._client.put_item(TableName=self._table, Item=items[0], ConditionExpression=condition)
            return
        self._client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": condition}} for item in items
            ]
        )

    def put_duplicate_receipts(self, events: list[UsageEvent], ingested_at: datetime) -> None:
        ingested, expires_at = stamps(ingested_at)
        requests = []
        for event in events:
            receipt_id = uuid.uuid4().hex
            item = event_item(event, ingested, expires_at, f"dup#{ingested}#{receipt_id}", receipt_id)
            requests.append({"PutRequest": {"Item": item}})
        self._batch_write(requests)

    def _batch_write(self, requests: list[dict]) -> None:
        for start in range(0, len(requests), 25):
            chunk = requests[start : start + 25]
            for attempt in range(MAX_TRANSACTION_ATTEMPTS):
                try:
                    response = self._client.batch_write_item(RequestItems={self._table: chunk})
                except ClientError as exc:
                    raise translate(exc) from exc
                chunk = response.get("UnprocessedItems", {}).get(self._table, [])
                if not chunk:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0) * random.random())
            else:
                raise StoreUnavailable("duplicate receipts could not be written")

    def find(self, transaction_ids: list[str]) -> list[StoredEvent]:
        found = []
        for transaction_id in dict.fromkeys(transaction_ids):
            paginator = self._client.get_paginator("query")
            for page in paginator.paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": "txn#" + transaction_id}},
                ConsistentRead=True,
            ):
                found.extend(stored_event(item) for item in page["Items"])
        # originals first, then duplicates by receipt time
        return sorted(found, key=lambda s: (s.is_duplicate, s.ingested_at))

    def scan_ingested_before(self, instant: datetime) -> Iterable[StoredEvent]:
        paginator = self._client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self._table,
            FilterExpression="sk = :original AND ing < :instant",
            ExpressionAttributeValues={":original": {"S": ORIGINAL}, ":instant": {"S": format_sortable(instant)}},
            ConsistentRead=True,
        ):
            for item in page["Items"]:
                yield stored_event(item)


def stamps(ingested_at: datetime) -> tuple[str, str]:
    return format_sortable(ingested_at), str(int((ingested_at + RETENTION).timestamp()))


def _cancellation_codes(exc: ClientError, count: int) -> list[str] | None:
    code = error_code(exc)
    if code == "ConditionalCheckFailedException" and count == 1:
        return ["ConditionalCheckFailed"]
    if code != "TransactionCanceledException":
        return None
    reasons = exc.response.get("CancellationReasons") or []
    if len(reasons) != count:
        return None
    return [reason.get("Code") or "None" for reason in reasons]
