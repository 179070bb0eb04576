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
    totals = {(k.ingest_key, k.bucket): u.delta_after(None)[0] for k, u in updates.items()}
    assert totals == {
        ("acme", "h2026112410"): 3,
        ("acme", "h2026112411"): 4,
        ("acme", "d20261124"): 7,
        ("globex", "h2026112410"): 8,
        ("globex", "d20261124"): 8,
    }


def test_events_ingested_before_activation_are_left_to_the_backfill():
    updates = preaggregate([streamed(0, 5, 1, ingested=T - timedelta(seconds=1)), streamed(1, 5, 2)], [SUM])
    assert {u.delta_after(None) for u in updates.values()} == {(Decimal(2), 1)}  # hour and day alike


def test_delta_after_a_mark_counts_only_newer_records():
    for update in preaggregate([streamed(i, 1, i) for i in range(5)], [SUM]).values():
        assert update.delta_after(sequence_key(102)) == (Decimal(3 + 4), 2)


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


@pytest.mark.parametrize(
    "start,end,plan",
    [
        ("2026-11-24T05:00:00Z", "2026-11-24T09:00:00Z", [("h2026112405", "h2026112408")]),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", [("d20261101", "d20261130")]),
        (
            "2026-11-01T05:00:00Z",
            "2026-11-04T02:00:00Z",
            [("h2026110105", "h2026110123"), ("d20261102", "d20261103"), ("h2026110400", "h2026110401")],
        ),
        ("2026-11-01T05:00:00Z", "2026-11-02T02:00:00Z", [("h2026110105", "h2026110201")]),
    ],
    ids=["within one day only hours are read", "a whole month reads thirty day buckets",
         "whole days in the middle, hours at the edges", "no whole day: hours across midnight"],
)
def test_the_read_plan_covers_the_range_exactly_once(start, end, plan):
    from tally.billing.time import parse_rfc3339, read_plan

    assert read_plan(parse_rfc3339(start), parse_rfc3339(end)) == plan
