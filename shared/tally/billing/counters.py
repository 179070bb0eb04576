"""Usage counters: the aggregates rating and /v1/usage read, never raw events.

A counter is keyed by (metric, ingest key, bucket, group values). The ingest key is the customer id
or alias exactly as sent, so an alias that appears later makes old usage visible for free.

Each contribution lands in two counters, so that a period can be split at any UTC hour while
reading a number of counters that depends on the period's shape, never on the events:
- Additive metrics (COUNT, SUM) keep a day counter `D`+YYYYMMDD holding its total and one part per
  hour (`h00`..`h23`), and a month counter `M`+YYYYMM holding its total and one part per day
  (`d01`..`d31`). A whole month reads one counter per group; a period cut at an hour reads, per
  group, the month counter's days and the cut day's hours. One write per counter per batch still
  updates the total and the parts together.
- MAX, UNIQUE and LATEST keep an hour counter `h`+YYYYMMDDHH and a day counter `d`+YYYYMMDD: their
  values do not split into parts that add (a month of UNIQUE values in one item would also outgrow
  DynamoDB's 400 KB item limit first), so a month reads its days.

Reads return rows labelled by the time they cover, whatever the counter: `h`+YYYYMMDDHH for an
hour, `d`+YYYYMMDD for a day, `m`+YYYYMM for a month. `read_plan` says which counters and parts
cover a span exactly once.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Context, Decimal
from functools import lru_cache, reduce
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence

from tally.billing.events import UsageEvent
from tally.billing.limits import (
    COUNTER_RANGE,
    COUNTER_SUB_ITEMS,
    MARK_PRUNE_EVERY_S,
    MARK_PRUNE_MARGIN_S,
    STREAM_RECORD_RETENTION_S,
)
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.quarantine import QuarantinedPair, group_problem, value_problem
from tally.billing.time import (
    DAY,
    HOUR,
    UTC,
    day_bucket,
    format_sortable,
    hour_bucket,
    midnight_on_or_after,
    midnight_on_or_before,
    month_bucket,
    month_start,
    next_month,
)
from tally.billing.values import hot_value

# DynamoDB numbers keep 38 significant digits; sums are done at that precision, not Python's 28.
COUNTER_CONTEXT = Context(prec=38)
SEQUENCE_WIDTH = 40  # DynamoDB stream sequence numbers have up to 40 digits
_ZERO = Decimal(0)


def sequence_key(sequence_number: str | int) -> str:
    """Stream sequence numbers compare as numbers; padded, they compare as strings too."""
    text = str(sequence_number)
    if not text.isdigit() or len(text) > SEQUENCE_WIDTH:
        raise ValueError(f"not a stream sequence number: {text!r}")
    return text.zfill(SEQUENCE_WIDTH)


_MARK_TIME = "@"  # sorts after every digit


def mark_of(sequence: str, created: int | None) -> str:
    """A shard's high-water mark as a counter stores it: the padded sequence of the newest record
    applied under it, then `@` and that record's approximate creation time (epoch seconds; none
    when unknown). `@` sorts after every digit, so against a padded sequence `s` a mark compares
    as its sequence does: mark < s iff its sequence < s (equal sequences: the mark is longer, so
    greater), which keeps the writes' conditions (`#m < :below`) and `s > mark` exact."""
    return sequence if created is None else f"{sequence}{_MARK_TIME}{created}"


def mark_sequence(mark: str) -> str:
    return mark.partition(_MARK_TIME)[0]


def mark_created(mark: str) -> int | None:
    """The creation time a mark carries; None for a mark written before marks carried one."""
    _, separator, created = mark.partition(_MARK_TIME)
    return int(created) if separator and created.isdigit() else None


