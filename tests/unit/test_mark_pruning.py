"""High-water marks with a creation time: they compare as their sequence does, and a mark younger
than the window (stream retention plus margin) is never removed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.dynamo.stream import created_at
from tally.billing.counters import (
    mark_created,
    mark_of,
    mark_sequence,
    marks_to_prune,
    prune_before,
    sequence_key,
    stale_marks,
)
from tally.billing.limits import MARK_PRUNE_EVERY_S, MARK_PRUNE_MARGIN_S, STREAM_RECORD_RETENTION_S

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
