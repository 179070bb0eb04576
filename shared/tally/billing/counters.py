"""Usage counters: the aggregates rating and /v1/usage read, never raw events.

A counter is keyed by (metric, ingest key, bucket, group values). The ingest key is the customer id
or alias exactly as sent, so an alias that appears later makes old usage visible for free.
Each contribution lands in two buckets, its UTC hour and its UTC day, so a period can be split at
any hour while a month still reads about 30 day buckets plus the hours at its edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal
from typing import Iterable

from tally.billing.events import UsageEvent
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.time import day_bucket, format_sortable, hour_bucket

# DynamoDB numbers keep 38 significant digits; sums are done at that precision, not Python's 28.
COUNTER_CONTEXT = Context(prec=38)
SEQUENCE_WIDTH = 40  # DynamoDB stream sequence numbers have up to 40 digits


def sequence_key(sequence_number: str | int) -> str:
    """Stream sequence numbers compare as numbers; padded, they compare as strings too."""
    text = str(sequence_number)
    if not text.isdigit() or len(text) > SEQUENCE_WIDTH:
        raise ValueError(f"not a stream sequence number: {text!r}")
    return text.zfill(SEQUENCE_WIDTH)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = COUNTER_CONTEXT.add(total, value)
    return total


@dataclass(frozen=True, slots=True)
class CounterKey:
    metric_id: str
    ingest_key: str
    bucket: str  # 'h' + YYYYMMDDHH or 'd' + YYYYMMDD, UTC
    group: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class StreamedEvent:
    """An event as the aggregator sees it on the stream."""

    sequence: str  # padded with sequence_key
    event: UsageEvent
    ingested_at: datetime


def latest_order(event: UsageEvent) -> str:
    """Total order for LATEST: event time, then transaction id to break ties deterministically."""
    return format_sortable(event.timestamp) + "|" + event.transaction_id


@dataclass(slots=True)
class CounterUpdate:
    """Everything one batch adds to one counter: one write per counter per batch."""

    key: CounterKey
    aggregation: Aggregation
    additions: list[tuple[str, Decimal]] = field(default_factory=list)  # (sequence, value): COUNT, SUM
    maximum: Decimal | None = None
    uniques: set[str] = field(default_factory=set)
    latest: tuple[str, Decimal] | None = None  # (latest_order, value)
    sequences: list[str] = field(default_factory=list)

    @property
    def min_sequence(self) -> str:
        return min(self.sequences)

    @property
    def max_sequence(self) -> str:
        return max(self.sequences)

    def delta_after(self, high_water_mark: str | None) -> tuple[Decimal, int]:
        """The additive delta of the contributions newer than a high-water mark, and how many."""
        fresh = [value for seq, value in self.additions if high_water_mark is None or seq > high_water_mark]
        return exact_sum(fresh), len(fresh)

    def add(self, sequence: str, event: UsageEvent, value: Decimal | str) -> None:
        self.sequences.append(sequence)
        if self.aggregation.is_additive:
            self.additions.append((sequence, value))  # type: ignore[arg-type]
        elif self.aggregation is Aggregation.MAX:
            self.maximum = value if self.maximum is None or value > self.maximum else self.maximum  # type: ignore[operator]
        elif self.aggregation is Aggregation.UNIQUE:
            self.uniques.add(value)  # type: ignore[arg-type]
        else:
            order = latest_order(event)
            if self.latest is None or order > self.latest[0]:
                self.latest = (order, value)  # type: ignore[assignment]


def preaggregate(
    streamed: Iterable[StreamedEvent], metrics: Iterable[BillableMetric]
) -> dict[CounterKey, CounterUpdate]:
    """Fold a batch of events into one update per counter. Pure; order of the result is stable."""
    live = list(metrics)
    updates: dict[CounterKey, CounterUpdate] = {}
    for item in streamed:
        event = item.event
        buckets = (hour_bucket(event.timestamp), day_bucket(event.timestamp))
        for metric in live:
            if not metric.counts_ingested_at(item.ingested_at):
                continue
            contribution = metric.contribution(event)
            if contribution is None:
                continue
            for bucket in buckets:
                key = CounterKey(metric.id, event.customer_id, bucket, contribution.group)
                update = updates.get(key)
                if update is None:
                    update = updates[key] = CounterUpdate(key, metric.aggregation_type)
                update.add(item.sequence, event, contribution.value)
    return updates


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A stored counter as read back."""

    bucket: str
    group: tuple[str | None, ...]
    total: Decimal | None = None  # COUNT, SUM, MAX
    uniques: frozenset[str] = frozenset()
    latest: tuple[str, Decimal] | None = None


def combine(aggregation: Aggregation, rows: Iterable[CounterRow]) -> Decimal | None:
    """Aggregate counters across buckets and groups (never mix grains over the same time). None means no data (MAX and LATEST only)."""
    rows = list(rows)
    if aggregation.is_additive:
        return exact_sum(row.total or Decimal(0) for row in rows)
    if aggregation is Aggregation.MAX:
        values = [row.total for row in rows if row.total is not None]
        return max(values) if values else None
    if aggregation is Aggregation.UNIQUE:
        seen: set[str] = set()
        for row in rows:
            seen |= row.uniques
        return Decimal(len(seen))
    latest = [row.latest for row in rows if row.latest is not None]
    return max(latest)[1] if latest else None