def prune_before(newest_created: int | None) -> int | None:
    """Marks whose newest record was created before this (epoch seconds) guard only records the
    stream can no longer deliver: the newest record seen was created at most now, and every record
    of a shard at or below a mark was created no later than the mark's own (sequence numbers grow
    with time on a shard), so all of them are older than the retention plus the margin
    (limits.STREAM_RECORD_RETENTION_S, MARK_PRUNE_MARGIN_S). None: nothing is known, prune nothing."""
    if newest_created is None:
        return None
    return newest_created - STREAM_RECORD_RETENTION_S - MARK_PRUNE_MARGIN_S


def stale_marks(marks: Mapping[str, str], before: int, keep: str | None = None) -> list[str]:
    """The shards (of `marks`, shard -> mark) whose marks may be removed: created before `before`.
    A mark without a time (written before marks carried one) is never stale; `keep` (the shard
    writing) is never removed."""
    stale = []
    for shard, mark in marks.items():  # as mark_created, inline: a counter may hold hundreds
        at = mark.find(_MARK_TIME)
        if at >= 0 and shard != keep:
            created = mark[at + 1 :]
            if created.isdigit() and int(created) < before:
                stale.append(shard)
    return sorted(stale)


# Backfill pages write under shards of their own (tally.billing.backfill.page_shard), with untimed
# marks that guard a job's retries for as long as it may be resumed: never re-stamped, never pruned.
PAGE_SHARD_PREFIX = "backfill-"


def untimed_restamps(marks: Mapping[str, str], before: int, keep: str | None = None) -> dict[str, str]:
    """The untimed marks of other stream shards (of `marks`, shard -> mark) a write pruning
    before `before` (prune_before) re-stamps, shard -> its new mark: the same sequence, with the
    time `before` + the window + the retention, i.e. the batch's newest record's creation time
    plus the retention, so that pruning removes it once that is past the window like any other.

    Safe: a mark was written before now, after every record under it was created; and the batch
    being written holds a record created at that newest time, which the stream delivers no later
    than the retention after its creation (the margin covers the trimming's slack), so now, and
    every record under the mark, is no later than the stamp. The re-stamp is conditional on the
    mark being unchanged, so a shard writing meanwhile keeps its own."""
    stamp = before + MARK_PRUNE_MARGIN_S + 2 * STREAM_RECORD_RETENTION_S
    return {
        shard: mark_of(mark, stamp)
        for shard, mark in sorted(marks.items())
        if shard != keep and _MARK_TIME not in mark and not shard.startswith(PAGE_SHARD_PREFIX)
    }


def marks_to_prune(marks: Mapping[str, str], before: int, keep: str | None = None) -> list[str]:
    """The stale marks (stale_marks) a write removes now: all of them, once the oldest is
    limits.MARK_PRUNE_EVERY_S past `before`; none before that, so removals come in batches."""
    stale = stale_marks(marks, before, keep)
    if stale and min(mark_created(marks[shard]) or before for shard in stale) < before - MARK_PRUNE_EVERY_S:
        return stale
    return []


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    # reduce: the same additions, in order, as a Python loop makes, for half the CPU.
    return reduce(COUNTER_CONTEXT.add, values, _ZERO)


_EXACT_INTEGERS = 10**COUNTER_CONTEXT.prec  # integer sums below this are exact at COUNTER_CONTEXT


def exact_text_sum(texts: Sequence[str]) -> Decimal:
    """exact_sum of numbers written as text (counters as their store holds them), parsing each
    once: as integers when every text is one (counts, and most sums), for about half the CPU of
    making Decimals and adding them; else as Decimals. The result is exact_sum's, with one
    difference out of DynamoDB's range: an integer sum of more than 38 digits is rounded once, at
    the end, where exact_sum rounds each partial sum."""
    try:
        total = sum(map(int, texts))
    except ValueError:  # a fraction or an exponent: int() takes neither
        return exact_sum(map(Decimal, texts))
    return Decimal(total) if -_EXACT_INTEGERS < total < _EXACT_INTEGERS else COUNTER_CONTEXT.create_decimal(total)


