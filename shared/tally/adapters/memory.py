"""In-memory stores with the same contracts as the DynamoDB ones, for service tests."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Iterable

from tally.billing import exact_json
from tally.billing.counters import (
    PART_NAMES,
    CounterKey,
    CounterRow,
    RowSums,
    exact_sum,
    marks_to_prune,
    part_values,
    range_problem,
    row_label,
    sub_item_key,
    sum_sub_items,
    untimed_restamps,
)
from tally.billing.customers import Customer, KeyHandover
from tally.billing.errors import Conflict
from tally.billing.events import UsageEvent
from tally.billing.limits import MAX_MARKS_PRUNED_PER_WRITE
from tally.billing.metrics import BillableMetric
from tally.billing.quarantine import APPLIED, PENDING, QuarantinedPair
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.ports import NOT_PENDING, OUT_OF_RANGE, REAPPLIED, AdditiveState, ApiKeyRecord, Page, StoredEvent


class MemoryEventStore:
    def __init__(self) -> None:
        self.originals: dict[str, StoredEvent] = {}
        self.receipts: list[StoredEvent] = []
        self._lock = threading.Lock()

    def put_new(self, events: list[UsageEvent], ingested_at: datetime) -> list[UsageEvent]:
        with self._lock:
            known = [e for e in events if e.transaction_id in self.originals]
            for event in events:
                if event.transaction_id not in self.originals:
                    self.originals[event.transaction_id] = StoredEvent(uuid.uuid4().hex, event, ingested_at, False)
            return known

    def put_duplicate_receipts(self, events: list[UsageEvent], ingested_at: datetime) -> None:
        with self._lock:
            self.receipts.extend(StoredEvent(uuid.uuid4().hex, e, ingested_at, True) for e in events)

    def find(self, transaction_ids: list[str]) -> list[StoredEvent]:
        wanted = set(transaction_ids)
        found = [self.originals[t] for t in transaction_ids if t in self.originals]
        return found + [r for r in self.receipts if r.event.transaction_id in wanted]

    def scan_ingested_before(self, instant: datetime) -> Iterable[StoredEvent]:
        return [s for s in list(self.originals.values()) if s.ingested_at < instant]


@dataclass
class _Counter:
    total: Decimal | None = None
    marks: dict[str, str] = field(default_factory=dict)
    uniques: set[str] = field(default_factory=set)
    latest: tuple[str, Decimal] | None = None
    parts: dict[str, Decimal] = field(default_factory=dict)


class MemoryCounterStore:
    """Mirrors DynamoDbCounterStore's conditional writes; `fail` hooks let tests inject faults."""

    def __init__(self) -> None:
        self.counters: dict[CounterKey, _Counter] = {}
        self.quarantined_pairs: dict[tuple[str, str], QuarantinedPair] = {}  # (metric, transaction id) ->
        self.writes = 0
        self.prune_writes = 0  # follow-up writes that removed stale marks (also in `writes`)
        self.pruned_marks = 0
        self.fail = None  # callable(key) -> None, may raise, called before each write

    def _before_write(self, key: CounterKey) -> _Counter:
        if self.fail is not None:
            self.fail(key)
        self.writes += 1
        return self.counters.setdefault(key, _Counter())

    def add(self, key, shard, parts, new_mark, *, below=None, expected=None, prune_before=None, mark_required=False) -> bool:
        counter = self._before_write(key)
        mark = counter.marks.get(shard)
        if expected is not None:
            allowed = mark == expected
        elif mark is None:
            allowed = not mark_required
        else:
            allowed = below is not None and mark < below
        if not allowed or range_problem(counter.total, counter.parts, parts) is not None:
            return False
        counter.total = exact_sum([counter.total or Decimal(0), *parts.values()])
        for part, delta in parts.items():
            counter.parts[part] = exact_sum([counter.parts.get(part, Decimal(0)), delta])
        counter.marks[shard] = new_mark
        if prune_before is not None:
            stale = marks_to_prune(counter.marks, prune_before, keep=shard)[:MAX_MARKS_PRUNED_PER_WRITE]
            restamps = dict(list(untimed_restamps(counter.marks, prune_before, keep=shard).items())[: MAX_MARKS_PRUNED_PER_WRITE - len(stale)])
            if stale or restamps:  # as DynamoDB's follow-up write: one more write, the marks unchanged since
                self._prune(key)
                for gone in stale:
                    del counter.marks[gone]
                counter.marks.update(restamps)
                self.pruned_marks += len(stale)
        return True

    def _prune(self, key: CounterKey) -> None:
        self.writes += 1
        self.prune_writes += 1

    def high_water_mark(self, key, shard):
        counter = self.counters.get(key)
        return None if counter is None else counter.marks.get(shard)

    def additive_state(self, key, shard, floor=False) -> AdditiveState:
        counter = self.counters.get(key) or _Counter()
        mark = counter.marks.get(shard)
        below = None
        if floor and mark is None and key.sub:
            unsuffixed = self.counters.get(replace(key, sub=0))
            below = None if unsuffixed is None else unsuffixed.marks.get(shard)
        return AdditiveState(mark, counter.total, dict(counter.parts), below)

    def quarantine(self, pairs) -> None:
        for pair in pairs:
            held = self.quarantined_pairs.get((pair.metric_id, pair.transaction_id))
            if held is None:
                self.quarantined_pairs[(pair.metric_id, pair.transaction_id)] = pair
            elif held.state == PENDING:
                buckets = tuple(sorted(set(held.buckets) | set(pair.buckets)))
                self.quarantined_pairs[(pair.metric_id, pair.transaction_id)] = replace(held, buckets=buckets)

    def quarantined(self, metric_id: str) -> list[QuarantinedPair]:
        return [pair for (metric, _), pair in sorted(self.quarantined_pairs.items()) if metric == metric_id]

    def refuse(self, key, shard, new_mark, expected, pairs) -> bool:
        counter = self._before_write(key)
        if counter.marks.get(shard) != expected:
            return False
        self.quarantine(pairs)
        counter.marks[shard] = new_mark
        return True

    def reapply(self, pair, additions) -> str:
        held = self.quarantined_pairs.get((pair.metric_id, pair.transaction_id))
        if held is None or held.state != PENDING:
            return NOT_PENDING
        # to a sub-item, never to a counter's unsuffixed item (ports.CounterStore.reapply)
        additions = {key if key.sub else sub_item_key(key, pair.transaction_id): parts for key, parts in additions.items()}
        for key, parts in additions.items():
            counter = self.counters.get(key) or _Counter()
            if range_problem(counter.total, counter.parts, parts) is not None:
                return OUT_OF_RANGE
        for key, parts in additions.items():
            counter = self._before_write(key)
            counter.total = exact_sum([counter.total or Decimal(0), *parts.values()])
            for part, delta in parts.items():
                counter.parts[part] = exact_sum([counter.parts.get(part, Decimal(0)), delta])
        self.quarantined_pairs[(pair.metric_id, pair.transaction_id)] = replace(held, state=APPLIED)
        return REAPPLIED

    def mark_applied(self, pair) -> bool:
        held = self.quarantined_pairs.get((pair.metric_id, pair.transaction_id))
        if held is None or held.state != PENDING:
            return False
        self.quarantined_pairs[(pair.metric_id, pair.transaction_id)] = replace(held, state=APPLIED)
        return True

    def raise_max(self, key, value):
        counter = self._before_write(key)
        if counter.total is None or value > counter.total:
            counter.total = value

    def add_uniques(self, key, values):
        self._before_write(key).uniques |= set(values)

    def raise_latest(self, key, order, value):
        counter = self._before_write(key)
        if counter.latest is None or order > counter.latest[0]:
            counter.latest = (order, value)

    def read(self, metric_id, ingest_key, first_bucket, last_bucket, parts=False) -> list[CounterRow]:
        rows = []
        for k, c in self.counters.items():
            if k.metric_id == metric_id and k.ingest_key == ingest_key and first_bucket <= k.bucket <= last_bucket:
                if parts:
                    rows.append(CounterRow(k.bucket, k.group, parts=part_values(k.bucket, c.parts)))
                else:
                    rows.append(CounterRow(row_label(k.bucket), k.group, c.total, frozenset(c.uniques), c.latest))
        return sum_sub_items(rows) if first_bucket[0] in PART_NAMES else rows

    def sums(self, metric_id, ingest_key, first_bucket, last_bucket, parts) -> RowSums:
        return RowSums(self.read(metric_id, ingest_key, first_bucket, last_bucket, parts))


