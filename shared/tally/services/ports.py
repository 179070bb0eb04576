"""What the use cases need from storage. Adapters (DynamoDB, in-memory) implement these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping, Protocol

from tally.billing.counters import CounterKey, CounterRow, CounterSums, CounterUpdate
from tally.billing.customers import Customer, KeyHandover
from tally.billing.errors import InvalidInput, TallyError
from tally.billing.events import UsageEvent
from tally.billing.metrics import BillableMetric
from tally.billing.quarantine import QuarantinedPair


class StoreUnavailable(TallyError):
    """A storage call failed for a reason worth retrying (throttling, timeouts)."""

    status = 503
    kind = "unavailable"


class StoreRefused(InvalidInput):
    """The store refused a write for what it would hold (an item over 400 KB, a number out of
    range): the input was too big. A 400 at the API; the aggregator quarantines it."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    event: UsageEvent
    ingested_at: datetime
    is_duplicate: bool


@dataclass(frozen=True, slots=True)
class Page:
    items: list
    next_page: str | None


class EventStore(Protocol):
    def put_new(self, events: list[UsageEvent], ingested_at: datetime) -> list[UsageEvent]:
        """Store each event whose transaction_id is new (first wins, per event; a request cut short
        by an outage raises StoreUnavailable and its retry stores the rest); return those that
        already existed."""

    def put_duplicate_receipts(self, events: list[UsageEvent], ingested_at: datetime) -> None:
        """Record duplicates for search; they never reach the counters."""

    def find(self, transaction_ids: list[str]) -> list[StoredEvent]: ...

    def scan_ingested_before(self, instant: datetime) -> Iterable[StoredEvent]: ...


class CounterStore(Protocol):
    def add(
        self,
        key: CounterKey,
        shard: str,
        parts: Mapping[str, Decimal],
        new_mark: str,
        *,
        below: str | None = None,
        expected: str | None = None,
        prune_before: int | None = None,
        mark_required: bool = False,
    ) -> bool:
        """Add each part's delta to that part and their sum to the total of the counter item
        `key` names (a sub-item: key.sub), and set the shard's high-water mark to `new_mark`, only
        if the shard's mark is absent (and not `mark_required`) or lower than `below` (first
        attempt), or equals `expected` (retry; None: absent). False if not. Once added, the other
        shards' marks created before `prune_before` (tally.billing.counters.stale_marks) are
        removed and their untimed marks re-stamped (untimed_restamps), each only while unchanged;
        best effort: one that fails waits for the next write."""

    def high_water_mark(self, key: CounterKey, shard: str) -> str | None: ...

    def additive_state(self, key: CounterKey, shard: str, floor: bool = False) -> AdditiveState:
        """The shard's high-water mark, the total and the parts of an additive counter item, read
        consistently; `floor`: also, when that mark is absent, the shard's mark on the counter's
        unsuffixed item (key.sub 0), which counters written before sub-items hold."""

    def quarantine(self, pairs: list[QuarantinedPair]) -> None:
        """Quarantine each pair (idempotent by metric and transaction id; the buckets add up). A
        pair already applied stays applied: a replayed record is never counted twice."""

    def quarantined(self, metric_id: str) -> list[QuarantinedPair]:
        """Every pair of the metric in quarantine, pending or applied."""

    def refuse(self, key: CounterKey, shard: str, new_mark: str, expected: str | None, pairs: list[QuarantinedPair]) -> bool:
        """Quarantine `pairs` and set the shard's mark to `new_mark` in one transaction, only if
        the mark is still `expected` (None: absent). False if not."""

    def reapply(self, pair: QuarantinedPair, additions: Mapping[CounterKey, Mapping[str, Decimal]]) -> str:
        """Re-apply a quarantined pair to additive counters: add each counter's parts (and their sum
        to its total) and move the pair from pending to applied, in one transaction. The keys
        name counters (sub 0); the store adds to one of each counter's sub-items, never to its
        unsuffixed item. Marks are left alone: the pair's record is behind them already. Returns REAPPLIED, NOT_PENDING (applied
        already, or never quarantined) or OUT_OF_RANGE (a sum would leave +-COUNTER_RANGE);
        nothing is written unless REAPPLIED."""

    def mark_applied(self, pair: QuarantinedPair) -> bool:
        """Move a pending pair to applied, after its idempotent counters (MAX, UNIQUE, LATEST) took
        it. False if it was not pending."""

    def raise_max(self, key: CounterKey, value: Decimal) -> None: ...

    def add_uniques(self, key: CounterKey, values: set[str]) -> None: ...

    def raise_latest(self, key: CounterKey, order: str, value: Decimal) -> None: ...

    def read(
        self, metric_id: str, ingest_key: str, first_bucket: str, last_bucket: str, parts: bool = False
    ) -> list[CounterRow]:
        """Counters of one metric and ingest key with buckets in [first_bucket, last_bucket] (one
        kind): a row per counter with its total, or (`parts`) a row per part, labelled by the time
        it covers (tally.billing.counters.row_label)."""

    def sums(self, metric_id: str, ingest_key: str, first_bucket: str, last_bucket: str, parts: bool) -> CounterSums:
        """The counters `read` would return, for an additive metric, summed on demand per
        CounterRead (tally.billing.counters.CounterSums): what rating reads."""


