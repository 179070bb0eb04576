"""Quarantine: list the (record, metric) pairs the aggregator could not count, and re-apply them once
their cause is fixed (tally.billing.quarantine says how pairs get there).

Re-applying a pair counts it exactly once:
- additive counters (COUNT, SUM) take the pair's contribution in the same transaction that moves
  the pair from pending to applied (CounterStore.reapply), so a second re-apply, concurrent or
  later, adds nothing;
- idempotent counters (MAX, UNIQUE, LATEST) take it first and the pair is marked applied after:
  a crash in between leaves it pending, and doing it again changes nothing.
The stream never counts the pair itself: its record is behind the counters' high-water marks, or
refused again by the same rule, and quarantining never reopens an applied pair. So re-apply a pair
once its batch is done (the stream resends a record only while its batch is retried, within
minutes); the counters then hold it once.

A pair is re-applied under the rules in force now: one whose rule still refuses it stays pending,
with the reason it is still refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from tally.billing.counters import StreamedEvent, preaggregate
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.quarantine import PENDING, QuarantinedPair
from tally.services.ports import OUT_OF_RANGE, REAPPLIED, CounterStore, MetricStore, StoreRefused

STATES = ("pending", "applied")


@dataclass(frozen=True, slots=True)
class Reapplied:
    pair: QuarantinedPair
    outcome: str  # "reapplied", "already applied", "still refused"
    reason: str | None = None  # why it is still refused


class QuarantineService:
    def __init__(self, counters: CounterStore, metrics: MetricStore) -> None:
        self._counters = counters
        self._metrics = metrics

    def list(self, metric_id: str | None = None, state: str | None = None) -> list[QuarantinedPair]:
        """Quarantined pairs of one metric (or of every metric), oldest record first."""
        if state is not None and state not in STATES:
            raise InvalidInput("state", f"must be one of {', '.join(STATES)}")
        metric_ids = [self._metric(metric_id).id] if metric_id else sorted(m.id for m in self._metrics.all())
        pairs = [pair for m in metric_ids for pair in self._counters.quarantined(m)]
        if state is not None:
            pairs = [pair for pair in pairs if pair.state == state]
        return sorted(pairs, key=lambda pair: (pair.metric_id, pair.sequence, pair.transaction_id))

    def reapply(self, metric_id: str, transaction_ids: list[str] | None = None) -> list[Reapplied]:
        """Re-apply the metric's pending pairs (or only those of `transaction_ids`)."""
        metric = self._metric(metric_id)
        held = {pair.transaction_id: pair for pair in self._counters.quarantined(metric.id)}
        if transaction_ids is not None:
            missing = [t for t in transaction_ids if t not in held]
            if missing:
                raise NotFound(f"no quarantined pair of metric {metric.id} with transaction_id {missing[0]}")
            chosen = [held[t] for t in transaction_ids]
        else:
            chosen = [pair for pair in held.values() if pair.state == PENDING]
        return [self._reapply(metric, pair) for pair in chosen]

    def _metric(self, metric_id: str) -> BillableMetric:
        metric = self._metrics.get(metric_id)
        if metric is None:
            raise NotFound(f"billable metric {metric_id} not found")
        return metric

    def _reapply(self, metric: BillableMetric, pair: QuarantinedPair) -> Reapplied:
        if pair.state != PENDING:
            return Reapplied(pair, "already applied")
        if metric.activated_at is None:
            return Reapplied(pair, "still refused", "the metric is not active")
        refused: list[QuarantinedPair] = []
        # The pair was counted by this metric when it arrived, so it is fed in as ingested while the
        # metric was active; only the counters it missed (its buckets) take it.
        streamed = StreamedEvent(pair.sequence or "0", pair.event, metric.activated_at)
        updates = preaggregate([streamed], [metric], refused)
        if refused:
            return Reapplied(pair, "still refused", refused[0].reason)
        missed = {key: update for key, update in updates.items() if key.bucket in pair.buckets}
        if metric.aggregation_type.is_additive:
            additions = {key: update.delta_after(None)[0] for key, update in missed.items()}
            outcome = self._counters.reapply(pair, additions)
            if outcome == REAPPLIED:
                return Reapplied(pair, "reapplied")
            if outcome == OUT_OF_RANGE:
                return Reapplied(pair, "still refused", "a counter's total would leave +-1E19, the range it holds exactly")
            return Reapplied(pair, "already applied")
        try:
            for key, update in missed.items():
                if metric.aggregation_type is Aggregation.MAX:
                    self._counters.raise_max(key, update.maximum)  # type: ignore[arg-type]
                elif metric.aggregation_type is Aggregation.UNIQUE:
                    self._counters.add_uniques(key, update.uniques)
                else:
                    order, value = update.latest  # type: ignore[misc]
                    self._counters.raise_latest(key, order, value)
        except StoreRefused as exc:
            return Reapplied(pair, "still refused", f"the counter refused it: {exc.rule}")
        return Reapplied(pair, "reapplied" if self._counters.mark_applied(pair) else "already applied")
