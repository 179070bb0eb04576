"""The cycle-close wake index: which customers a cycle close run must read (services/cycle_close.py
explains the protocol; this module keeps its keys).

Every unarchived contract and customer-level grant item of the billing table carries an entry of
gsi2, in the item itself, so that the write of the document and of its entry are one write:
- `gsi2pk` `close_due#<shard>`: the customer's shard (SHARDS of them, by a hash of its id), so a
  hundred thousand customers due in the same hour spread over SHARDS partitions, not one.
- `gsi2sk` `<wake>#<mark>#<customer_id>`: `wake` is `!` when the document was written (a write may
  make anything due, at once: `!` sorts before every instant), or the sortable instant at which
  the customer may next have something to close, set by a run that read the customer and found
  nothing due (`advance`). `mark` is new on every write of the entry, so an advance conditional on
  the entry it read never overwrites a later write's entry; a written entry's mark begins with the
  time it was written, so written entries sort in the order they were written.
A run reads the entries up to its instant, a page at a time, in run order (`entries`): shard after
shard, in each the entries with an instant, then the written ones. It reads as many entries as
there are due or changed documents, never one per customer, and each of them once: a page resumes
after the last entry the previous page used (`WakeEntry.position`, a few hundred bytes). Entries
only ever move forward in that order (an advance moves one to a later instant), except a write,
which moves its entry to the end of its shard's written entries: if the run has not passed that
shard yet, it finds the entry there. gsi2 is eventually consistent: an entry written while a run
queries may be found only by the next run.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import ITEM, query_pages
from tally.billing import exact_json
from tally.billing.time import format_sortable

GSI = "gsi2"
SHARDS = 16
DIRTY = "!"  # sorts before any format_sortable instant ("0001-...")
INDEXED_KINDS = ("contract", "grant")  # the documents whose writes can make an invoice due


WAKES, WRITTEN = 0, 1  # the two parts of a shard, in run order
CHUNK = 100  # entries per Query at most while a run pages


def _shard_number(customer_id: str) -> int:
    return int.from_bytes(hashlib.sha256(customer_id.encode()).digest()[:4], "big") % SHARDS


def shard_of(customer_id: str) -> str:
    return f"close_due#{_shard_number(customer_id):02d}"


def _sort_key(wake: str, customer_id: str) -> str:
    # A written entry's mark starts with the microseconds of its writing (14 hex digits: sortable
    # until the year 4000), so one re-written while a run pages sorts after what the run has read.
    mark = f"{time.time_ns() // 1000:014x}{uuid.uuid4().hex[:6]}" if wake == DIRTY else uuid.uuid4().hex[:12]
    return f"{wake}#{mark}#{customer_id}"


def written_entry(kind: str, document: dict) -> dict:
    """The entry attributes a document item is written with: due at once (none for an archived
    document, or a kind that never makes an invoice due: archiving only removes invoices)."""
    if kind not in INDEXED_KINDS or document.get("archived_at"):
        return {}
    customer_id = document["customer_id"]
    return {"gsi2pk": {"S": shard_of(customer_id)}, "gsi2sk": {"S": _sort_key(DIRTY, customer_id)}}


def woken_update(customer_id: str) -> dict:
    """The update expression parts marking a document's entry due at once (a regenerated invoice
    to announce), for a transaction's Update of that document's item."""
    return {
        "UpdateExpression": "SET gsi2pk = :wpk, gsi2sk = :wsk",
        "ExpressionAttributeValues": {":wpk": {"S": shard_of(customer_id)}, ":wsk": {"S": _sort_key(DIRTY, customer_id)}},
    }


@dataclass(frozen=True, slots=True)
class WakeEntry:
    customer_id: str
    document_key: str  # the document item's pk, e.g. `contract#<id>`
    sort_key: str  # the entry as read, the condition of its advance

    @property
    def order(self) -> tuple:
        """Its place in run order (`entries`): shard, part, then the index's own order."""
        part = WRITTEN if self.sort_key.startswith(DIRTY) else WAKES
        return (_shard_number(self.customer_id), part, self.sort_key, self.document_key)

    @property
    def position(self) -> list:
        """Where a run that used this entry resumes (JSON: it travels in the workflow's state)."""
        return [self.sort_key, self.document_key]


def _entry(item: dict) -> WakeEntry:
    sort_key = item["gsi2sk"]["S"]
    return WakeEntry(sort_key.split("#", 2)[2], item["pk"]["S"], sort_key)


def _is_due(sort_key: str, high: str) -> bool:
    return sort_key.startswith(DIRTY) or sort_key <= high


def _high(as_of: datetime) -> str:
    return format_sortable(as_of) + "#\U0010ffff"