@dataclass(frozen=True, slots=True)
class CounterKey:
    metric_id: str
    ingest_key: str
    bucket: str  # the counter's bucket: 'D'/'M' (additive) or 'h'/'d' (others) + UTC time, see above
    group: tuple[str | None, ...]
    # The sub-item of an additive counter a write goes to (1..COUNTER_SUB_ITEMS, counter_sub_item);
    # 0: the counter's unsuffixed item, which MAX, UNIQUE and LATEST use, and which additive
    # counters written before sub-items still hold (read and summed, never written again).
    sub: int = 0


def counter_sub_item(writer: str) -> int:
    """The sub-item (1..COUNTER_SUB_ITEMS) a stream shard (or another writer: a backfill segment,
    a re-applied pair) writes an additive counter to: a stable hash of its id, so a shard always
    writes the same sub-item, the one that holds its high-water mark. Exactly-once rests on it."""
    digest = hashlib.blake2b(writer.encode("utf-8"), digest_size=4).digest()
    return 1 + int.from_bytes(digest, "big") % COUNTER_SUB_ITEMS


def sub_item_key(key: CounterKey, writer: str) -> CounterKey:
    return replace(key, sub=counter_sub_item(writer))


def sum_sub_items(rows: Iterable["CounterRow"]) -> list["CounterRow"]:
    """Rows of an additive counter's items (its unsuffixed item and its sub-items), one per
    (label, group), their totals and parts added up; in first-seen order."""
    merged: dict[tuple, CounterRow] = {}
    for row in rows:
        key = (row.bucket, row.group)
        held = merged.get(key)
        if held is None:
            merged[key] = row
            continue
        total = held.total if row.total is None else row.total if held.total is None else COUNTER_CONTEXT.add(held.total, row.total)
        parts = held.parts or row.parts
        if held.parts and row.parts:
            parts = tuple(
                a if b is None else b if a is None else COUNTER_CONTEXT.add(a, b) for a, b in zip(held.parts, row.parts)
            )
        merged[key] = CounterRow(row.bucket, row.group, total, parts=parts)
    return list(merged.values())


# -- the layout: which counters an event lands in, and how their parts are labelled ---------------
def event_counters(aggregation: Aggregation, instant: datetime) -> tuple[tuple[str, str | None], ...]:
    """(counter bucket, part) pairs an event at `instant` adds to; the part is None for counters
    without parts (MAX, UNIQUE, LATEST)."""
    utc = instant.astimezone(UTC)
    if aggregation.is_additive:
        return (("D" + utc.strftime("%Y%m%d"), "h" + utc.strftime("%H")), ("M" + utc.strftime("%Y%m"), "d" + utc.strftime("%d")))
    return ((hour_bucket(utc), None), (day_bucket(utc), None))


@lru_cache(maxsize=4096)  # rows are read by the thousand over a few buckets
def row_label(bucket: str, part: str | None = None) -> str:
    """What a counter (part None: its total) or one of its parts covers, as a row label:
    'D20261115'+'h07' -> 'h2026111507', 'M202611'+'d03' -> 'd20261103', 'M202611' -> 'm202611',
    'D20261115' -> 'd20261115'; 'h…' and 'd…' counters are their own label."""
    if part is not None:
        return part[0] + bucket[1:] + part[1:]
    if bucket[0] == "M":
        return "m" + bucket[1:]
    if bucket[0] == "D":
        return "d" + bucket[1:]
    return bucket


# The parts a counter of each kind may hold, in time order: hours of a day, days of a month.
PART_NAMES = {"D": tuple(f"h{hour:02d}" for hour in range(24)), "M": tuple(f"d{day:02d}" for day in range(1, 32))}


