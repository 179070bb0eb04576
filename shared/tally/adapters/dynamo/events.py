"""Raw events table: pk `txn#<transaction_id>`; sk `event` for the first receipt (the one that
counts) and `dup#<ingested_at>#<id>` for each later duplicate (kept for search only)."""

from __future__ import annotations

import contextvars
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
MAX_BATCH_ROUNDS = 8  # BatchWriteItem rounds for duplicate receipts
# Concurrent PutItems of one ingest request; the shared client pools 32 connections.
PUT_WORKERS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _put_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(PUT_WORKERS, thread_name_prefix="event-puts")
        return _pool


# An original receipt's id is not stored: it is derived from the item's own key and ingest stamp
# (37 bytes less per event, stored 34 days and backed up: the cost breakdown's storage and PITR).
# Items written before carry an `id`, which wins. Duplicates keep a stored random id.
_ORIGINAL_IDS = uuid.UUID("4d0c8a3e-5b7f-4c1e-9a2d-6f8e1b3c7a90")


def original_id(transaction_id: str, ingested: str) -> str:
    """The id of the original receipt of `transaction_id` stored at `ingested` (format_sortable)."""
    return uuid.uuid5(_ORIGINAL_IDS, f"{transaction_id}@{ingested}").hex


def event_item(event: UsageEvent, ingested: str, expires_at: str, sort_key: str, item_id: str | None = None) -> dict:
    """The stored form; `ingested` and `expires_at` are formatted once per request by the caller.
    `item_id` is stored for duplicate receipts only; an original's is derived (original_id), any given ignored."""
    item = {
        "pk": {"S": "txn#" + event.transaction_id},
        "sk": {"S": sort_key},
        "cid": {"S": event.customer_id},
        "et": {"S": event.event_type},
        "ts": {"S": format_sortable(event.timestamp)},
        "props": {"S": exact_json.dumps(event.properties)},
        "ing": {"S": ingested},
        "expires_at": {"N": expires_at},
    }
    if sort_key != ORIGINAL:
        if item_id is None:
            raise ValueError("a duplicate receipt needs its id")
        item["id"] = {"S": item_id}
    return item


def stored_event(item: dict) -> StoredEvent:
    transaction_id, ingested = item["pk"]["S"][4:], item["ing"]["S"]
    event = UsageEvent(
        transaction_id=transaction_id,
        customer_id=item["cid"]["S"],
        event_type=item["et"]["S"],
        timestamp=parse_rfc3339(item["ts"]["S"]),
        properties=exact_json.loads(item["props"]["S"]),
    )
    item_id = item["id"]["S"] if "id" in item else original_id(transaction_id, ingested)
    return StoredEvent(item_id, event, parse_rfc3339(ingested), item["sk"]["S"] != ORIGINAL)


class DynamoEventStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def put_new(self, events: list[UsageEvent], ingested_at: datetime) -> list[UsageEvent]:
        """Each event by its own PutItem, conditional on `attribute_not_exists(pk)` for the key
        `txn#<transaction_id>`: the first receipt of a transaction_id wins, whichever request
        carried it. 1 WRU per event item of up to 1 KB, where one transaction for the request costs
        2 per item; the puts run concurrently, in up to PUT_WORKERS slices.

        Not atomic across the request, and it need not be: the request was validated whole before
        the first put, so only an outage stops it part-way. Then StoreUnavailable is raised once
        every put has ended, the client gets no 200 and sends the request again; the events already
        stored answer as duplicates of themselves (first wins) and the rest are stored. Each event
        is stored, and counted, once."""
        if not events:
            return []
        ingested, expires_at = stamps(ingested_at)
        items = [(i, event_item(e, ingested, expires_at, ORIGINAL)) for i, e in enumerate(events)]
        workers = min(PUT_WORKERS, len(items))
        if workers == 1:
            known_at = self._put_each(items)
        else:
            pool = _put_pool()
            futures = [pool.submit(contextvars.copy_context().run, self._put_each, items[w::workers]) for w in range(workers)]
            known_at, failure = [], None
            for future in futures:  # every slice ends before this request answers
                try:
                    known_at += future.result()
                except Exception as exc:  # noqa: BLE001 - re-raised below, once all have ended
                    failure = failure or exc
            if failure is not None:
                raise failure
        return [events[i] for i in sorted(known_at)]

    def _put_each(self, items: list[tuple[int, dict]]) -> list[int]:
        """Put each item if its transaction_id is new; the positions of those that were not.
        Throttling is retried by the client (standard mode); what remains is StoreUnavailable."""
        known = []
        for position, item in items:
            try:
                self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise translate(exc) from exc
                known.append(position)
        return known

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
            for attempt in range(MAX_BATCH_ROUNDS):
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
