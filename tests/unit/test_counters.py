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
    totals = {(k.ingest_key, k.hour): u.delta_after(None)[0] for k, u in updates.items()}
    assert totals == {("acme", "2026112410"): 3, ("acme", "2026112411"): 4, ("globex", "2026112410"): 8}


def test_events_ingested_before_activation_are_left_to_the_backfill():
    updates = preaggregate([streamed(0, 5, 1, ingested=T - timedelta(seconds=1)), streamed(1, 5, 2)], [SUM])
    (update,) = updates.values()
    assert update.delta_after(None) == (Decimal(2), 1)


def test_delta_after_a_mark_counts_only_newer_records():
    (update,) = preaggregate([streamed(i, 1, i) for i in range(5)], [SUM]).values()
    assert update.delta_after(sequence_key(102)) == (Decimal(3 + 4), 2)


def rows(*totals):
    return [CounterRow("2026112410", (), Decimal(t)) for t in totals]


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
