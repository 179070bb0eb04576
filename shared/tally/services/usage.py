"""Reading usage back: windows of aggregated counters, per customer and metric, optionally grouped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Iterable

from tally.billing.counters import CounterRow, combine, read_plan
from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import BillableMetric
from tally.billing.time import DAY, HOUR, bucket_start, is_day_aligned, is_hour_aligned
from tally.billing.limits import MAX_USAGE_GROUP_VALUES, MAX_USAGE_SERIES, MAX_USAGE_VALUES, MAX_WINDOWS
from tally.services.ports import CounterStore, CustomerStore, MetricStore


class WindowSize(str, Enum):
    HOUR = "HOUR"
    DAY = "DAY"
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class MetricQuery:
    metric_id: str
    group_by_key: str | None = None
    group_by_values: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class UsageWindow:
    customer_id: str
    metric: BillableMetric
    starting_on: datetime
    ending_before: datetime
    value: Decimal | None
    groups: dict[str, Decimal | None] | None = None


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """The metrics and windows of a /v1/usage request, before any customer's counters are read."""

    metrics: list[tuple[BillableMetric, MetricQuery]]
    windows: list[tuple[datetime, datetime]]
    start: datetime
    end: datetime
    size: WindowSize

    @property
    def values_per_customer(self) -> int:
        return len(self.metrics) * len(self.windows)

    def customers_per_page(self, most: int) -> int:
        """How many customers a page of everyone's usage holds within MAX_USAGE_VALUES and
        MAX_USAGE_SERIES (at least 1: UsageService.read refuses a single customer over them)."""
        fits = min(MAX_USAGE_VALUES // max(1, self.values_per_customer), MAX_USAGE_SERIES // max(1, len(self.metrics)))
        return max(1, min(most, fits))


def _too_many_series(customers: int, metrics: int) -> InvalidInput:
    return InvalidInput(
        "billable_metrics" if metrics > MAX_USAGE_SERIES else "customer_ids",  # the one at fault
        f"one answer reads at most {MAX_USAGE_SERIES} series (customers × billable metrics), this one "
        f"{customers:,} × {metrics:,}: name fewer customer_ids or billable_metrics",
    )


def _too_many_values(count: int) -> InvalidInput:
    return InvalidInput(
        "window_size",
        f"one answer holds at most {MAX_USAGE_VALUES:,} values (customers × billable metrics × windows, and "
        f"group values), this one {count:,}: use a larger window_size, a shorter range, or fewer customer_ids "
        "or billable_metrics",
    )


@dataclass(frozen=True, slots=True)
class GroupedUsage:
    starting_on: datetime
    ending_before: datetime
    group: dict[str, str | None]
    value: Decimal | None


def split_windows(start: datetime, end: datetime, size: WindowSize) -> list[tuple[datetime, datetime]]:
    if not is_hour_aligned(start):
        raise InvalidInput("starting_on", "must be aligned to an hour (UTC), e.g. 2024-01-01T00:00:00Z")
    if not is_hour_aligned(end):
        raise InvalidInput("ending_before", "must be aligned to an hour (UTC)")
    if end <= start:
        raise InvalidInput("ending_before", "must be after starting_on")
    if size is WindowSize.NONE:
        return [(start, end)]
    step = HOUR if size is WindowSize.HOUR else DAY
    if (end - start) / step > MAX_WINDOWS:
        raise InvalidInput("window_size", f"the range holds more than {MAX_WINDOWS} windows of this size")
    windows, cursor = [], start
    while cursor < end:
        windows.append((cursor, min(cursor + step, end)))
        cursor += step
    return windows


def _in_window(rows: Iterable[CounterRow], start: datetime, end: datetime) -> list[CounterRow]:
    """Rows whose bucket starts inside the window; the read plan guarantees they also end inside."""
    return [row for row in rows if start <= bucket_start(row.bucket) < end]


def _finest(start: datetime, size: WindowSize) -> str | None:
    """The coarsest rows that still fall inside single windows: hours, days, or (no windows) any."""
    if size is WindowSize.HOUR or (size is WindowSize.DAY and not is_day_aligned(start)):
        return "h"
    return "d" if size is WindowSize.DAY else None


def read_rows(
    counters: CounterStore,
    customer: Customer,
    metric: BillableMetric,
    start: datetime,
    end: datetime,
    finest: str | None = None,
) -> list[CounterRow]:
    """Counter rows covering [start, end) (hour-aligned) exactly once, each no coarser than
    `finest` ('h' hours, 'd' days, None: whole months where they fit)."""
    rows: list[CounterRow] = []
    for window in customer.key_windows:  # a key owned for part of the time is read for that part
        clipped = window.clip(start, end)
        if clipped is None:
            continue
        for read in read_plan(*clipped, metric.aggregation_type.is_additive, finest):
            rows += read.rows(counters.read(metric.id, window.key, read.first, read.last, read.parts))
    return rows


class UsageService:
    def __init__(self, customers: CustomerStore, metrics: MetricStore, counters: CounterStore) -> None:
        self._customers = customers
        self._metrics = metrics
        self._counters = counters

    def customer(self, customer_id: str, field: str = "customer_id") -> Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise NotFound(f"{field}: customer {customer_id} not found")
        return customer

    def metric(self, metric_id: str, field: str = "billable_metric_id") -> BillableMetric:
        metric = self._metrics.get(metric_id)
        if metric is None:
            raise NotFound(f"{field}: billable metric {metric_id} not found")
        return metric

    def rows(
        self, customer: Customer, metric: BillableMetric, start: datetime, end: datetime, finest: str | None = None
    ) -> list[CounterRow]:
        return read_rows(self._counters, customer, metric, start, end, finest)

    def usage(
        self,
        customers: list[Customer],
        queries: list[MetricQuery] | None,
        start: datetime,
        end: datetime,
        size: WindowSize,
    ) -> list[UsageWindow]:
        return self.read(customers, self.plan(queries, start, end, size))

    def plan(self, queries: list[MetricQuery] | None, start: datetime, end: datetime, size: WindowSize) -> UsagePlan:
        windows = split_windows(start, end, size)
        if queries is None:
            metrics = [(m, MetricQuery(m.id)) for m in self._metrics.all() if m.archived_at is None]
        else:
            metrics = [(self.metric(q.metric_id, f"billable_metrics[{i}].id"), q) for i, q in enumerate(queries)]
            for index, (metric, query) in enumerate(metrics):
                if query.group_by_key is not None and query.group_by_key not in metric.dimensions:
                    raise InvalidInput(
                        f"billable_metrics[{index}].group_by.key",
                        f"must be one of the metric's group keys {list(metric.dimensions)}",
                    )
        return UsagePlan(metrics, windows, start, end, size)

    def read(self, customers: list[Customer], plan: UsagePlan) -> list[UsageWindow]:
        """Each customer's windows of each planned metric; refused before any read when they could not
        fit one answer, and as soon as group values make them overflow it."""
        if len(customers) * len(plan.metrics) > MAX_USAGE_SERIES:
            raise _too_many_series(len(customers), len(plan.metrics))
        if len(customers) * plan.values_per_customer > MAX_USAGE_VALUES:
            raise _too_many_values(len(customers) * plan.values_per_customer)
        result, values = [], 0
        for customer in customers:
            for metric, query in plan.metrics:
                rows = self.rows(customer, metric, plan.start, plan.end, _finest(plan.start, plan.size))
                for w_start, w_end in plan.windows:
                    in_window = _in_window(rows, w_start, w_end)
                    groups = None
                    if query.group_by_key is not None:
                        groups = self._group_values(metric, query, in_window)
                    values += 1 + len(groups or ())
                    result.append(
                        UsageWindow(customer.id, metric, w_start, w_end, combine(metric.aggregation_type, in_window), groups)
                    )
                if values > MAX_USAGE_VALUES:
                    raise _too_many_values(values)
        return result

    @staticmethod
    def _group_values(metric: BillableMetric, query: MetricQuery, rows: list[CounterRow]) -> dict[str, Decimal | None]:
        position = metric.dimensions.index(query.group_by_key)  # type: ignore[arg-type]
        by_value: dict[str, list[CounterRow]] = {}
        for row in rows:
            value = row.group[position]
            if value is not None:
                by_value.setdefault(value, []).append(row)
        wanted = query.group_by_values if query.group_by_values is not None else sorted(by_value)[:MAX_USAGE_GROUP_VALUES]
        return {
            value: combine(metric.aggregation_type, by_value[value]) if value in by_value else None for value in wanted
        }

    def grouped(
        self,
        customer: Customer,
        metric: BillableMetric,
        group_key: tuple[str, ...],
        group_filters: dict[str, list[str]],
        start: datetime,
        end: datetime,
        size: WindowSize,
    ) -> list[GroupedUsage]:
        windows = split_windows(start, end, size)
        if group_key and group_key not in metric.group_keys and set(group_key) not in [set(k) for k in metric.group_keys]:
            raise InvalidInput("group_key", f"must be one of the metric's group keys {[list(k) for k in metric.group_keys]}")
        for key in group_filters:
            if key not in group_key:
                raise InvalidInput(f"group_filters.{key}", "must be one of the keys in group_key")
        positions = [metric.dimensions.index(key) for key in group_key]
        rows = [
            row
            for row in self.rows(customer, metric, start, end, _finest(start, size))
            if all(
                not group_filters.get(key) or row.group[pos] in group_filters[key]
                for key, pos in zip(group_key, positions)
            )
        ]
        result = []
        for w_start, w_end in windows:
            buckets: dict[tuple[str | None, ...], list[CounterRow]] = {}
            for row in _in_window(rows, w_start, w_end):
                buckets.setdefault(tuple(row.group[p] for p in positions), []).append(row)
            for values in sorted(buckets, key=lambda v: tuple("" if x is None else x for x in v)):
                result.append(
                    GroupedUsage(
                        w_start, w_end, dict(zip(group_key, values)), combine(metric.aggregation_type, buckets[values])
                    )
                )
        return result


