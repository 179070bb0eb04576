"""A stream simulator with Lambda's delivery semantics and injected faults, for the counters."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tally.billing.counters import PART_NAMES, CounterKey, StreamedEvent, counter_sub_item, latest_order, sequence_key
from tally.billing.events import UsageEvent
from tally.billing.metrics import Aggregation, BillableMetric, PropertyFilter
from tally.billing.time import day_bucket, hour_bucket
from tally.services.aggregate import AggregateService
from tally.services.ports import StoreUnavailable

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)
ACTIVE = T0 - timedelta(days=1)


def metric(metric_id: str, aggregation: Aggregation, key: str | None, group_keys=()) -> BillableMetric:
    return BillableMetric(
        id=metric_id,
        name=metric_id,
        aggregation_type=aggregation,
        aggregation_key=key,
        event_type_filter=None,
        property_filters=(PropertyFilter("n", exists=True),) if key else (),
        group_keys=tuple(tuple(k) for k in group_keys),
        activated_at=ACTIVE,
    )


METRICS = [
    metric("count-by-region", Aggregation.COUNT, None, [["region"]]),
    metric("sum-n", Aggregation.SUM, "n"),
    metric("max-n", Aggregation.MAX, "n"),
    metric("unique-n", Aggregation.UNIQUE, "n"),
    metric("latest-n", Aggregation.LATEST, "n", [["region"]]),
]


def make_event(i: int, customer: str, region: str, n: int, minute: int) -> UsageEvent:
    return UsageEvent(f"t{i}", customer, "call", T0 + timedelta(minutes=minute), {"n": n, "region": region})


def ground_truth(events: list[UsageEvent]) -> dict[CounterKey, object]:
    """Recomputed from the raw events, without the aggregator's code path. COUNT and SUM counters
    are (total, {row label of each part: its total}): a day counter with its hours, a month counter
    with its days."""
    truth: dict[CounterKey, object] = {}
    for event in events:
        for m in METRICS:
            if m.group_keys and is_poison(event):
                continue  # quarantined, never counted (poison_pairs)
            group = (event.properties["region"],) if m.group_keys else ()
            n = Decimal(event.properties["n"])
            if m.aggregation_type.is_additive:
                value = Decimal(1) if m.aggregation_type is Aggregation.COUNT else n
                hour, day = hour_bucket(event.timestamp), day_bucket(event.timestamp)
                for bucket, label in (("D" + day[1:], hour), ("M" + day[1:7], day)):
                    key = CounterKey(m.id, event.customer_id, bucket, group)
                    total, parts = truth.get(key, (Decimal(0), {}))
                    truth[key] = (total + value, parts | {label: parts.get(label, Decimal(0)) + value})
                continue
            for bucket in (hour_bucket(event.timestamp), day_bucket(event.timestamp)):
                key = CounterKey(m.id, event.customer_id, bucket, group)
                if m.aggregation_type is Aggregation.MAX:
                    truth[key] = max(truth.get(key, n), n)
                elif m.aggregation_type is Aggregation.UNIQUE:
                    truth[key] = truth.get(key, frozenset()) | {str(n)}
                else:
                    candidate = (latest_order(event), n)
                    truth[key] = max(truth.get(key, candidate), candidate)
    return truth


POISON_REGION = "x" * 2_000  # group values longer than a counter key holds


def is_poison(event: UsageEvent) -> bool:
    return event.properties["region"] == POISON_REGION


def poison_pairs(events: list[UsageEvent]) -> set[tuple[str, str]]:
    """(metric id, transaction id) of every pair the aggregator must quarantine."""
    return {(m.id, e.transaction_id) for e in events if is_poison(e) for m in METRICS if m.group_keys}


def stored_value(store, key: CounterKey, aggregation: Aggregation):
    rows = [r for r in store.read(key.metric_id, key.ingest_key, key.bucket, key.bucket) if r.group == key.group]
    if not rows:
        return None
    (row,) = rows
    if aggregation is Aggregation.UNIQUE:
        return row.uniques
    if aggregation is Aggregation.LATEST:
        return row.latest
    if aggregation.is_additive:
        parts = [r for r in store.read(key.metric_id, key.ingest_key, key.bucket, key.bucket, True) if r.group == key.group]
        return row.total, dict(parts[0].labelled_parts()) if parts else {}
    return row.total


class Crash(Exception):
    """The Lambda process died mid-batch: nothing is reported, the whole batch is retried."""


@dataclass
class FaultPlan:
    """Decisions drawn by hypothesis, consumed as the simulation runs."""

    draw: object  # hypothesis `data.draw`
    budget: int = 12
    log: list = field(default_factory=list)


def run_stream(service: AggregateService, store, shards: dict[str, list[StreamedEvent]], plan: FaultPlan, st) -> None:
    """Deliver every shard's records with retries, bisect, partial failures, crashes and replays,
    interleaving shards, until each shard's checkpoint passes its last record."""
    position = {shard: 0 for shard in shards}
    pending_halves: dict[str, list[tuple[int, int]]] = {shard: [] for shard in shards}
    steps = 0
    while any(position[s] < len(shards[s]) for s in shards):
        steps += 1
        assert steps < 5000, "simulation did not converge"
        live = [s for s in shards if position[s] < len(shards[s])]
        shard = plan.draw(st.sampled_from(live))
        records = shards[shard]
        if pending_halves[shard]:
            start, end = pending_halves[shard].pop(0)
        else:
            size = plan.draw(st.integers(1, 12))
            start, end = position[shard], min(position[shard] + size, len(records))
        fault = "none"
        if plan.budget > 0:
            fault = plan.draw(st.sampled_from(["none", "none", "crash", "throttle", "replay"]))
        if fault == "replay" and start > 0:
            # at-least-once: an already-checkpointed range comes again, overlapping arbitrarily
            replay_start = plan.draw(st.integers(0, start - 1))
            plan.budget -= 1
            plan.log.append(("replay", shard, replay_start, end))
            outcome = service.apply_batch(shard, records[replay_start:end])
            store.fail = None
            _advance(position, shard, records, replay_start, end, outcome)
            continue
        batch = records[start:end]
        if fault == "crash":
            plan.budget -= 1
            limit = plan.draw(st.integers(0, 6))
            writes = {"n": 0}

            def crash_after(key, writes=writes, limit=limit):
                if writes["n"] >= limit:
                    raise Crash()
                writes["n"] += 1

            store.fail = crash_after
        elif fault == "throttle":
            plan.budget -= 1
            victim_metric = plan.draw(st.sampled_from([m.id for m in METRICS]))

            def throttle(key, victim=victim_metric):
                if key.metric_id == victim:
                    raise StoreUnavailable("throttled")

            store.fail = throttle
        try:
            outcome = service.apply_batch(shard, batch)
        except Crash:
            store.fail = None
            plan.log.append(("crash", shard, start, end))
            if end - start > 1:  # BisectBatchOnFunctionError: retry each half, in order
                middle = (start + end) // 2
                pending_halves[shard][:0] = [(start, middle), (middle, end)]
            else:  # a single record is retried as it is; nothing after it is delivered first
                pending_halves[shard][:0] = [(start, end)]
            continue
        store.fail = None
        plan.log.append((fault, shard, start, end, outcome.first_failed_sequence))
        _advance(position, shard, records, start, end, outcome)
        if outcome.first_failed_sequence is not None:
            pending_halves[shard].clear()  # the checkpoint moved back; resume from it