@lru_cache(maxsize=1024)
def part_labels(bucket: str) -> tuple[str, ...]:
    """The row label of each part a counter of `bucket` may hold, in PART_NAMES order (time order):
    row_label's rule, taken once per bucket rather than once per part (counters with parts are
    read by the thousand, and few buckets are read at a time)."""
    time = bucket[1:]
    return tuple(part[0] + time + part[1:] for part in PART_NAMES[bucket[0]])


def part_values(bucket: str, parts: Mapping[str, Decimal]) -> tuple[Decimal | None, ...]:
    """A counter's parts as CounterRow.parts, from {part name: total}: one entry per part of
    PART_NAMES[kind], None where the counter has none."""
    return tuple([parts.get(part) for part in PART_NAMES[bucket[0]]])


def part_of(label: str) -> str:
    """The part a row label names in its counter (the inverse of row_label with a part):
    'h2026111507' -> 'h07', 'd20261103' -> 'd03'."""
    return label[0] + label[-2:]


@dataclass(frozen=True, slots=True)
class CounterRead:
    """One read of counters: buckets [first, last] of one kind, their totals or (`parts`) their
    parts, keeping the rows labelled within [keep_first, keep_last]."""

    first: str
    last: str
    parts: bool
    keep_first: str
    keep_last: str

    def keeps(self, label: str) -> bool:
        return self.keep_first <= label <= self.keep_last

    def rows(self, read: Iterable["CounterRow"]) -> list["CounterRow"]:
        """The rows this read keeps, one per kept part of each counter read with parts."""
        low, high = self.keep_first, self.keep_last
        if not self.parts:
            return [row for row in read if low <= row.bucket <= high]
        return [
            CounterRow(label, row.group, total)
            for row in read
            for label, total in row.labelled_parts()
            if low <= label <= high
        ]

    def totals(self, read: Iterable["CounterRow"]) -> list["CounterRow"]:
        """Like `rows`, with the kept parts of each counter added up into one row (labelled by
        the read's first kept label): what rating needs, for a fraction of the rows."""
        if not self.parts:
            return self.rows(read)
        return [CounterRow(self.keep_first, row.group, total) for row, total in self._kept_sums(read)]

    def add_totals(self, read: Iterable["CounterRow"], group_of: GroupOf, totals: dict[tuple, Decimal]) -> None:
        """Add what `totals` would give, row by row, into `totals[group_of(row.group)]` (None: the
        group itself): rating's per group sums of an additive metric, with no row made per
        counter read. A store may sum its counters as it holds them the same way (CounterSums)."""
        if self.parts:
            summed: Iterable[tuple[CounterRow, Decimal]] = self._kept_sums(read)
        else:
            low, high = self.keep_first, self.keep_last
            summed = ((row, row.total or _ZERO) for row in read if low <= row.bucket <= high)
        add = COUNTER_CONTEXT.add
        for row, total in summed:
            group = row.group if group_of is None else group_of(row.group)
            totals[group] = add(totals.get(group, _ZERO), total)

    def kept_parts(self, bucket: str) -> slice:
        """The positions, in PART_NAMES[kind] (and CounterRow.parts), of the parts this read keeps
        of a counter of `bucket`."""
        return _kept_parts(bucket, self.keep_first, self.keep_last)

    def _kept_sums(self, read: Iterable["CounterRow"]) -> Iterator[tuple["CounterRow", Decimal]]:
        """(counter, the sum of its kept parts) of each counter read with parts that has some."""
        for row in read:
            kept = [total for total in row.parts[self.kept_parts(row.bucket)] if total is not None]
            if kept:
                yield row, exact_sum(kept)


GroupOf = Callable[[tuple], tuple] | None  # a counter's group values -> the values summed by; None: as they are


@lru_cache(maxsize=1024)  # a read keeps the same parts of each of its thousands of counters
def _kept_parts(bucket: str, keep_first: str, keep_last: str) -> slice:
    labels = part_labels(bucket)  # in time order: labels ascend
    return slice(bisect_left(labels, keep_first), bisect_right(labels, keep_last))


