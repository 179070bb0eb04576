"""Figure 8 of `tally bench`: hot keys. One customer sends 10,000 events/s; DynamoDB spreads its
events over the events table's partitions by transaction id, so over every stream shard. How often
is each counter item written, and with how many write units, against DynamoDB's 1,000 write units
per second per partition?

An in-memory simulation of the events stream: `SHARDS` shards, each read by Lambda with the
aggregator's event source settings (BatchSize, MaximumBatchingWindow, parallelization factor 1:
one batch in flight per shard), each batch given to the real aggregator (AggregateService:
pre-aggregation per batch, one conditional write per counter per batch) over the in-memory
counter store. Every counter write is counted in the second its batch is applied. Its write units
are the counter item's size as DynamoDB would hold it (infra/bench/capacity.py), including one
high-water mark per stream shard that ever wrote it.

Baseline, same events: one write per (event, counter), as without pre-aggregation.

Sub-items: an additive counter is written as limits.COUNTER_SUB_ITEMS sub-items, a shard always to
the same one (tally.billing.counters.counter_sub_item). 8b measures it side by side with the version
before sub-items (one item per counter, every shard's marks on it), both with items already holding
a day of closed shards' marks (as many as 8d's month counter keeps, spread over the sub-items as
those shards' ids hash), so the write units are a steady state's, not a fresh counter's.

8d, marks over days: the same shards rotating every SHARD_LIFETIME_H hours for ROTATION_HOURS
hours, each shard writing the month counter WRITES_PER_SHARD_LIFE times, through the real aggregator, side
by side with and without the marks' creation times (without: no mark is ever pruned, as before).
The month counter's marks, size and write units per write (the prune follow-ups included) over the
last hours.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest import mock

from infra.bench.capacity import item_size, write_units
from infra.settings import ScaleSettings
from tally.billing.limits import COUNTER_SUB_ITEMS

SHARDS = 100
RATE_PER_S = 10_000
PARTITION_WRITE_UNITS_PER_S = 1_000  # DynamoDB's per-partition write throughput
# The aggregator's event source mapping as deployed by default (infra/settings.py).
_DEPLOYED = ScaleSettings.defaults()
BATCH_SIZE = _DEPLOYED.aggregate_batch_size
BATCHING_WINDOW_S = float(_DEPLOYED.aggregate_batching_window_s)
INVOKE_S = 0.05  # one aggregator invocation, from the stream poll to its response
# DynamoDB Streams closes shards periodically and opens successors; about 4 hours is the period
# commonly observed (AWS documents no figure): an assumption of this figure.
SHARD_LIFETIME_H = 4
MAX_ITEM_BYTES = 400 * 1024
ROTATION_HOURS = 44  # past the marks' 26 h window plus a shard's life: the pruned steady state
ROTATION_HOURS_FULL = 96
WRITES_PER_SHARD_LIFE = 1


@dataclass(frozen=True)
class HotKeyFigures:
    seconds: int
    batches: int
    mean_batch: float
    max_writes_per_item_s: int
    naive_writes_per_item_s: int
    max_units_per_item_s: int
    max_units_per_partition_s: int
    largest_item_bytes: int
    marks_on_largest_item: int
    wru_per_event: float  # aggregation's write units per event, steady state
    days_until_full: float  # until a month counter written from every shard holds 400 KB of marks
    units_per_item_s_after_a_day: int  # the busiest item's WRU/s once it holds a day of shards' marks


@dataclass(frozen=True)
class RotationFigures:
    hours: int
    marks: int  # on the month counter (all its items) at the end
    item_bytes: int  # its largest item
    wru_per_write: float  # over the last quarter of the run, prune follow-ups included
    prune_writes: int


def _item(key, counter) -> dict:
    """A memory store's counter item as DynamoDB would hold it, marks included."""
    from tally.adapters.dynamo.counters import _key, unique_member

    item = dict(_key(key))
    if counter.total is not None:
        item["v"] = {"N": str(counter.total)}
    item |= {part: {"N": str(value)} for part, value in counter.parts.items()}
    if counter.uniques:
        item["u"] = {"SS": [unique_member(v) for v in counter.uniques]}
    if counter.latest is not None:
        item["lo"], item["lv"] = {"S": counter.latest[0]}, {"N": str(counter.latest[1])}
    item |= {"mk_" + shard: {"S": mark} for shard, mark in counter.marks.items()}
    return item


def _unsharded(sharded: bool):
    """The aggregator as it was before sub-items (`sharded` False): each counter one item."""
    return nullcontext() if sharded else mock.patch("tally.services.aggregate.sub_item_key", lambda key, shard: key)


