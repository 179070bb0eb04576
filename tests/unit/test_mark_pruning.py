"""High-water marks with a creation time: they compare as their sequence does, and a mark younger
than the window (stream retention plus margin) is never removed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.dynamo.stream import created_at
from tally.billing.backfill import page_shard
from tally.billing.counters import (
    PAGE_SHARD_PREFIX,
    counter_sub_item,
    mark_created,
    mark_of,
    mark_sequence,
    marks_to_prune,
    prune_before,
    sequence_key,
    stale_marks,
    untimed_restamps,
)
from tally.billing.limits import COUNTER_SUB_ITEMS, MARK_PRUNE_EVERY_S, MARK_PRUNE_MARGIN_S, STREAM_RECORD_RETENTION_S

WINDOW = STREAM_RECORD_RETENTION_S + MARK_PRUNE_MARGIN_S
sequences = st.integers(0, 10**40 - 1).map(sequence_key)
times = st.integers(1_600_000_000, 2_000_000_000)


@given(mark=sequences, created=st.none() | times, other=sequences)
def test_a_mark_with_a_time_compares_with_sequences_as_its_sequence_does(mark, created, other):
    stored = mark_of(mark, created)

    assert (stored < other) == (mark < other)  # the write's `#m < :below`
    assert (other > stored) == (other > mark)  # delta_after: what is newer than the mark
    assert mark_sequence(stored) == mark and mark_created(stored) == created


@given(newest=times, ages=st.lists(st.integers(-3_600, 3 * WINDOW), min_size=1, max_size=30))
def test_a_mark_younger_than_the_window_is_never_removed(newest, ages):
    marks = {f"shard-{i}": mark_of(sequence_key(i), newest - age) for i, age in enumerate(ages)}

    stale = stale_marks(marks, prune_before(newest))

    assert stale == sorted(f"shard-{i}" for i, age in enumerate(ages) if age > WINDOW)
    # removed in batches: all the stale ones once one is an hour past the window, else none
    due = any(age > WINDOW + MARK_PRUNE_EVERY_S for age in ages)
    assert marks_to_prune(marks, prune_before(newest)) == (stale if due else [])


def test_the_window_is_retention_plus_margin_and_its_edge_is_kept():
    newest = 1_800_000_000
    marks = {"edge": mark_of(sequence_key(1), newest - WINDOW), "past": mark_of(sequence_key(2), newest - WINDOW - 1)}

    assert WINDOW == 26 * 3_600
    assert stale_marks(marks, prune_before(newest)) == ["past"]
    assert stale_marks(marks, prune_before(newest), keep="past") == []  # the writing shard keeps its own
    assert prune_before(None) is None  # records without a time: nothing is pruned


def test_a_mark_written_before_marks_had_a_time_is_never_stale():
    assert mark_created(sequence_key(5)) is None
    assert stale_marks({"legacy": sequence_key(5)}, 2_000_000_000) == []


def test_the_stream_record_s_creation_time_is_read_rounded_up():
    assert created_at({"ApproximateCreationDateTime": 1_700_000_000}) == 1_700_000_000
    assert created_at({"ApproximateCreationDateTime": 1_700_000_000.25}) == 1_700_000_001
    assert created_at({}) is None
    assert created_at({"ApproximateCreationDateTime": "soon"}) is None


def test_an_untimed_stream_mark_is_restamped_no_earlier_than_anything_the_stream_can_still_deliver():
    newest = 1_800_000_000
    marks = {"writer": sequence_key(9), "old": sequence_key(3), "timed": mark_of(sequence_key(4), newest - 60),
             page_shard("m", 0): sequence_key(1)}

    restamped = untimed_restamps(marks, prune_before(newest), keep="writer")

    # the batch's newest record plus the retention: any record under the mark was created by now,
    # and now is at most the retention past that record's creation
    assert restamped == {"old": mark_of(sequence_key(3), newest + STREAM_RECORD_RETENTION_S)}
    # a backfill segment's mark guards a job that may be resumed any time: never re-stamped
    assert page_shard("m", 0).startswith(PAGE_SHARD_PREFIX)
    # re-stamped, it is pruned like any mark once the window has passed that time
    later = newest + STREAM_RECORD_RETENTION_S + WINDOW + MARK_PRUNE_EVERY_S + 1
    assert stale_marks(restamped, prune_before(later)) == ["old"]
    assert stale_marks(restamped, prune_before(later - MARK_PRUNE_EVERY_S - 2)) == []


@given(shard=st.text(min_size=1, max_size=80))
def test_a_shard_always_writes_the_same_sub_item(shard):
    assert counter_sub_item(shard) == counter_sub_item(str(shard)) and 1 <= counter_sub_item(shard) <= COUNTER_SUB_ITEMS


def test_reads_add_up_an_additive_counter_s_items_part_by_part():
    from decimal import Decimal

    from tally.billing.counters import CounterRow, sum_sub_items

    legacy = CounterRow("M202611", ("eu",), parts=(Decimal(1), None) + (None,) * 29)
    sub = CounterRow("M202611", ("eu",), parts=(Decimal(2), Decimal(5)) + (None,) * 29)
    other = CounterRow("M202611", ("us",), parts=(Decimal(7),) + (None,) * 30)

    rows = sum_sub_items([legacy, other, sub])

    assert rows == [CounterRow("M202611", ("eu",), parts=(Decimal(3), Decimal(5)) + (None,) * 29), other]
    assert sum_sub_items([CounterRow("m202611", (), Decimal(2)), CounterRow("m202611", (), Decimal("0.5"))]) == [
        CounterRow("m202611", (), Decimal("2.5"))
    ]