class CounterSums(Protocol):
    """The counters of one metric and ingest key over a range of buckets of an additive metric
    (COUNT, SUM), as a store read them, summed on demand for each read of the range rating makes:
    one read of a month's days serves every segment cut out of the month."""

    def add_totals(self, read: CounterRead, group_of: GroupOf, totals: dict[tuple, Decimal]) -> None:
        """CounterRead.add_totals over the counters read (read.first and read.last within the range)."""


@dataclass(frozen=True, slots=True)
class RowSums:
    """CounterSums over rows read with CounterStore.read: a store with nothing quicker to offer."""

    rows: Sequence["CounterRow"]

    def add_totals(self, read: CounterRead, group_of: GroupOf, totals: dict[tuple, Decimal]) -> None:
        read.add_totals(self.rows, group_of, totals)


def _whole(first: str, last: str) -> CounterRead:
    return CounterRead(first, last, False, row_label(first), row_label(last))


def _parts(first: str, last: str, keep_first: str, keep_last: str) -> CounterRead:
    return CounterRead(first, last, True, keep_first, keep_last)


def read_plan(start: datetime, end: datetime, additive: bool, finest: str | None = None) -> list[CounterRead]:
    """Counter reads whose kept rows cover [start, end) (hour-aligned, start < end) exactly once.

    Rows are as coarse as the span allows: whole months, then whole days, then hours at the edges,
    unless `finest` asks for rows no coarser than 'd' (days) or 'h' (hours), as windowed usage
    needs. A month read this way costs one counter per group (additive), or its days (others)."""
    return list(_read_plan(start, end, additive, finest))


@lru_cache(maxsize=1024)  # an invoice asks for the same few spans once per product
def _read_plan(start: datetime, end: datetime, additive: bool, finest: str | None) -> tuple[CounterRead, ...]:
    return tuple(_plan(start, end, additive, finest))


def _plan(start: datetime, end: datetime, additive: bool, finest: str | None) -> list[CounterRead]:
    if start >= end:
        return []
    first_midnight, last_midnight = midnight_on_or_after(start), midnight_on_or_before(end)
    if finest == "h" or first_midnight >= last_midnight:
        return [_hours(start, end, additive)]
    plan = []
    if start < first_midnight:
        plan.append(_hours(start, first_midnight, additive))
    plan += _days(first_midnight, last_midnight, additive, months=finest is None)
    if last_midnight < end:
        plan.append(_hours(last_midnight, end, additive))
    return plan


def _hours(start: datetime, end: datetime, additive: bool) -> CounterRead:
    first, last = hour_bucket(start), hour_bucket(end - HOUR)
    if not additive:
        return _whole(first, last)
    return _parts("D" + first[1:9], "D" + last[1:9], first, last)


def _days(start: datetime, end: datetime, additive: bool, months: bool) -> list[CounterRead]:
    """Whole UTC days [start, end)."""
    first, last = day_bucket(start), day_bucket(end - DAY)
    if not additive:
        return [_whole(first, last)]
    first_whole = start if start == month_start(start) else next_month(start)
    last_whole = month_start(end)
    if not months or first_whole >= last_whole:
        return [_parts("M" + first[1:7], "M" + last[1:7], first, last)]
    plan = []
    if start < first_whole:
        plan.append(_parts("M" + first[1:7], "M" + first[1:7], first, day_bucket(first_whole - DAY)))
    plan.append(_whole("M" + month_bucket(first_whole)[1:], "M" + month_bucket(last_whole - DAY)[1:]))
    if last_whole < end:
        plan.append(_parts("M" + last[1:7], "M" + last[1:7], day_bucket(last_whole), last))
    return plan


@dataclass(frozen=True, slots=True)
class StreamedEvent:
    """An event as the aggregator sees it on the stream."""

    sequence: str  # padded with sequence_key
    event: UsageEvent
    ingested_at: datetime
    created_at: int | None = None  # the record's ApproximateCreationDateTime, epoch seconds rounded up