def rotation(hours: int, prune: bool, seed: int = 5, sharded: bool = True) -> RotationFigures:
    """SHARDS lineages of shards, each renewed every SHARD_LIFETIME_H hours (staggered), each
    shard applying WRITES_PER_SHARD_LIFE one-event batches of the COUNT metric; `prune`: records
    carry their creation time, so stale marks are removed."""
    with _unsharded(sharded):
        return _rotation(hours, prune, seed)


def _rotation(hours: int, prune: bool, seed: int) -> RotationFigures:
    from tally.adapters.memory import MemoryCounterStore
    from tally.billing.counters import StreamedEvent, sequence_key
    from tally.billing.events import UsageEvent
    from tally.services.aggregate import AggregateService

    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    epoch = int(now.timestamp())
    rng = random.Random(seed)
    life = SHARD_LIFETIME_H * 3600
    schedule = []
    for lineage in range(SHARDS):
        offset = rng.uniform(0, life)
        for generation in range(int(hours * 3600 // life) + 2):
            start = generation * life - offset
            for _ in range(WRITES_PER_SHARD_LIFE):
                at = rng.uniform(start, start + life)
                if 0 <= at < hours * 3600:
                    schedule.append((at, _shard_id(lineage * 1_000 + generation)))
    schedule.sort()
    pruned_keys = []

    written = []

    class Store(MemoryCounterStore):
        def _prune(self, key):
            pruned_keys.append(key)
            super()._prune(key)

        def _before_write(self, key):
            written.append(key)
            return super()._before_write(key)

    store = Store()
    service = AggregateService(store, type("Metrics", (), {"all": staticmethod(lambda: _metrics(now)[:1])})())
    tail_from = hours * 3600 * 3 / 4
    units = writes = prune_writes = 0
    sizes: dict[Any, tuple[int, int]] = {}  # month counter item -> (its write units, writes since measured)
    for n, (at, shard) in enumerate(schedule):
        event = UsageEvent(f"r-{n}", "hot-customer", "api_call", now + timedelta(seconds=at), {})
        record = StreamedEvent(sequence_key(10**20 + n), event, now, epoch + int(at) if prune else None)
        pruned_keys.clear()
        written.clear()
        service.apply_batch(shard, [record])
        if at >= tail_from:  # the month counter's write, and its prune follow-up, at its item's size then
            month = next(key for key in written if key.bucket.startswith("M"))
            measured = sizes.get(month)
            if measured is None or measured[1] % 8 == 0:  # sizes change by a mark or so a write
                measured = (write_units(item_size(_item(month, store.counters[month]))), 0)
            sizes[month] = (measured[0], measured[1] + 1)
            pruned = pruned_keys.count(month)
            units += measured[0] * (1 + pruned)
            writes += 1
            prune_writes += pruned
    items = [(key, counter) for key, counter in store.counters.items() if key.bucket.startswith("M")]
    marks = sum(len(counter.marks) for _, counter in items)
    largest = max(item_size(_item(key, counter)) for key, counter in items)
    return RotationFigures(hours, marks, largest, units / max(writes, 1), prune_writes)


def _shard_id(index: int) -> str:
    """Shaped as DynamoDB Streams names its shards."""
    return f"shardId-{1_700_000_000_000 + index:020d}-{uuid.UUID(int=index).hex[-8:]}"


def _metrics(now: datetime):
    from tally.billing.metrics import Aggregation, BillableMetric, PropertyFilter

    active = now - timedelta(days=1)

    def metric(name: str, aggregation: Aggregation, key: str | None, groups=()) -> BillableMetric:
        filters = (PropertyFilter(key, exists=True),) if key else ()
        return BillableMetric(name, name, aggregation, key, None, filters, groups, activated_at=active)

    # The bench's five metrics (infra/bench/load.py METRICS), all matching every event.
    return [metric("count", Aggregation.COUNT, None), metric("tokens", Aggregation.SUM, "tokens"),
            metric("peak", Aggregation.MAX, "latency_ms"), metric("users", Aggregation.UNIQUE, "user_id"),
            metric("last", Aggregation.LATEST, "tokens")]


def _arrivals(seconds: int, rng: random.Random, now: datetime, properties: bool) -> list[list[tuple[float, Any]]]:
    """Per shard, (arrival second, StreamedEvent) in order: RATE_PER_S events, each on a random
    shard (its transaction id's partition), sequence numbers increasing per shard; `properties`:
    the bench's (infra/bench/load.py), else none (COUNT reads none)."""
    from infra.bench.load import MODELS, REGIONS, USERS
    from tally.billing.counters import StreamedEvent, sequence_key
    from tally.billing.events import UsageEvent

    shards: list[list[tuple[float, Any]]] = [[] for _ in range(SHARDS)]
    for n in range(RATE_PER_S * seconds):
        at = n / RATE_PER_S
        props = {"tokens": Decimal(rng.randint(1, 4_000)), "latency_ms": Decimal(rng.randint(5, 900)),
                 "model": rng.choice(MODELS), "region": rng.choice(REGIONS),
                 "user_id": f"user-{rng.randrange(USERS)}"} if properties else {}
        event = UsageEvent(f"hot-{n}", "hot-customer", "api_call", now + timedelta(seconds=at), props)
        created = int(now.timestamp() + at) + 1  # ApproximateCreationDateTime, rounded up
        shards[rng.randrange(SHARDS)].append((at, StreamedEvent(sequence_key(10**20 + n), event, now, created)))
    return shards


def _batches(arrivals: list[tuple[float, Any]]) -> list[tuple[float, list[Any]]]:
    """Lambda's batches of one shard: up to BATCH_SIZE records, or what arrived within the
    batching window of the first; one in flight at a time. (applied at, records)."""
    batches, i, free_at = [], 0, 0.0
    while i < len(arrivals):
        opened = max(arrivals[i][0], free_at)
        batch = []
        while i < len(arrivals) and len(batch) < BATCH_SIZE and arrivals[i][0] <= opened + BATCHING_WINDOW_S:
            batch.append(arrivals[i][1])
            i += 1
        closed = arrivals[i - 1][0] if len(batch) == BATCH_SIZE else opened + BATCHING_WINDOW_S
        free_at = max(closed, opened) + INVOKE_S
        batches.append((free_at, batch))
    return batches


def simulate(seconds: int, metric_count: int = 5, seed: int = 11, sharded: bool = True, history: int = 0) -> HotKeyFigures:
    """`history`: closed shards' marks each additive counter holds already (a day of rotation)."""
    with _unsharded(sharded):
        return _simulate(seconds, metric_count, seed, sharded, history)


def _history(store, metrics, now: datetime, marks: int, sharded: bool) -> None:
    """Each additive counter the run writes, holding `marks` marks of closed shards, created
    within the pruning window (so kept), on the items those shards' ids map to."""
    from tally.adapters.memory import _Counter
    from tally.billing.counters import CounterKey, counter_sub_item, event_counters, mark_of, sequence_key

    epoch = int(now.timestamp())
    for metric in metrics:
        if not metric.aggregation_type.is_additive:
            continue
        for bucket, _ in event_counters(metric.aggregation_type, now):
            key = CounterKey(metric.id, "hot-customer", bucket, ())
            for n in range(marks):
                closed = _shard_id(10_000 + n)
                item = replace(key, sub=counter_sub_item(closed)) if sharded else key
                mark = mark_of(sequence_key(10**19 + n), epoch - 20 * 3600 + n)
                store.counters.setdefault(item, _Counter()).marks[closed] = mark


def _simulate(seconds: int, metric_count: int, seed: int, sharded: bool, history: int) -> HotKeyFigures:
    from tally.adapters.memory import MemoryCounterStore
    from tally.billing.counters import SEQUENCE_WIDTH, mark_of
    from tally.services.aggregate import AggregateService

    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    rng = random.Random(seed)
    metrics = _metrics(now)[:metric_count]
    writes: dict[tuple[int, Any], int] = defaultdict(int)  # (second, counter key) -> writes

    class CountingStore(MemoryCounterStore):
        second = 0

        def _before_write(self, key):
            writes[(self.second, key)] += 1
            return super()._before_write(key)

    store = CountingStore()
    _history(store, metrics, now, history, sharded)
    service = AggregateService(store, type("Metrics", (), {"all": staticmethod(lambda: metrics)})())
    timeline = []
    for index, arrivals in enumerate(_arrivals(seconds, rng, now, properties=metric_count > 1)):
        timeline += [(at, _shard_id(index), batch) for at, batch in _batches(arrivals)]
    timeline.sort(key=lambda entry: entry[0])
    for at, shard, batch in timeline:
        store.second = int(at)
        outcome = service.apply_batch(shard, batch)
        if outcome.first_failed_sequence is not None:
            raise RuntimeError("the simulated aggregator failed a batch")

    sizes = {key: (item_size(_item(key, counter)), len(counter.marks)) for key, counter in store.counters.items()}
    # Whole seconds of steady state: batches of the first second's events are applied in the
    # next, and the last second's after the end.
    full = set(range(1, seconds))
    per_item = [count for (second, _), count in writes.items() if second in full]
    units_item, units_partition = defaultdict(int), defaultdict(int)
    for (second, key), count in writes.items():
        if second in full:
            units = count * write_units(sizes[key][0])
            units_item[(second, key)] += units
            units_partition[(second, key.metric_id, key.ingest_key)] += units
    largest = max(sizes.items(), key=lambda entry: entry[1][0])
    steady_units = sum(units_item.values())
    # A month counter keeps the marks of every shard that ever wrote it, closed shards' too.
    # (as a live mark: its sequence and its newest record's creation time, tally.billing.counters.mark_of)
    mark_bytes = item_size({"mk_" + _shard_id(0): {"S": mark_of("0" * SEQUENCE_WIDTH, int(now.timestamp()))}})
    marks_per_day = SHARDS * 24 / SHARD_LIFETIME_H
    unmarked = largest[1][0] - largest[1][1] * mark_bytes
    return HotKeyFigures(
        seconds=seconds, batches=len(timeline), mean_batch=RATE_PER_S * seconds / len(timeline),
        max_writes_per_item_s=max(per_item),
        naive_writes_per_item_s=RATE_PER_S,  # every event writes each of its counters once
        max_units_per_item_s=max(units_item.values()), max_units_per_partition_s=max(units_partition.values()),
        largest_item_bytes=largest[1][0], marks_on_largest_item=largest[1][1],
        wru_per_event=steady_units / (RATE_PER_S * len(full)),
        days_until_full=(MAX_ITEM_BYTES - unmarked) / (mark_bytes * marks_per_day),
        units_per_item_s_after_a_day=max(per_item) * write_units(unmarked + int(marks_per_day) * mark_bytes),
    )


def figure_hot_keys(report: Any, quick: bool) -> None:
    from infra.bench.report import Row

    # Each batch writes each of its counters once, whatever the metric: quick runs (the test
    # suite's) simulate the COUNT metric alone, over 2 s.
    metric_count = 1 if quick else 5
    hours = ROTATION_HOURS if quick else ROTATION_HOURS_FULL
    pruned, unpruned = rotation(hours, prune=True), rotation(hours, prune=False)
    # A day on: every counter holds the marks 8d's month counter keeps, the live shards' among them.
    history = max(pruned.marks - SHARDS, 0)
    seconds = 2 if quick else 3
    figures = simulate(seconds=seconds, metric_count=metric_count, history=history)
    before = simulate(seconds=seconds, metric_count=metric_count, history=history, sharded=False)
    limit = PARTITION_WRITE_UNITS_PER_S
    report.figures |= {
        "hot_key_max_writes_per_item_s": figures.max_writes_per_item_s,
        "hot_key_naive_writes_per_item_s": figures.naive_writes_per_item_s,
        "hot_key_max_wru_per_item_s": figures.max_units_per_item_s,
        "hot_key_unsharded_max_wru_per_item_s": before.max_units_per_item_s,
        "hot_key_unsharded_largest_counter_item_bytes": before.largest_item_bytes,
        "hot_key_unsharded_max_writes_per_item_s": before.max_writes_per_item_s,
        "hot_key_max_wru_per_partition_s": figures.max_units_per_partition_s,
        "hot_key_largest_counter_item_bytes": figures.largest_item_bytes,
        "hot_key_mean_batch": figures.mean_batch,
        f"hot_key_aggregation_wru_per_event_{metric_count}m": figures.wru_per_event,
        "hot_key_days_until_a_month_counter_holds_400kb": before.days_until_full,
        "hot_key_wru_per_item_s_after_a_day": before.units_per_item_s_after_a_day,
        "marks_pruned_month_counter_marks": pruned.marks,
        "marks_unpruned_month_counter_marks": unpruned.marks,
        "marks_pruned_month_counter_bytes": pruned.item_bytes,
        "marks_unpruned_month_counter_bytes": unpruned.item_bytes,
        "marks_pruned_wru_per_write": pruned.wru_per_write,
        "marks_unpruned_wru_per_write": unpruned.wru_per_write,
        "marks_prune_writes": pruned.prune_writes,
    }
    report.rows.append(Row(
        "8  hot key: writes/s per counter item",
        f"{figures.max_writes_per_item_s:,}/s", f"no pre-aggregation {figures.naive_writes_per_item_s:,}/s",
        f"{figures.max_writes_per_item_s / figures.naive_writes_per_item_s:.3f}×", f"≤ {limit:,}/s",
        "met" if figures.max_writes_per_item_s <= limit else "missed"))
    report.rows.append(Row(
        f"8b hot key, a day on: WRU/s per item (largest item), {COUNTER_SUB_ITEMS} sub-items",
        f"{figures.max_units_per_item_s:,} ({figures.largest_item_bytes / 1024:,.1f} KB)",
        f"one item {before.max_units_per_item_s:,} ({before.largest_item_bytes / 1024:,.1f} KB)",
        f"{figures.max_units_per_item_s / before.max_units_per_item_s:.3f}×",
        f"≤ {limit:,}/s", "met" if figures.max_units_per_item_s <= limit else "missed"))
    report.rows.append(Row(
        f"8c hot key: aggregation WRU/event, {metric_count}m",
        f"{figures.wru_per_event:.3f}", "figure 7: one shard", "", "", ""))
    report.rows.append(Row(
        f"8d month counter after {hours} h of shard rotation: marks / item / WRU per write",
        f"pruned {pruned.marks:,} / {pruned.item_bytes / 1024:,.0f} KB / {pruned.wru_per_write:.0f}",
        f"unpruned {unpruned.marks:,} / {unpruned.item_bytes / 1024:,.0f} KB / {unpruned.wru_per_write:.0f}",
        f"{pruned.item_bytes / unpruned.item_bytes:.2f}×", f"< {MAX_ITEM_BYTES // 1024} KB, flat",
        "met" if pruned.item_bytes < MAX_ITEM_BYTES else "missed"))
    report.notes.append(
        f"8b: the same stream, each additive counter holding {history:,} closed shards' marks first (8d's month counter, "
        f"pruned, less the {SHARDS} live shards), written as {COUNTER_SUB_ITEMS} sub-items by the shard's id (measured) or as "
        f"one item (baseline, the aggregator before sub-items); per item: {figures.max_writes_per_item_s} vs "
        f"{before.max_writes_per_item_s} writes/s at peak. All of a customer's counter items share its partition key "
        f"(peak {figures.max_units_per_partition_s:,} vs {before.max_units_per_partition_s:,} WRU/s over them): "
        f"past 1,000, DynamoDB's adaptive capacity has to isolate the busy items on partitions of their own "
        f"(the counters table has no local secondary index, which would keep a key's items together), and "
        f"no single item, on any partition, takes more than 1,000."
    )
    report.notes.append(
        f"8d: {SHARDS} shard lineages renewed every {SHARD_LIFETIME_H} h, each shard writing the month counter "
        f"{WRITES_PER_SHARD_LIFE} times, {hours} h, real aggregator on the memory store (marks over all the counter's "
        f"sub-items, the largest item's size); pruned: records carry their "
        f"creation time and marks older than the newest record minus 26 h (24 h retention + 2 h margin) are removed, "
        f"in batches once one is 1 h past; WRU per write over the last quarter, the {pruned.prune_writes} removal "
        f"writes included. Pruned, the item stays flat (about {SHARDS} × (26 + 1 + {SHARD_LIFETIME_H}) / "
        f"{SHARD_LIFETIME_H} marks); unpruned, it grows by {int(SHARDS * 24 / SHARD_LIFETIME_H)} marks a day."
    )
    report.notes.append(
        f"8: in-memory stream of {figures.seconds} s at {RATE_PER_S:,} events/s from one customer over {SHARDS} "
        f"shards, batches of up to {BATCH_SIZE} or a {BATCHING_WINDOW_S:g} s window, one in flight per shard "
        f"({figures.batches:,} batches, mean {figures.mean_batch:.0f} records), applied by the real aggregator "
        f"to {'the COUNT metric' if quick else 'the 5 bench metrics'}; no pre-aggregation: one write per event. "
        f"Peak over whole seconds. Write units: the item's size as stored, with one "
        f"high-water mark (shard id, sequence and creation time, ~90 B) per stream shard that wrote it; unpruned, marks of shards that "
        f"closed stay on the item: with shards renewed about every {SHARD_LIFETIME_H} h (observed, not documented), a month counter "
        f"written from every shard reaches DynamoDB's 400 KB item after {before.days_until_full:.1f} days, "
        f"and DynamoDB refuses the writes that would grow it; after one day ({int(SHARDS * 24 / SHARD_LIFETIME_H)} "
        f"marks) the busiest item, one per counter, would take {before.units_per_item_s_after_a_day:,} WRU/s."
    )
