"""Aggregate: fold a stream batch into counters so that no event is ever counted twice, and no
record or metric can stop the others.

Exactly-once rests on three facts:
1. A batch comes from one shard, in sequence order, one batch at a time per shard
   (parallelization factor 1 on the event source mapping).
2. Each additive counter stores, per shard, the highest sequence number already applied. A write is
   conditional on that mark, so a replayed record (retry, bisect, partial failure) adds nothing.
3. Only a prefix of the batch is ever applied: when something fails, the failure is reported at the
   lowest sequence number whose effect is missing, and the stream resends from there. So whenever a
   counter's mark is s, every record of that counter at or below s is already in it, or quarantined.
MAX, UNIQUE and LATEST are idempotent by nature and need no mark.

Sub-items (hot keys): an additive counter is written as limits.COUNTER_SUB_ITEMS items, and a shard
always writes the same one (tally.billing.counters.counter_sub_item), which alone holds the shard's
mark, so facts 1 to 3 hold per sub-item; reads sum them. Counters written before sub-items keep
their unsuffixed item, read and summed, never written again; a record applied there by the earlier
version may come again (a retry across the deploy), so until records are younger than
`unsuffixed_until` a shard's first write to a sub-item honours its mark on the unsuffixed item
(the floor).

Marks of shards that stopped writing are removed once they guard only records the stream can no
longer deliver (tally.billing.counters.prune_before): each mark carries the creation time of its
newest record, and a counter write removes the marks older than the newest record of its batch
minus the stream's retention and a margin. A later record of such a shard is newer than all it
guarded, so it is applied without the mark, exactly once.

Isolation: a (record, metric) pair that no counter can take is quarantined with its reason
(tally.billing.quarantine) instead of failing the batch; only a store that is unavailable makes
the stream resend. Quarantined pairs are counted (the handler's PairsQuarantined metric, with an
alarm), listed and re-applied by services/quarantine.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from aws_lambda_powertools import Logger

from tally.billing.counters import CounterUpdate, StreamedEvent, preaggregate, prune_before, range_problem, sub_item_key
from tally.billing.limits import COUNTER_RANGE, LEGACY_COUNTER_WRITES_GRACE_S
from tally.billing.metrics import Aggregation
from tally.billing.quarantine import QuarantinedPair
from tally.services.ports import CounterStore, MetricStore, StoreRefused, StoreUnavailable

logger = Logger(child=True)

MAX_MARK_RACES = 5


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    counters_written: int
    first_failed_sequence: str | None  # padded sequence; None when the whole batch is applied
    quarantined: int = 0  # (record, metric) pairs quarantined by this batch


@dataclass(frozen=True, slots=True)
class Applied:
    written: int
    quarantined: int = 0


class AggregateService:
    def __init__(
        self,
        counters: CounterStore,
        metrics: MetricStore,
        clock: Callable[[], datetime] | None = None,
        unsuffixed_until: int | None = None,
    ) -> None:
        """`clock`: to activate a metric met pending (its create stopped between storing and
        activating it, or has not activated it yet); without one, a pending metric counts nothing
        here until its create activates it. `unsuffixed_until` (epoch seconds): records created
        at or before it, or without a creation time, may have been applied by an earlier version
        to unsuffixed counter items (see above; unsuffixed_writes_until); None: none were."""
        self._counters = counters
        self._metrics = metrics
        self._clock = clock
        self._unsuffixed_until = unsuffixed_until

    def apply_batch(self, shard: str, streamed: list[StreamedEvent]) -> BatchOutcome:
        if not streamed:
            return BatchOutcome(0, None)
        metrics = self._metrics.all()
        if self._clock is not None and any(m.activated_at is None for m in metrics):
            # Read pending, so stored: an activation instant read from the clock now is after the
            # metric was readable (tally.billing.backfill, point 1). The first activation wins.
            metrics = [m if m.activated_at is not None else self._metrics.activate(m.id, self._clock()) for m in metrics]
        refused: list[QuarantinedPair] = []
        updates = preaggregate(streamed, metrics, refused)
        times = [item.created_at for item in streamed if item.created_at is not None]
        stale_before = prune_before(max(times) if times else None)
        failed: list[str] = []
        written = quarantined = 0
        if refused:
            try:
                self._counters.quarantine(refused)
                quarantined += len(refused)
                log_quarantined(refused)
            except StoreUnavailable as exc:
                logger.warning("quarantine write failed", extra={"error": str(exc)})
                failed.append(min(pair.sequence for pair in refused))
        for update in updates.values():
            try:
                applied = apply_update(self._counters, shard, update, stale_before, self._unsuffixed_until)
            except StoreUnavailable as exc:
                logger.warning("counter write failed", extra={"counter": str(update.key), "error": str(exc)})
                failed.append(update.min_sequence)
                continue
            written += applied.written
            quarantined += applied.quarantined
        return BatchOutcome(written, min(failed) if failed else None, quarantined)


def log_quarantined(pairs: list[QuarantinedPair]) -> None:
    # One line per metric and reason, not per pair: a poison metric may refuse every record.
    seen: dict[tuple[str, str], int] = {}
    for pair in pairs:
        seen[(pair.metric_id, pair.reason)] = seen.get((pair.metric_id, pair.reason), 0) + 1
    for (metric_id, reason), count in seen.items():
        logger.warning("pairs quarantined", extra={"metric_id": metric_id, "reason": reason, "pairs": count})


def unsuffixed_writes_until(started: datetime) -> int:
    """For a process started at `started`: records created after this were never seen by the
    version that wrote unsuffixed additive counters (limits.LEGACY_COUNTER_WRITES_GRACE_S)."""
    return int(started.timestamp()) + LEGACY_COUNTER_WRITES_GRACE_S


def apply_update(
    counters: CounterStore,
    shard: str,
    update: CounterUpdate,
    stale_before: int | None = None,
    unsuffixed_until: int | None = None,
) -> Applied:
    """Write one counter update exactly once for this shard, or quarantine what the counter cannot
    take. StoreUnavailable when the store could not be reached (the stream resends). A write
    removes the other shards' marks created before `stale_before` (None: none). An additive
    update goes to the shard's sub-item; `unsuffixed_until`: see AggregateService."""
    key = update.key
    if not update.aggregation.is_additive:
        try:
            if update.aggregation is Aggregation.MAX:
                counters.raise_max(key, update.maximum)  # type: ignore[arg-type]
            elif update.aggregation is Aggregation.UNIQUE:
                counters.add_uniques(key, update.uniques)
            else:
                order, value = update.latest  # type: ignore[misc]
                counters.raise_latest(key, order, value)
            return Applied(1)
        except StoreRefused as exc:  # idempotent counters: a replay would be refused the same way
            pairs = update.pairs_after(None, f"the counter refused it: {exc.rule}")
            counters.quarantine(pairs)
            log_quarantined(pairs)
            return Applied(0, len(pairs))
    key = sub_item_key(key, shard)
    # May a record of this batch be under the shard's mark on the unsuffixed item? Then a missing
    # mark on the sub-item proves nothing, and the first write reads that mark (the floor).
    floor = unsuffixed_until is not None and (
        update.untimed or update.oldest_created is None or update.oldest_created <= unsuffixed_until
    )
    parts, _ = update.delta_after(None)
    refusal = None
    if any(abs(delta) > COUNTER_RANGE for delta in parts.values()):
        refusal = "the batch's sum would leave +-1E19, the range a SUM counter holds exactly"
    else:
        try:
            if counters.add(
                key, shard, parts, update.new_mark, below=update.min_sequence, prune_before=stale_before, mark_required=floor
            ):
                return Applied(1)
        except StoreRefused as exc:
            refusal = f"the counter refused it: {exc.rule}"
    # A replay (some records are in already), a first write that must honour a floor, a sum
    # leaving the exact range, or a refusal: decide on the counter as it is now, adding or
    # quarantining only what is newer than the mark (or the floor).
    for _ in range(MAX_MARK_RACES):
        state = counters.additive_state(key, shard, floor=floor)
        parts, fresh = update.delta_after(state.applied_up_to)
        if fresh == 0:
            return Applied(0)
        problem = refusal or range_problem(state.total, state.parts, parts)
        if problem is not None:
            pairs = update.pairs_after(state.applied_up_to, problem)
            if counters.refuse(key, shard, update.new_mark, state.mark, pairs):
                log_quarantined(pairs)
                return Applied(0, len(pairs))
            continue
        try:
            if counters.add(key, shard, parts, update.new_mark, expected=state.mark, prune_before=stale_before):
                return Applied(1)
        except StoreRefused as exc:
            refusal = f"the counter refused it: {exc.rule}"
    raise StoreUnavailable(f"the high-water mark of {key} kept moving; is the shard processed twice at once?")
