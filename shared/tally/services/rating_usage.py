"""Usage for rating, read from the counters: the seam between metering and the rating engine."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Sequence

from tally.billing.counters import CounterRead, CounterRow, CounterSums, combine, combine_by_group, read_plan
from tally.billing.customers import Customer
from tally.billing.metrics import BillableMetric
from tally.billing.time import is_hour_aligned
from tally.services.ports import CounterStore, MetricStore
from tally.services.together import together


class CounterUsageSource:
    """Implements the rating engine's UsageSource for one customer.

    Counters are read per metric and counter range (tally.billing.counters.read_plan), for all the
    customer's ingest keys, and a range inside one already read is served from it: the segments
    cut out of a month share one read of its days, and of the cut day's hours. Each segment's
    aggregate is computed once per group values, so pricing many group values of a product costs
    one pass over its rows, not one per value. Additive metrics (COUNT, SUM) are summed by the
    store as it holds the counters (CounterStore.sums), with no row made per counter. The metrics
    are read together, in one request. The cost grows with counters and groups, never with events.
    """

    def __init__(self, customer: Customer, metrics: MetricStore, counters: CounterStore) -> None:
        self._customer = customer
        self._metrics = metrics
        self._counters = counters
        self._metric_cache: dict[str, BillableMetric] = {}
        self._all_metrics_read = False
        # (metric id, ingest key, counter kind, parts) -> ranges read: (first bucket, last bucket, sums or rows)
        self._read: dict[tuple[str, str, str, bool], list[tuple[str, str, list[CounterSums] | list[CounterRow]]]] = {}
        self._row_cache: dict[tuple[str, datetime, datetime], list[CounterRow]] = {}
        self._index: dict[tuple, dict[tuple[str | None, ...], Decimal | None]] = {}
        self._positions: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, ...], bool]] = {}
        self.reads = 0  # segments that needed the store (one served from rows already read needs none)

    def read_metrics(self) -> None:
        """Read the billable metrics now (rating reads them all at its first metric): one request,
        which a caller can send together with its other reads."""
        if not self._all_metrics_read:
            # A contract prices many products, each on its metric: one read of them all costs
            # one request, where a read per metric costs one request each.
            self._metric_cache.update((m.id, m) for m in self._metrics.all())
            self._all_metrics_read = True

    def _metric(self, metric_id: str) -> BillableMetric:
        if metric_id not in self._metric_cache:
            self.read_metrics()
            if metric_id not in self._metric_cache:
                metric = self._metrics.get(metric_id)
                if metric is None:
                    raise LookupError(f"billable metric {metric_id} not found")
                self._metric_cache[metric_id] = metric
        return self._metric_cache[metric_id]

    def _counters_of(self, metric: BillableMetric, key: str, read: CounterRead) -> tuple[list, bool]:
        """(the counters of ingest key `key` that `read` covers, and whether the store was asked):
        for an additive metric, the store's sums of them, else their rows as read. A range inside
        one read before is served from it; bucket names sort as time within a kind."""
        ranges = self._read.setdefault((metric.id, key, read.first[0], read.parts), [])
        for low, high, counters in ranges:
            if low <= read.first and read.last <= high:
                return counters, False
        store = self._counters
        if metric.aggregation_type.is_additive:
            counters = [store.sums(metric.id, key, read.first, read.last, read.parts)]
        else:
            counters = store.read(metric.id, key, read.first, read.last, read.parts)
        ranges.append((read.first, read.last, counters))
        return counters, True

    def prefetch(self, spans: Sequence[tuple[str, datetime, datetime]]) -> None:
        """Read the counters of these (metric, start, end) spans now, every range at once
        (services/together.py), so that rating them waits for one round of reads rather than one
        read after another. A range inside another planned or read range is not read again; what
        rating asks later and was not planned is read then, as without this."""
        candidates: dict[tuple[str, str, str, bool], dict[tuple[str, str], tuple[BillableMetric, CounterRead]]] = {}
        for metric_id, start, end in spans:
            if not (is_hour_aligned(start) and is_hour_aligned(end)):
                continue  # rating refuses such a span itself
            metric = self._metric(metric_id)
            for window in self._customer.key_windows:
                clipped = window.clip(start, end)
                if clipped is None:
                    continue
                for read in read_plan(*clipped, metric.aggregation_type.is_additive):
                    slot = (metric.id, window.key, read.first[0], read.parts)
                    candidates.setdefault(slot, {}).setdefault((read.first, read.last), (metric, read))
        wanted: list[tuple[BillableMetric, str, CounterRead]] = []
        for slot, reads in candidates.items():
            # A range's containers sort before it (first up, then last down): read only the outermost.
            kept = [(low, high) for low, high, _ in self._read.get(slot, ())]
            for first, last in sorted(reads, key=lambda r: (r[0], tuple(-ord(c) for c in r[1]))):
                if not any(low <= first and last <= high for low, high in kept):
                    kept.append((first, last))
                    metric, read = reads[(first, last)]
                    wanted.append((metric, slot[1], read))
        store = self._counters

        def reader(metric: BillableMetric, key: str, read: CounterRead):
            if metric.aggregation_type.is_additive:
                return lambda: [store.sums(metric.id, key, read.first, read.last, read.parts)]
            return lambda: store.read(metric.id, key, read.first, read.last, read.parts)

        answers = together([reader(*w) for w in wanted])
        for (metric, key, read), counters in zip(wanted, answers):
            self._read.setdefault((metric.id, key, read.first[0], read.parts), []).append((read.first, read.last, counters))

    def _plan(self, metric: BillableMetric, start: datetime, end: datetime) -> list[tuple[CounterRead, list]]:
        """Each read of [start, end)'s plan, per ingest key of the customer, with the counters it
        covers (see `_counters_of`). A key the customer owned or took over for part of the time is
        read for that part alone (Customer.key_windows: the edges are hours, so reads stay exact)."""
        if not (is_hour_aligned(start) and is_hour_aligned(end)):
            raise ValueError("rating reads usage over hour-aligned segments only")
        planned, missed = [], False
        for window in self._customer.key_windows:
            clipped = window.clip(start, end)
            if clipped is None:
                continue
            for read in read_plan(*clipped, metric.aggregation_type.is_additive):
                counters, asked = self._counters_of(metric, window.key, read)
                planned.append((read, counters))
                missed |= asked
        self.reads += missed
        return planned

    def _rows(self, metric: BillableMetric, start: datetime, end: datetime) -> list[CounterRow]:
        """The rows of [start, end) of a metric that is not additive (MAX, UNIQUE, LATEST)."""
        key = (metric.id, start, end)
        if key not in self._row_cache:
            self._row_cache[key] = [row for read, counters in self._plan(metric, start, end) for row in read.totals(counters)]
        return self._row_cache[key]

    def _where(self, metric: BillableMetric, keys: tuple[str, ...]) -> tuple[tuple[int, ...], bool]:
        """Positions of group keys in a row's group, and whether they are all of it, in order."""
        found = self._positions.get((metric.id, keys))
        if found is None:
            dimensions = metric.dimensions
            positions = tuple(_position(metric, key) for key in keys)
            found = self._positions[(metric.id, keys)] = (positions, positions == tuple(range(len(dimensions))))
        return found

    def _by_group(
        self, metric: BillableMetric, start: datetime, end: datetime, keys: tuple[str, ...]
    ) -> dict[tuple[str | None, ...], Decimal | None]:
        """The metric's aggregate over [start, end) per combination of values of `keys` (None: no
        data, MAX and LATEST only), each combined once however many lines ask for it."""
        index_key = (metric.id, start, end, keys)
        index = self._index.get(index_key)
        if index is None:
            positions, whole = self._where(metric, keys)
            group_of = None if whole else (lambda group: tuple([group[p] for p in positions]))
            if metric.aggregation_type.is_additive:  # summed by the store: no row per counter and segment
                index = {}
                for read, sums in self._plan(metric, start, end):
                    for counters in sums:
                        counters.add_totals(read, group_of, index)
            else:
                rows = self._rows(metric, start, end)
                index = combine_by_group(
                    metric.aggregation_type, rows, (lambda row: row.group) if group_of is None else (lambda row: group_of(row.group))
                )
            self._index[index_key] = index
        return index

    def quantity(self, metric_id: str, group_values: dict[str, str | None] | None, start: datetime, end: datetime) -> Decimal:
        metric = self._metric(metric_id)
        if group_values or metric.aggregation_type.is_additive:  # additive: summed by the store, as per group
            keys = tuple(group_values or ())
            value = self._by_group(metric, start, end, keys).get(tuple(group_values.values()) if group_values else ())
        else:
            value = combine(metric.aggregation_type, self._rows(metric, start, end))
        return Decimal(0) if value is None else value

    def quantities(
        self, metric_id: str, group_keys: Sequence[str], start: datetime, end: datetime
    ) -> dict[tuple[str | None, ...], Decimal | None]:
        """Every combination's `quantity` at once (None: no data), keyed by its values in key order."""
        return self._by_group(self._metric(metric_id), start, end, tuple(group_keys))

    def group_values(self, metric_id: str, group_keys: Sequence[str], start: datetime, end: datetime) -> list[dict[str, str | None]]:
        metric = self._metric(metric_id)
        seen = self._by_group(metric, start, end, tuple(group_keys))
        return [dict(zip(group_keys, values)) for values in seen]  # in no order: the engine sorts


def _position(metric: BillableMetric, key: str) -> int:
    try:
        return metric.dimensions.index(key)
    except ValueError as exc:
        raise ValueError(f"{key!r} is not a group key of billable metric {metric.id}") from exc