def latest_order(event: UsageEvent) -> str:
    """Total order for LATEST: event time, then transaction id to break ties deterministically."""
    return format_sortable(event.timestamp) + "|" + event.transaction_id


@dataclass(slots=True)
class CounterUpdate:
    """Everything one batch adds to one counter: one write per counter per batch."""

    key: CounterKey
    aggregation: Aggregation
    additions: list[tuple[str, str, Decimal]] = field(default_factory=list)  # (sequence, part, value): COUNT, SUM
    maximum: Decimal | None = None
    uniques: set[str] = field(default_factory=set)
    latest: tuple[str, Decimal] | None = None  # (latest_order, value)
    sequences: list[str] = field(default_factory=list)
    events: list[UsageEvent] = field(default_factory=list)  # the record of each sequence, to quarantine
    created: int | None = None  # the newest record's creation time (None: some record has none)
    untimed: bool = False
    oldest_created: int | None = None  # the oldest record's creation time

    @property
    def min_sequence(self) -> str:
        return min(self.sequences)

    @property
    def max_sequence(self) -> str:
        return max(self.sequences)

    @property
    def new_mark(self) -> str:
        """The shard's mark once this update is in: its newest sequence, with the newest creation
        time among its records (the latest, or later: a mark is only ever kept longer)."""
        return mark_of(self.max_sequence, None if self.untimed else self.created)

    def delta_after(self, high_water_mark: str | None) -> tuple[dict[str, Decimal], int]:
        """What the contributions newer than a high-water mark add to each part, and how many
        there are. The counter's total grows by the sum of the parts."""
        parts: dict[str, Decimal] = {}
        fresh = 0
        mark = None if high_water_mark is None else mark_sequence(high_water_mark)
        for sequence, part, value in self.additions:
            if mark is None or sequence > mark:
                parts[part] = COUNTER_CONTEXT.add(parts.get(part, Decimal(0)), value)
                fresh += 1
        return dict(sorted(parts.items())), fresh

    def pairs_after(self, high_water_mark: str | None, reason: str) -> list[QuarantinedPair]:
        """The records newer than a high-water mark (None: all), as pairs this counter misses."""
        mark = None if high_water_mark is None else mark_sequence(high_water_mark)
        return [
            QuarantinedPair(self.key.metric_id, event, (self.key.bucket,), reason, sequence)
            for sequence, event in zip(self.sequences, self.events)
            if mark is None or sequence > mark
        ]

    def add(
        self, sequence: str, event: UsageEvent, value: Decimal | str, part: str | None, created: int | None = None
    ) -> None:
        if created is None:
            self.untimed = True
        else:
            if self.created is None or created > self.created:
                self.created = created
            if self.oldest_created is None or created < self.oldest_created:
                self.oldest_created = created
        self.sequences.append(sequence)
        self.events.append(event)
        if self.aggregation.is_additive:
            self.additions.append((sequence, part, value))  # type: ignore[arg-type]
        elif self.aggregation is Aggregation.MAX:
            self.maximum = value if self.maximum is None or value > self.maximum else self.maximum  # type: ignore[operator]
        elif self.aggregation is Aggregation.UNIQUE:
            self.uniques.add(value)  # type: ignore[arg-type]
        else:
            order = latest_order(event)
            if self.latest is None or order > self.latest[0]:
                self.latest = (order, value)  # type: ignore[assignment]


def range_problem(total: Decimal | None, parts: Mapping[str, Decimal], deltas: Mapping[str, Decimal]) -> str | None:
    """Why adding `deltas` to an additive counter (its total, its parts) would not stay exact: a
    total or part leaving +-COUNTER_RANGE (None when every sum stays exact)."""
    after = [COUNTER_CONTEXT.add(total or _ZERO, exact_sum(deltas.values()))]
    after += [COUNTER_CONTEXT.add(parts.get(part, _ZERO), delta) for part, delta in deltas.items()]
    if all(-COUNTER_RANGE <= value <= COUNTER_RANGE for value in after):
        return None
    return "the counter's total would leave +-1E19, the range a SUM counter holds exactly"