class DynamoCloseIndex:
    """The wake entries (CloseIndex in services/cycle_close.py)."""

    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def due(self, as_of: datetime) -> list[WakeEntry]:
        """Every entry with a wake up to `as_of` (written ones first), from every shard."""
        high = _high(as_of)
        entries: list[WakeEntry] = []
        for n in range(SHARDS):
            for item in query_pages(
                self._client,
                TableName=self._table,
                IndexName=GSI,
                KeyConditionExpression="gsi2pk = :p AND gsi2sk <= :hi",
                ExpressionAttributeValues={":p": {"S": f"close_due#{n:02d}"}, ":hi": {"S": high}},
            ):
                entries.append(_entry(item))
        return entries

    def entries(self, as_of: datetime, after: list | None = None, chunk: int = CHUNK) -> Iterator[WakeEntry]:
        """The entries due as of `as_of`, in run order, after the entry whose `position` is `after`
        (None: from the start), read `chunk` at a time as they are consumed (a page that uses about
        one entry per customer and stops at `chunk` customers reads no more than it uses)."""
        start = (0, WAKES, None)
        if after is not None:
            sort_key, document_key = after
            begun = _entry({"gsi2sk": {"S": sort_key}, "pk": {"S": document_key}})
            start = begun.order[:2] + (begun,)
        high = _high(as_of)
        for n in range(start[0], SHARDS):
            shard = {"S": f"close_due#{n:02d}"}
            for part in (WAKES, WRITTEN):
                if (n, part) < start[:2]:
                    continue
                request = {
                    "TableName": self._table,
                    "IndexName": GSI,
                    "Limit": max(1, min(chunk, CHUNK)),
                    # Instants are sortable text ("0001-..."); a written entry's `!` sorts before them.
                    "KeyConditionExpression": "gsi2pk = :p AND gsi2sk BETWEEN :lo AND :hi"
                    if part == WAKES else "gsi2pk = :p AND begins_with(gsi2sk, :lo)",
                    "ExpressionAttributeValues": {":p": shard, ":lo": {"S": "0"}, ":hi": {"S": high}}
                    if part == WAKES else {":p": shard, ":lo": {"S": DIRTY}},
                }
                if (n, part) == start[:2] and start[2] is not None:
                    request["ExclusiveStartKey"] = {"gsi2pk": shard, "gsi2sk": {"S": start[2].sort_key},
                                                    "pk": {"S": start[2].document_key}, "sk": {"S": ITEM}}
                for item in query_pages(self._client, **request):
                    yield _entry(item)

    def entries_of(self, customer_id: str, as_of: datetime) -> list[WakeEntry]:
        """The customer's entries due as of `as_of`, as its documents hold them (gsi1: the
        customer's contracts and grants, their keys and entries only)."""
        high, found = _high(as_of), []
        for kind in INDEXED_KINDS:
            for item in query_pages(
                self._client,
                TableName=self._table,
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :p",
                ExpressionAttributeValues={":p": {"S": f"{kind}s#{customer_id}"}},
                ProjectionExpression="pk, gsi2sk",
            ):
                if "gsi2sk" in item and _is_due(item["gsi2sk"]["S"], high):
                    found.append(_entry(item))
        return found

    def advance(self, entry: WakeEntry, version: int, wake: datetime | None) -> bool:
        """Move the entry to `wake` (None: remove it, nothing will ever be due), only if neither the
        entry nor the document changed since they were read (`entry.sort_key`, `version`): a write
        in between keeps it due. True if moved."""
        condition = "gsi2sk = :read AND version = :v"
        values = {":read": {"S": entry.sort_key}, ":v": {"N": str(version)}}
        if wake is None:
            update = "REMOVE gsi2pk, gsi2sk"
        else:
            update = "SET gsi2sk = :wsk"
            values[":wsk"] = {"S": _sort_key(format_sortable(wake), entry.customer_id)}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": entry.document_key}, "sk": {"S": "#"}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        return True

    def backfill(self, every: bool = False) -> int:
        """The one-off migration of documents stored before the index: every unarchived contract
        and grant without an entry gets one, due at once (the next run reads each such customer
        once and advances it). Idempotent: an entry is only added where none is. With `every`, the
        entries there are are made due too (after the grace period was shortened: an entry holds
        its period end plus the grace of the run that set it). The count made due."""
        added = 0
        missing = "" if every else " AND attribute_not_exists(gsi2pk)"
        kwargs = {
            "TableName": self._table,
            "FilterExpression": "(begins_with(pk, :c) OR begins_with(pk, :g)) AND sk = :item"
                                f"{missing} AND attribute_exists(document)",
            "ExpressionAttributeValues": {":c": {"S": "contract#"}, ":g": {"S": "grant#"}, ":item": {"S": "#"}},
        }
        while True:
            try:
                page = self._client.scan(**kwargs)
            except ClientError as exc:
                raise translate(exc) from exc
            for item in page["Items"]:
                document = exact_json.loads(item["document"]["S"])
                kind = item["pk"]["S"].split("#", 1)[0]
                entry = written_entry(kind, document)
                if not entry:
                    continue
                try:
                    self._client.update_item(
                        TableName=self._table,
                        Key={"pk": item["pk"], "sk": item["sk"]},
                        UpdateExpression="SET gsi2pk = :wpk, gsi2sk = :wsk",
                        # Never on a document deleted or indexed since the scan read it (a write's entry is due already).
                        ConditionExpression="attribute_exists(pk)" + missing,
                        ExpressionAttributeValues={":wpk": entry["gsi2pk"], ":wsk": entry["gsi2sk"]},
                    )
                    added += 1
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":  # a write indexed it meanwhile
                        raise translate(exc) from exc
            if not page.get("LastEvaluatedKey"):
                return added
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