def _advance(position, shard, records, start, end, outcome) -> None:
    if outcome.first_failed_sequence is None:
        position[shard] = max(position[shard], end)
        return
    # ReportBatchItemFailures: the stream resumes at the first failed record (maybe further back)
    position[shard] = next(i for i, r in enumerate(records) if r.sequence == outcome.first_failed_sequence)


def to_shards(events: list[UsageEvent], shard_of: list[int], ingested_at: datetime) -> dict[str, list[StreamedEvent]]:
    shards: dict[str, list[StreamedEvent]] = {}
    for offset, (event, shard_index) in enumerate(zip(events, shard_of)):
        # sequence numbers increase across the stream; each shard sees its own subsequence in order
        shards.setdefault(f"shard-{shard_index}", []).append(
            StreamedEvent(sequence_key(10**20 + offset * 7), event, ingested_at)
        )
    return shards


def check_sub_items(store) -> set[CounterKey]:
    """The counters a memory store holds (sub 0), checking how it holds them: an additive counter
    only in sub-items (never its unsuffixed item, which only an earlier version wrote), each
    holding the marks of the shards that map to it and no other; the others unsuffixed."""
    for key, counter in store.counters.items():
        additive = key.bucket[0] in PART_NAMES
        assert additive == (key.sub != 0), key
        for shard in counter.marks:
            assert counter_sub_item(shard) == key.sub, (key, shard)
    return {replace(key, sub=0) for key in store.counters}


def dynamo_counters_held(client, table: str) -> list[str]:
    """The (pk, sk) of each counter the table holds, a counter's sub-items counted once, checking
    that an additive counter is only in sub-items (`~<n>`) and the others are not."""
    held = set()
    for page in client.get_paginator("scan").paginate(TableName=table, ProjectionExpression="pk, sk"):
        for item in page["Items"]:
            sk = item["sk"]["S"]
            base, tilde, sub = sk.rpartition("~")
            assert (sk[0] in PART_NAMES) == (tilde == "~" and sub.isdigit()), sk
            held.add((item["pk"]["S"], base if tilde else sk))
    return sorted(held)
