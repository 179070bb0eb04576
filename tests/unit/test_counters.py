"""Pre-aggregation and reading counters back."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.billing.counters import CounterRow, StreamedEvent, combine, preaggregate, sequence_key
from tally.billing.events import UsageEvent
from tally.billing.metrics import Aggregation, BillableMetric

T = datetime(2026, 11, 24, 10, tzinfo=timezone.utc)


def streamed(i, minutes, tokens, customer="acme", ingested=T):
    event = UsageEvent(f"t{i}", customer, "call", T + timedelta(minutes=minutes), {"tokens": tokens})
    return StreamedEvent(sequence_key(100 + i), event, ingested)


SUM = BillableMetric("sum", "sum", Aggregation.SUM, "tokens", None, (), (), activated_at=T)


def test_a_batch_becomes_one_update_per_counter_split_by_hour_and_ingest_key():
    updates = preaggregate(
        [streamed(0, 5, 1), streamed(1, 10, 2), streamed(2, 70, 4), streamed(3, 5, 8, customer="globex")], [SUM]
    )
    parts = {(k.ingest_key, k.bucket): u.delta_after(None)[0] for k, u in updates.items()}
    assert parts == {  # a day counter with a part per hour, a month counter with a part per day
        ("acme", "D20261124"): {"h10": 3, "h11": 4},
        ("acme", "M202611"): {"d24": 7},
        ("globex", "D20261124"): {"h10": 8},
        ("globex", "M202611"): {"d24": 8},
    }


def test_max_unique_and_latest_keep_an_hour_and_a_day_counter():
    metric = BillableMetric("max", "max", Aggregation.MAX, "tokens", None, (), (), activated_at=T)
    updates = preaggregate([streamed(0, 5, 1), streamed(1, 70, 4)], [metric])
    assert {k.bucket: u.maximum for k, u in updates.items()} == {"h2026112410": 1, "h2026112411": 4, "d20261124": 4}


def test_events_ingested_before_activation_are_left_to_the_backfill():
    updates = preaggregate([streamed(0, 5, 1, ingested=T - timedelta(seconds=1)), streamed(1, 5, 2)], [SUM])
    assert [u.delta_after(None) for u in updates.values()] == [({"h10": Decimal(2)}, 1), ({"d24": Decimal(2)}, 1)]


def test_delta_after_a_mark_counts_only_newer_records():
    for update in preaggregate([streamed(i, 1, i) for i in range(5)], [SUM]).values():
        parts, fresh = update.delta_after(sequence_key(102))
        assert (sum(parts.values()), fresh) == (Decimal(3 + 4), 2)


def rows(*totals):
    return [CounterRow("h2026112410", (), Decimal(t)) for t in totals]


@pytest.mark.parametrize(
    "aggregation,rows_,expected",
    [
        (Aggregation.SUM, rows(1, 2, 3), Decimal(6)),
        (Aggregation.COUNT, [], Decimal(0)),
        (Aggregation.MAX, rows(1, 7, 3), Decimal(7)),
        (Aggregation.MAX, [], None),
        (Aggregation.UNIQUE, [CounterRow("h", (), uniques=frozenset("ab")), CounterRow("h", (), uniques=frozenset("bc"))], Decimal(3)),
        (Aggregation.LATEST, [CounterRow("h", (), latest=("2026-01-02", Decimal(5))), CounterRow("h", (), latest=("2026-01-03", Decimal(1)))], Decimal(1)),
    ],
    ids=["sum adds", "count of nothing is zero", "max takes the largest", "max of nothing is null",
         "unique unions the sets", "latest takes the latest event's value"],
)
def test_combining_counters(aggregation, rows_, expected):
    assert combine(aggregation, rows_) == expected


def test_sequence_keys_sort_like_numbers():
    assert sequence_key(99) < sequence_key(100)
    with pytest.raises(ValueError):
        sequence_key("12a")


def plan_of(start, end, additive=True, finest=None):
    from tally.billing.counters import read_plan
    from tally.billing.time import parse_rfc3339

    return [
        (r.first, r.last, "parts" if r.parts else "totals", r.keep_first, r.keep_last)
        for r in read_plan(parse_rfc3339(start), parse_rfc3339(end), additive, finest)
    ]


@pytest.mark.parametrize(
    "start,end,additive,finest,plan",
    [
        ("2026-11-24T05:00:00Z", "2026-11-24T09:00:00Z", True, None,
         [("D20261124", "D20261124", "parts", "h2026112405", "h2026112408")]),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", True, None,
         [("M202611", "M202611", "totals", "m202611", "m202611")]),
        ("2026-11-01T00:00:00Z", "2026-11-15T12:00:00Z", True, None,
         [("M202611", "M202611", "parts", "d20261101", "d20261114"),
          ("D20261115", "D20261115", "parts", "h2026111500", "h2026111511")]),
        ("2026-10-31T22:00:00Z", "2027-01-02T00:00:00Z", True, None,
         [("D20261031", "D20261031", "parts", "h2026103122", "h2026103123"),
          ("M202611", "M202612", "totals", "m202611", "m202612"),
          ("M202701", "M202701", "parts", "d20270101", "d20270101")]),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", True, "d",
         [("M202611", "M202611", "parts", "d20261101", "d20261130")]),
        ("2026-11-01T05:00:00Z", "2026-11-02T02:00:00Z", True, None,
         [("D20261101", "D20261102", "parts", "h2026110105", "h2026110201")]),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", False, None,
         [("d20261101", "d20261130", "totals", "d20261101", "d20261130")]),
        ("2026-11-01T05:00:00Z", "2026-11-04T02:00:00Z", False, None,
         [("h2026110105", "h2026110123", "totals", "h2026110105", "h2026110123"),
          ("d20261102", "d20261103", "totals", "d20261102", "d20261103"),
          ("h2026110400", "h2026110401", "totals", "h2026110400", "h2026110401")]),
    ],
    ids=["within one day only the day's hours are read", "a whole month reads one month counter",
         "a month cut mid-day reads the month's days and the cut day's hours",
         "edges in hours and days, whole months in the middle",
         "daily windows read the month's days, never its total",
         "no whole day: the hours of both days",
         "max unique and latest read thirty day counters for a month",
         "max unique and latest: whole days in the middle, hours at the edges"],
)
def test_the_read_plan_covers_the_range_exactly_once(start, end, additive, finest, plan):
    assert plan_of(start, end, additive, finest) == plan


# -- property: whatever the span and the grain asked for, counters written by the aggregator and read
# back through the plan give exactly the sum of the events in the span, in rows inside the span.
from hypothesis import given, settings, strategies as st  # noqa: E402

EPOCH = datetime(2026, 10, 20, tzinfo=timezone.utc)
HOURS = 24 * 80  # about two and a half months around month ends


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, HOURS - 1), st.integers(0, 59), st.integers(1, 1000), st.sampled_from(["eu", "us"])),
                    max_size=40),
    span=st.tuples(st.integers(0, HOURS), st.integers(0, HOURS)).filter(lambda s: s[0] != s[1]),
    finest=st.sampled_from([None, "d", "h"]),
)
def test_reading_a_span_through_the_plan_sums_exactly_its_events(events, span, finest):
    from tally.adapters.memory import MemoryCounterStore
    from tally.billing.counters import combine_by_group, read_plan
    from tally.billing.time import bucket_start
    from tally.services.aggregate import apply_update

    store = MemoryCounterStore()
    batch = [
        StreamedEvent(sequence_key(100 + i), UsageEvent(f"t{i}", "acme", "call", EPOCH + timedelta(hours=h, minutes=m),
                                                        {"tokens": n, "region": region}), T)
        for i, (h, m, n, region) in enumerate(events)
    ]
    metric = BillableMetric("sum", "sum", Aggregation.SUM, "tokens", None, (), (("region",),), activated_at=T - timedelta(days=1))
    for update in preaggregate(batch, [metric]).values():
        apply_update(store, "shard-1", update)
    start, end = (EPOCH + timedelta(hours=min(span)), EPOCH + timedelta(hours=max(span)))
    rows = [row for read in read_plan(start, end, True, finest) for row in read.rows(store.read("sum", "acme", read.first, read.last, read.parts))]
    summed = [row for read in read_plan(start, end, True, finest) for row in read.totals(store.read("sum", "acme", read.first, read.last, read.parts))]
    assert combine(Aggregation.SUM, summed) == combine(Aggregation.SUM, rows)
    # rating's sums per group, added as read: the same as the summed rows combined per group
    per_group: dict = {}
    for read in read_plan(start, end, True, finest):
        read.add_totals(store.read("sum", "acme", read.first, read.last, read.parts), None, per_group)
    assert per_group == combine_by_group(Aggregation.SUM, summed, lambda row: row.group)
    by_store: dict = {}  # the store's own sums (CounterStore.sums) give the same
    for read in read_plan(start, end, True, finest):
        store.sums("sum", "acme", read.first, read.last, read.parts).add_totals(read, None, by_store)
    assert by_store == per_group
    assert per_group == combine_by_group(Aggregation.SUM, rows, lambda row: row.group)
    expected = sum((Decimal(e.event.properties["tokens"]) for e in batch if start <= e.event.timestamp < end), Decimal(0))
    assert combine(Aggregation.SUM, rows) == expected
    assert all(start <= bucket_start(row.bucket) < end for row in rows)
    if finest is not None:
        assert all(row.bucket[0] in ("h", finest) for row in rows)


def test_a_counters_parts_are_held_by_position_and_read_back_by_label():
    from tally.billing.counters import CounterRead, CounterRow, part_values

    day = CounterRow("D20261115", ("eu",), parts=part_values("D20261115", {"h07": Decimal(2), "h23": Decimal("0.5")}))
    assert len(day.parts) == 24 and day.parts[7] == Decimal(2) and day.parts[0] is None
    assert day.labelled_parts() == [("h2026111507", Decimal(2)), ("h2026111523", Decimal("0.5"))]
    month = CounterRow("M202602", ("eu",), parts=part_values("M202602", {"d28": Decimal(1)}))
    assert month.labelled_parts() == [("d20260228", Decimal(1))]
    # a read keeping the 7th to the 22nd hour sums what lies there, and skips counters with nothing there
    kept = CounterRead("D20261115", "D20261115", True, "h2026111507", "h2026111522")
    empty = CounterRow("D20261115", ("us",), parts=part_values("D20261115", {"h23": Decimal(9)}))
    assert kept.totals([day, empty]) == [CounterRow("h2026111507", ("eu",), Decimal(2))]
