"""Named schedules: custom data that changes over time, kept on a rate card, a contract or a customer.

A schedule is a series of segments [starting_at, ending_before) (no end: open-ended), each holding
an arbitrary JSON value, in time order and never overlapping. Setting a value over a range
overwrites whatever the range covered: a segment the range cuts keeps its value on each side, so
setting [Feb 1, Feb 15) inside a January-to-March segment leaves three segments. Neighbours are
never merged, even with equal values: each update stays visible as it was made. A range without
an end runs to the end of time, so it replaces every later segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from tally.billing.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Segment:
    starting_at: datetime
    ending_before: datetime | None  # None: open-ended
    value: Any  # JSON: dict, list, str, Decimal, bool or None

    def covers(self, instant: datetime) -> bool:
        return self.starting_at <= instant and (self.ending_before is None or instant < self.ending_before)

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        return (end is None or self.starting_at < end) and (self.ending_before is None or start < self.ending_before)


def set_value(
    segments: Sequence[Segment], starting_at: datetime, ending_before: datetime | None, value: Any
) -> tuple[Segment, ...]:
    """The schedule with `value` over [starting_at, ending_before), in time order."""
    if ending_before is not None and ending_before <= starting_at:
        raise InvalidInput("ending_before", "must be after starting_at")
    kept: list[Segment] = []
    for segment in segments:
        if not segment.overlaps(starting_at, ending_before):
            kept.append(segment)
            continue
        if segment.starting_at < starting_at:  # the part before the range keeps its value
            kept.append(Segment(segment.starting_at, starting_at, segment.value))
        if ending_before is not None and (segment.ending_before is None or ending_before < segment.ending_before):
            kept.append(Segment(ending_before, segment.ending_before, segment.value))  # and the part after
    kept.append(Segment(starting_at, ending_before, value))
    return tuple(sorted(kept, key=lambda s: s.starting_at))


def covering(segments: Sequence[Segment], instant: datetime | None) -> tuple[Segment, ...]:
    """All segments, or (given an instant) the one covering it, if any."""
    if instant is None:
        return tuple(segments)
    return tuple(s for s in segments if s.covers(instant))[:1]