class MemoryCustomerStore:
    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}
        self.aliases: dict[str, str] = {}
        self.released: dict[str, datetime] = {}  # free aliases: where their former owner's usage ends
        # released aliases: (released at, former owner reads until, new owner, claimed at)
        self.releases: dict[str, tuple] = {}

    def create(self, customer: Customer) -> None:
        if customer.id in self.aliases:
            raise Conflict("the customer changed or already exists; retry")
        for alias in customer.claimed_aliases:
            if alias in self.aliases:
                raise Conflict(f"ingest alias {alias!r} already belongs to another customer")
        self.aliases[customer.id] = customer.id  # the id is an ingest key too (see the Dynamo store)
        self.customers[customer.id] = customer
        for alias in customer.claimed_aliases:
            if alias in self.releases:
                start, until, _, _ = self.releases[alias]
                self.releases[alias] = (start, until, customer.id, customer.created_at)
            self.aliases[alias] = customer.id
            self.released.pop(alias, None)

    def get(self, customer_id):
        return self.customers.get(customer_id)

    def by_alias(self, alias):
        owner = self.aliases.get(alias)
        return None if owner is None else self.customers[owner]

    def list(self, limit, cursor):
        ordered = sorted(self.customers.values(), key=lambda c: (c.created_at, c.id))
        start = int(cursor or 0)
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return Page(page, str(start + limit) if more else None)

    def replace_aliases(self, before, after):
        for alias in after.claimed_aliases:
            if self.aliases.get(alias, after.id) != after.id:
                raise Conflict(f"ingest alias {alias!r} already belongs to another customer")
        ends = {w.key: w.until for w in after.former_keys}
        for alias in before.claimed_aliases:
            if alias not in after.claimed_aliases:
                self.aliases.pop(alias, None)
                self.released[alias] = ends.get(alias) or after.updated_at
                self.releases[alias] = (after.updated_at, self.released[alias], None, None)
        for alias in after.claimed_aliases:
            if alias not in before.claimed_aliases and alias in self.releases:
                start, until, _, _ = self.releases[alias]
                self.releases[alias] = (start, until, after.id, after.updated_at)
            self.aliases[alias] = after.id
            self.released.pop(alias, None)
        self.customers[after.id] = after

    def released_until(self, aliases):
        return {a: self.released[a] for a in aliases if a in self.released}

    def handovers(self, keys):
        found = {k: KeyHandover(ignored_from=c.archived_at) for k in keys
                 if (c := self.customers.get(k)) is not None and c.archived_at is not None}
        for key in keys:
            if key in self.releases:
                start, until, owner, claimed_at = self.releases[key]
                found[key] = KeyHandover(released=(start, until), owner=owner, claimed_at=claimed_at)
        return found


