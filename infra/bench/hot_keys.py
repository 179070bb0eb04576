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
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from infra.bench.capacity import item_size, write_units
from infra.settings import ScaleSettings

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
        shards[rng.randrange(SHARDS)].append((at, StreamedEvent(sequence_key(10**20 + n), event, now)))
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


def simulate(seconds: int, metric_count: int = 5, seed: int = 11) -> HotKeyFigures:
    from tally.adapters.dynamo.counters import counter_pk, counter_sk, unique_member
    from tally.adapters.memory import MemoryCounterStore
    from tally.billing.counters import SEQUENCE_WIDTH
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

    sizes = {}
    for key, counter in store.counters.items():
        item = {"pk": {"S": counter_pk(key.metric_id, key.ingest_key)}, "sk": {"S": counter_sk(key.bucket, key.group)}}
        if counter.total is not None:
            item["v"] = {"N": str(counter.total)}
        item |= {part: {"N": str(value)} for part, value in counter.parts.items()}
        if counter.uniques:
            item["u"] = {"SS": [unique_member(v) for v in counter.uniques]}
        if counter.latest is not None:
            item["lo"], item["lv"] = {"S": counter.latest[0]}, {"N": str(counter.latest[1])}
        item |= {"mk_" + shard: {"S": mark} for shard, mark in counter.marks.items()}
        sizes[key] = (item_size(item), len(counter.marks))
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
    mark_bytes = item_size({"mk_" + _shard_id(0): {"S": "0" * SEQUENCE_WIDTH}})
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
    figures = simulate(seconds=2 if quick else 3, metric_count=metric_count)
    limit = PARTITION_WRITE_UNITS_PER_S
    report.figures |= {
        "hot_key_max_writes_per_item_s": figures.max_writes_per_item_s,
        "hot_key_naive_writes_per_item_s": figures.naive_writes_per_item_s,
        "hot_key_max_wru_per_item_s": figures.max_units_per_item_s,
        "hot_key_max_wru_per_partition_s": figures.max_units_per_partition_s,
        "hot_key_largest_counter_item_bytes": figures.largest_item_bytes,
        "hot_key_mean_batch": figures.mean_batch,
        f"hot_key_aggregation_wru_per_event_{metric_count}m": figures.wru_per_event,
        "hot_key_days_until_a_month_counter_holds_400kb": figures.days_until_full,
        "hot_key_wru_per_item_s_after_a_day": figures.units_per_item_s_after_a_day,
    }
    report.rows.append(Row(
        "8  hot key: writes/s per counter item",
        f"{figures.max_writes_per_item_s:,}/s", f"no pre-aggregation {figures.naive_writes_per_item_s:,}/s",
        f"{figures.max_writes_per_item_s / figures.naive_writes_per_item_s:.3f}×", f"≤ {limit:,}/s",
        "met" if figures.max_writes_per_item_s <= limit else "missed"))
    report.rows.append(Row(
        "8b hot key: WRU/s per item / partition",
        f"{figures.max_units_per_item_s:,} / {figures.max_units_per_partition_s:,}",
        f"largest item {figures.largest_item_bytes:,} B, {figures.marks_on_largest_item} marks", "",
        f"≤ {limit:,}/s", "met" if figures.max_units_per_partition_s <= limit else "missed"))
    report.rows.append(Row(
        f"8c hot key: aggregation WRU/event, {metric_count}m",
        f"{figures.wru_per_event:.3f}", "figure 7: one shard", "", "", ""))
    report.notes.append(
        f"8: in-memory stream of {figures.seconds} s at {RATE_PER_S:,} events/s from one customer over {SHARDS} "
        f"shards, batches of up to {BATCH_SIZE} or a {BATCHING_WINDOW_S:g} s window, one in flight per shard "
        f"({figures.batches:,} batches, mean {figures.mean_batch:.0f} records), applied by the real aggregator "
        f"to {'the COUNT metric' if quick else 'the 5 bench metrics'}; no pre-aggregation: one write per event. "
        f"Peak over whole seconds. Write units: the item's size as stored, with one "
        f"high-water mark (shard id and sequence, ~80 B) per stream shard that wrote it; marks of shards that "
        f"closed stay on the item: with shards renewed about every {SHARD_LIFETIME_H} h (observed, not documented), a month counter "
        f"written from every shard reaches DynamoDB's 400 KB item after {figures.days_until_full:.1f} days, "
        f"and DynamoDB refuses the writes that would grow it; after one day ({int(SHARDS * 24 / SHARD_LIFETIME_H)} "
        f"marks) the busiest item would take {figures.units_per_item_s_after_a_day:,} WRU/s."
    )
