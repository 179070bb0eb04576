"""Named schedules: setting a value over a range overwrites what the range covers and splits what it cuts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.named_schedules import Segment, covering, set_value

UTC = timezone.utc


def day(month: int, d: int = 1) -> datetime:
    return datetime(2026, month, d, tzinfo=UTC)


def show(segments) -> list[tuple]:
    return [(f"{s.starting_at:%m-%d}", None if s.ending_before is None else f"{s.ending_before:%m-%d}", s.value) for s in segments]


JAN_TO_APR = (Segment(day(1), day(4), "a"),)
OPEN = (Segment(day(1), None, "a"),)
CASES = [
    ("the first value is the whole schedule", (), (day(1), day(2)), [("01-01", "02-01", "new")]),
    ("a range inside a segment splits it in three", JAN_TO_APR, (day(2), day(3)),
     [("01-01", "02-01", "a"), ("02-01", "03-01", "new"), ("03-01", "04-01", "a")]),
    ("a range over a segment's start keeps its end", JAN_TO_APR, (day(1), day(2)),
     [("01-01", "02-01", "new"), ("02-01", "04-01", "a")]),
    ("a range over a segment's end keeps its start", JAN_TO_APR, (day(3), day(5)),
     [("01-01", "03-01", "a"), ("03-01", "05-01", "new")]),
    ("a range covering a segment replaces it", JAN_TO_APR, (day(1), day(4)), [("01-01", "04-01", "new")]),
    ("an open range replaces everything after its start", JAN_TO_APR, (day(2), None),
     [("01-01", "02-01", "a"), ("02-01", None, "new")]),
    ("a closed range inside an open segment leaves it open after", OPEN, (day(2), day(3)),
     [("01-01", "02-01", "a"), ("02-01", "03-01", "new"), ("03-01", None, "a")]),
    ("a range in a gap only fills the gap", (Segment(day(1), day(2), "a"), Segment(day(5), day(6), "b")), (day(3), day(4)),
     [("01-01", "02-01", "a"), ("03-01", "04-01", "new"), ("05-01", "06-01", "b")]),
    ("a range over two segments cuts both", (Segment(day(1), day(3), "a"), Segment(day(3), day(5), "b")), (day(2), day(4)),
     [("01-01", "02-01", "a"), ("02-01", "04-01", "new"), ("04-01", "05-01", "b")]),
    ("an equal value next door is not merged: each update shows", JAN_TO_APR, (day(4), day(5)),
     [("01-01", "04-01", "a"), ("04-01", "05-01", "new")]),
]


@pytest.mark.parametrize("before,window,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_setting_a_value_over_a_range(before, window, expected):
    assert show(set_value(before, window[0], window[1], "new")) == expected


def test_a_range_ending_before_it_starts_is_refused():
    with pytest.raises(InvalidInput) as raised:
        set_value((), day(2), day(1), 1)
    assert raised.value.field == "ending_before"


@pytest.mark.parametrize(
    "instant,expected",
    [(None, ["a", "b"]), (day(1, 15), ["a"]), (day(2), ["b"]), (day(3), [])],
    ids=["no date: every segment", "a date inside the first", "a segment's start is inside it", "a date nothing covers"],
)
def test_covering_a_date_gives_at_most_the_segment_covering_it(instant, expected):
    segments = (Segment(day(1), day(2), "a"), Segment(day(2), day(3), "b"))
    assert [s.value for s in covering(segments, instant)] == expected
