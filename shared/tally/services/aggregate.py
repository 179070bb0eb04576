"""Aggregate: fold a stream batch into counters so that no event is ever counted twice.

Exactly-once rests on three facts:
1. A batch comes from one shard, in sequence order, one batch at a time per shard
   (parallelization factor 1 on the event source mapping).
2. Each additive counter stores, per shard, the highest sequence number already applied. A write is
   conditional on that mark, so a replayed record (retry, bisect, partial failure) adds nothing.
3. Only a prefix of the batch is ever applied: when something fails, the failure is reported at the
   lowest sequence number whose effect is missing, and the stream resends from there. So whenever a
   counter's mark is s, every record of that counter at or below s is already in it.
MAX, UNIQUE and LATEST are idempotent by nature and need no mark.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools import Logger

from tally.billing.counters import CounterUpdate, StreamedEvent, preaggregate
from tally.billing.metrics import Aggregation
from tally.services.ports import CounterStore, MetricStore, StoreUnavailable

logger = Logger(child=True)

MAX_MARK_RACES = 5


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    counters_written: int
    first_failed_sequence: str | None  # padded sequence; None when the whole batch is applied


class AggregateService:
    def __init__(self, counters: CounterStore, metrics: MetricStore) -> None:
        self._counters = counters
        self._metrics = metrics

    def apply_batch(self, shard: str, streamed: list[StreamedEvent]) -> BatchOutcome:
        if not streamed:
            return BatchOutcome(0, None)
        updates = preaggregate(streamed, self._metrics.all())
        failed: list[str] = []
        written = 0
        for update in updates.values():
            try:
                written += apply_update(self._counters, shard, update)
            except StoreUnavailable as exc:
                logger.warning("counter write failed", extra={"counter": str(update.key), "error": str(exc)})
                failed.append(update.min_sequence)
        return BatchOutcome(written, min(failed) if failed else None)


def apply_update(counters: CounterStore, shard: str, update: CounterUpdate) -> int:
    """Write one counter update exactly once for this shard; returns the number of writes that took."""
    key = update.key
    if update.aggregation is Aggregation.MAX:
        counters.raise_max(key, update.maximum)  # type: ignore[arg-type]
        return 1
    if update.aggregation is Aggregation.UNIQUE:
        counters.add_uniques(key, update.uniques)
        return 1
    if update.aggregation is Aggregation.LATEST:
        order, value = update.latest  # type: ignore[misc]
        counters.raise_latest(key, order, value)
        return 1
    parts, _ = update.delta_after(None)
    if counters.add(key, shard, parts, update.max_sequence, below=update.min_sequence):
        return 1
    # Some of these records were applied before (a replay). Add only what is newer than the mark.
    for _ in range(MAX_MARK_RACES):
        mark = counters.high_water_mark(key, shard)
        parts, fresh = update.delta_after(mark)
        if fresh == 0:
            return 0
        if counters.add(key, shard, parts, update.max_sequence, expected=mark):
            return 1
    raise StoreUnavailable(f"the high-water mark of {key} kept moving; is the shard processed twice at once?")
