"""Usage for rating, read from the counters: the seam between metering and the rating engine."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Sequence

from tally.billing.counters import CounterRow, combine
from tally.billing.customers import Customer
from tally.billing.metrics import BillableMetric
from tally.billing.time import is_hour_aligned
from tally.services.ports import CounterStore, MetricStore
from tally.services.usage import read_rows


class CounterUsageSource:
    """Implements the rating engine's UsageSource for one customer.

    Rows are fetched once per (metric, segment) and filtered in memory, so pricing many group
    values of a product costs one read of its counters, not one per group value. The cost grows
    with buckets and groups, never with events.
    """

    def __init__(self, customer: Customer, metrics: MetricStore, counters: CounterStore) -> None:
        self._customer = customer
        self._metrics = metrics
        self._counters = counters
        self._metric_cache: dict[str, BillableMetric] = {}
        self._row_cache: dict[tuple[str, datetime, datetime], list[CounterRow]] = {}
        self.reads = 0

    def _metric(self, metric_id: str) -> BillableMetric:
        if metric_id not in self._metric_cache:
            metric = self._metrics.get(metric_id)
            if metric is None:
                raise LookupError(f"billable metric {metric_id} not found")
            self._metric_cache[metric_id] = metric
        return self._metric_cache[metric_id]

    def _rows(self, metric: BillableMetric, start: datetime, end: datetime) -> list[CounterRow]:
        if not (is_hour_aligned(start) and is_hour_aligned(end)):
            raise ValueError("rating reads usage over hour-aligned segments only")
        key = (metric.id, start, end)
        if key not in self._row_cache:
            self.reads += 1
            self._row_cache[key] = read_rows(self._counters, self._customer, metric, start, end) if end > start else []
        return self._row_cache[key]

    def quantity(self, metric_id: str, group_values: dict[str, str | None] | None, start: datetime, end: datetime) -> Decimal:
        metric = self._metric(metric_id)
        rows = self._rows(metric, start, end)
        if group_values:
            positions = {key: _position(metric, key) for key in group_values}
            rows = [row for row in rows if all(row.group[positions[k]] == v for k, v in group_values.items())]
        value = combine(metric.aggregation_type, rows)
        return Decimal(0) if value is None else value

    def group_values(self, metric_id: str, group_keys: Sequence[str], start: datetime, end: datetime) -> list[dict[str, str | None]]:
        metric = self._metric(metric_id)
        positions = [_position(metric, key) for key in group_keys]
        seen = {tuple(row.group[p] for p in positions) for row in self._rows(metric, start, end)}
        ordered = sorted(seen, key=lambda values: tuple("" if v is None else v for v in values))
        return [dict(zip(group_keys, values)) for values in ordered]


def _position(metric: BillableMetric, key: str) -> int:
    try:
        return metric.dimensions.index(key)
    except ValueError as exc:
        raise ValueError(f"{key!r} is not a group key of billable metric {metric.id}") from exc