REAPPLIED = "reapplied"
NOT_PENDING = "not pending"
OUT_OF_RANGE = "out of range"


@dataclass(frozen=True, slots=True)
class AdditiveState:
    mark: str | None
    total: Decimal | None
    parts: Mapping[str, Decimal]
    # The shard's mark on the unsuffixed item, when the sub-item holds none: records at or below
    # it are counted there already.
    floor: str | None = None

    @property
    def applied_up_to(self) -> str | None:
        """The mark under which every record of the shard is in the counter already."""
        return self.mark if self.mark is not None else self.floor


class CustomerStore(Protocol):
    def create(self, customer: Customer) -> None: ...

    def get(self, customer_id: str) -> Customer | None: ...

    def by_alias(self, alias: str) -> Customer | None: ...

    def list(self, limit: int, cursor: str | None) -> Page: ...

    def replace_aliases(self, before: Customer, after: Customer) -> None: ...

    def handovers(self, keys: set[str]) -> dict[str, KeyHandover]:
        """Of `keys`, the archived customers' ids and the aliases released within their handover
        hour, with what ingest does with their events (KeyHandover)."""

    def released_until(self, aliases: list[str] | tuple[str, ...]) -> dict[str, datetime]:
        """For each of `aliases` that is free after another customer released it: where that
        customer's usage of it ends (Customer.former_keys), which is where a new owner's begins."""


class MetricStore(Protocol):
    def put(self, metric: BillableMetric) -> None: ...

    def get(self, metric_id: str) -> BillableMetric | None: ...

    def all(self) -> list[BillableMetric]:
        """Every metric, archived too, read consistently (the aggregator relies on it)."""

    def archive(self, metric_id: str, at: datetime) -> BillableMetric: ...

    def replace(self, before: BillableMetric, after: BillableMetric) -> None:
        """Write `after` if the stored metric is still `before` (Conflict otherwise)."""

    def activate(self, metric_id: str, at: datetime) -> BillableMetric:
        """Set a pending metric's activation instant to `at`, unless it has one already (the first
        activation wins); the metric as stored after. NotFound if there is no such metric."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    key_hash: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyStore(Protocol):
    def put(self, record: ApiKeyRecord) -> None: ...

    def by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    def list(self) -> list[ApiKeyRecord]: ...

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord: ...


# -- backfill jobs (tally.billing.backfill, services/backfill.py) ------------------------------------
@dataclass(frozen=True, slots=True)
class ScanPage:
    """Stored items of one scan segment, in the segment's key order, and the key the page ends at
    (tally.billing.backfill.SEGMENT_END when the segment has no more)."""

    items: list[StoredEvent]
    end: str
    scanned: int  # items the store read for the page, returned or not


class SegmentScan(Protocol):
    def scan_segment(
        self, segment: int, segments: int, start: str | None, limit: int, ingested_before: datetime, until: str | None = None
    ) -> ScanPage:
        """Scan segment `segment` of `segments` after the key `start` (None: from the segment's
        start): at most `limit` items read, or, with `until`, every one up to and including the
        item keyed `until` (to the segment's end for SEGMENT_END), however many that is. Returned:
        at least the first receipts ingested before `ingested_before` among them (a store may return
        more; the caller keeps those)."""


class BackfillStore(Protocol):
    def create(self, job: Any) -> None:
        """Store a new job, waiting for a scan (idempotent by metric id: a second create keeps the first)."""

    def get(self, metric_id: str) -> Any | None: ...

    def get_many(self, metric_ids: list[str]) -> dict[str, Any]: ...

    def waiting(self, limit: int) -> list[Any]:
        """Up to `limit` jobs waiting for a scan, oldest first: an index read, never a table scan
        (it may lag a write by a moment; a job it misses is met by its own message)."""

    def form_scan(self, leader: str, members: list[str], starts_at: Any) -> list[str] | None:
        """Make the job of `leader` lead a scan, starting at `starts_at`, that carries each metric of
        `members` (the leader first) whose job still waits for a scan: all of it at once. Returns the
        metrics the scan carries, or None if the leader's job waits for a scan no more."""

    def drop(self, metric_id: str) -> None:
        """Take a job whose metric never came out of the waiting index (its create died first)."""

    def claim(self, scan: str, segment: int, pages: int, end: str) -> bool:
        """Record `end` as the end key of page `pages + 1` of the scan's segment, only if the segment
        has finished exactly `pages` pages and no page is claimed. False if not."""

    def finish(self, scan: str, segment: int, pages: int, end: str, scanned: int, counted: dict[str, int], at: Any) -> bool:
        """Move the segment past its claimed page `pages + 1` (ending at `end`) and add the page's
        figures to the scan's (`counted` per member), only if that page is still the claimed one:
        each page's figures are added once. The last segment's finish completes the scan at `at`.
        False if not."""


class BackfillQueue(Protocol):
    def send(self, scan: str, segments: list[int], delay_seconds: int) -> None:
        """Ask for the scan's segments' pages to be read, not before `delay_seconds` (at most 900)."""

    def start(self, metric_id: str, delay_seconds: int) -> None:
        """Ask for the job of `metric_id` to form (or join) a scan, not before `delay_seconds`."""
