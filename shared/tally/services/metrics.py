"""Billable metrics: definition, archive, and the one-time backfill of earlier events."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Callable

from tally.billing.counters import StreamedEvent, preaggregate, sequence_key
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import BillableMetric, validate_metric_definition
from tally.billing.quarantine import QuarantinedPair
from tally.billing.time import UTC
from tally.services.aggregate import apply_update
from tally.services.ports import CounterStore, EventStore, MetricStore

# The backfill writes each counter once, as if it were a one-record shard of its own: a rerun of
# the same backfill finds the mark already set and adds nothing.
BACKFILL_SHARD = "backfill"
_BACKFILL_MARK = sequence_key(1)


class MetricService:
    def __init__(
        self,
        metrics: MetricStore,
        events: EventStore,
        counters: CounterStore,
        clock: Callable[[], datetime],
    ) -> None:
        self._metrics = metrics
        self._events = events
        self._counters = counters
        self._clock = clock

    def create(self, draft: BillableMetric) -> BillableMetric:
        if not draft.name or not draft.name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        validate_metric_definition(draft.aggregation_type, draft.aggregation_key, draft.group_keys)
        now = self._clock()
        metric = replace(draft, id=str(uuid.uuid4()), created_at=now, activated_at=now)
        self._metrics.put(metric)
        self.backfill(metric)
        return metric

    def backfill(self, metric: BillableMetric) -> int:
        """Count events ingested before the metric's activation (the live path counts the rest).

        Known limit: this scans the whole events table (34 days) inside the create request. That is
        fine for small deployments and the local stack, but it grows with traffic; it belongs in an
        asynchronous job (Step Functions or a self-invoked Lambda) with a backfill status."""
        assert metric.activated_at is not None
        window = replace(metric, activated_at=datetime.min.replace(tzinfo=UTC), archived_at=metric.activated_at)
        streamed = (
            StreamedEvent(_BACKFILL_MARK, stored.event, stored.ingested_at)
            for stored in self._events.scan_ingested_before(metric.activated_at)
            if not stored.is_duplicate
        )
        refused: list[QuarantinedPair] = []
        updates = preaggregate(streamed, [window], refused).values()
        if refused:
            self._counters.quarantine(refused)
        return sum(apply_update(self._counters, f"{BACKFILL_SHARD}-{metric.id}", update).written for update in updates)

    def get(self, metric_id: str) -> BillableMetric:
        metric = self._metrics.get(metric_id)
        if metric is None:
            raise NotFound(f"billable metric {metric_id} not found")
        return metric

    def list(self, include_archived: bool) -> list[BillableMetric]:
        metrics = sorted(self._metrics.all(), key=lambda m: (m.created_at or datetime.min.replace(tzinfo=UTC), m.id))
        return [m for m in metrics if include_archived or m.archived_at is None]

    def rename(self, metric_id: str, name: str) -> BillableMetric:
        """Metronome lets a metric's name change, nothing else of its definition (what it counts
        would differ from what its counters already hold); the change is conditional on the
        definition read, so a concurrent change of it (custom fields, another rename) is a 409."""
        if not name or not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        metric = self.get(metric_id)
        if metric.archived_at is not None:
            raise InvalidInput("billable_metric_id", "is archived: it cannot be updated")
        if metric.name == name:
            return metric
        after = replace(metric, name=name)
        self._metrics.replace(metric, after)
        return after

    def archive(self, metric_id: str) -> BillableMetric:
        metric = self.get(metric_id)
        if metric.archived_at is not None:
            return metric
        return self._metrics.archive(metric_id, self._clock())