class MemoryMetricStore:
    def __init__(self) -> None:
        self.metrics: dict[str, BillableMetric] = {}

    def put(self, metric):
        self.metrics[metric.id] = metric

    def get(self, metric_id):
        return self.metrics.get(metric_id)

    def all(self):
        return list(self.metrics.values())

    def archive(self, metric_id, at):
        self.metrics[metric_id] = replace(self.metrics[metric_id], archived_at=at)
        return self.metrics[metric_id]

    def replace(self, before, after):
        if self.metrics.get(before.id) != before:
            raise Conflict(f"billable metric {before.id} changed while it was being updated; retry")
        self.metrics[after.id] = after

    def activate(self, metric_id, at):
        metric = self.metrics[metric_id]
        if metric.activated_at is None:
            metric = self.metrics[metric_id] = replace(metric, activated_at=at)
        return metric


class MemoryApiKeyStore:
    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}

    def put(self, record):
        self.records[record.key_hash] = record

    def by_hash(self, key_hash):
        return self.records.get(key_hash)

    def list(self):
        return list(self.records.values())

    def revoke(self, key_id, at):
        for key_hash, record in self.records.items():
            if record.key_id == key_id:
                self.records[key_hash] = replace(record, revoked_at=at)
                return self.records[key_hash]
        raise KeyError(key_id)


class MemoryPackageStore:
    """Packages and alias schedules in memory (services/packages.py PackageStore), with the
    conditions of the DynamoDB store: a new id, alias schedules written over the version read, and
    a uniqueness key claimed once."""

    def __init__(self) -> None:
        self._packages: dict[str, tuple[str, int]] = {}  # id -> (exact JSON, version)
        self._aliases: dict[str, tuple[str, int]] = {}
        self._claims: set[str] = set()
        self._parts: dict[str, str] = {}

    def create(self, package: dict, aliases: dict[str, tuple[list[dict], int | None]], uniqueness_key: str | None) -> None:
        if uniqueness_key is not None and uniqueness_key in self._claims:
            raise Conflict(f"a package with uniqueness_key {uniqueness_key!r} already exists")
        for name, (_, version) in aliases.items():
            if (self._aliases[name][1] if name in self._aliases else None) != version:
                raise Conflict("an alias of the package was assigned meanwhile; retry")
        if package["id"] in self._packages:
            raise Conflict("the package already exists")
        self._packages[package["id"]] = (exact_json.dumps({k: v for k, v in package.items() if not k.startswith("_")}), 1)
        for name, (entries, version) in aliases.items():
            self._aliases[name] = (exact_json.dumps(entries), (version or 0) + 1)
        if uniqueness_key is not None:
            self._claims.add(uniqueness_key)
        for kind in ("commits", "credits", "subscriptions", "scheduled_charges"):
            self._parts.update({p["id"]: package["id"] for p in package.get(kind) or ()})

    def part_owner(self, part_id: str) -> str | None:
        return self._parts.get(part_id)

    def get(self, package_id: str) -> dict | None:
        if package_id not in self._packages:
            return None
        text, version = self._packages[package_id]
        return exact_json.loads(text) | {"_version": version}

    def replace(self, package: dict) -> None:
        _, version = self._packages[package["id"]]
        if version != package["_version"]:
            raise Conflict("the package changed while it was being updated; retry")
        self._packages[package["id"]] = (exact_json.dumps({k: v for k, v in package.items() if not k.startswith("_")}), version + 1)

    def page(self, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        keyed = sorted((f"{format_sortable(parse_rfc3339(p['created_at']))}#{p['id']}", p) for p in map(self.get, self._packages))
        rest = [(k, p) for k, p in keyed if after is None or k > after]
        page = rest[:limit]
        return [p for _, p in page], page[-1][0] if len(rest) > limit else None

    def alias_schedules(self, names: list[str]) -> dict[str, tuple[list[dict], int]]:
        return {n: (exact_json.loads(self._aliases[n][0]), self._aliases[n][1]) for n in names if n in self._aliases}
