"""Billable metrics: definition, rename, archive; creating one starts its backfill job."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Callable

from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import BillableMetric, validate_metric_definition
from tally.billing.time import UTC
from tally.services.backfill import BackfillService
from tally.services.ports import MetricStore


class MetricService:
    def __init__(
        self,
        metrics: MetricStore,
        clock: Callable[[], datetime],
        backfills: BackfillService | None = None,
    ) -> None:
        """`backfills` None: metrics are created with no backfill job (tests whose metrics come
        before their events); the deployment's wiring always passes one."""
        self._metrics = metrics
        self._clock = clock
        self._backfills = backfills

    def create(self, draft: BillableMetric) -> BillableMetric:
        if not draft.name or not draft.name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        validate_metric_definition(draft.aggregation_type, draft.aggregation_key, draft.group_keys)
        metric = replace(draft, id=str(uuid.uuid4()), created_at=self._clock(), activated_at=None)
        if self._backfills is not None:
            self._backfills.prepare(metric.id)
        self._metrics.put(metric)  # pending: nothing counts for it yet
        # Activated from a clock read now that the store holds it (tally.billing.backfill, point 1):
        # events ingested from then on are the live aggregator's, the earlier ones its job's.
        metric = self._metrics.activate(metric.id, self._clock())
        if self._backfills is not None:
            self._backfills.launch(metric)  # returns at once: the job runs off the request
        return metric

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