def preaggregate(
    streamed: Iterable[StreamedEvent],
    metrics: Iterable[BillableMetric],
    refused: list[QuarantinedPair] | None = None,
) -> dict[CounterKey, CounterUpdate]:
    """Fold a batch of events into one update per counter. Pure; order of the result is stable.

    A (record, metric) pair no counter can take (tally.billing.quarantine) is left out and added
    to `refused` with its reason; without `refused`, such a pair raises ValueError."""
    live = list(metrics)
    updates: dict[CounterKey, CounterUpdate] = {}
    group_problems: dict[tuple[str, tuple], str | None] = {}  # a batch repeats a few groups
    for item in streamed:
        event = item.event
        for metric in live:
            if not metric.counts_ingested_at(item.ingested_at):
                continue
            contribution = metric.contribution(event)
            if contribution is None:
                continue
            checked = (metric.id, contribution.group)
            problem = group_problems.get(checked, _UNCHECKED)
            if problem is _UNCHECKED:
                problem = group_problems[checked] = group_problem(metric, contribution.group)
            counters = event_counters(metric.aggregation_type, event.timestamp)
            problem = problem or value_problem(metric, contribution.value)
            if problem is not None:
                if refused is None:
                    raise ValueError(problem)
                refused.append(QuarantinedPair(metric.id, event, tuple(b for b, _ in counters), problem, item.sequence))
                continue
            for bucket, part in counters:
                key = CounterKey(metric.id, event.customer_id, bucket, contribution.group)
                update = updates.get(key)
                if update is None:
                    update = updates[key] = CounterUpdate(key, metric.aggregation_type)
                update.add(item.sequence, event, contribution.value, part, item.created_at)
    return updates


_UNCHECKED = object()


@hot_value
class CounterRow:
    """A counter as read back, labelled by the time it covers (see `row_label`); or, read with its
    parts (CounterRead.parts) or stored as given (bulk loads), labelled by its bucket with `parts`
    holding the total of each part of PART_NAMES[kind], in that order, None where it has none.

    Positions rather than (label, total) pairs: a read of a month's counters with parts holds tens
    of thousands of parts, and a pair each was most of what such a read allocated and freed."""

    bucket: str
    group: tuple[str | None, ...]
    total: Decimal | None = None  # COUNT, SUM, MAX
    uniques: frozenset[str] = frozenset()
    latest: tuple[str, Decimal] | None = None
    parts: tuple[Decimal | None, ...] = ()

    def labelled_parts(self) -> list[tuple[str, Decimal]]:
        """(row label, total) of each part the counter has, in label order."""
        if not self.parts:
            return []
        return [(label, total) for label, total in zip(part_labels(self.bucket), self.parts) if total is not None]


def combine_by_group(
    aggregation: Aggregation, rows: Iterable[CounterRow], group_of: Callable[[CounterRow], tuple]
) -> dict[tuple, Decimal | None]:
    """`combine` of the rows of each group, as {group_of(row): aggregate}. (Rating sums additive
    metrics per group with CounterSums, without rows.)"""
    by_group: dict[tuple, list[CounterRow]] = {}
    for row in rows:
        by_group.setdefault(group_of(row), []).append(row)
    return {group: combine(aggregation, members) for group, members in by_group.items()}


def combine(aggregation: Aggregation, rows: Iterable[CounterRow]) -> Decimal | None:
    """Aggregate counters across buckets and groups (never mix grains over the same time). None means no data (MAX and LATEST only)."""
    if aggregation.is_additive:
        return exact_sum([row.total or _ZERO for row in rows])
    rows = list(rows)
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
