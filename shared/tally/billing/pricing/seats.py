"""Seat-based subscriptions (Metronome's SEAT_BASED quantity management).

The quantity of a SEAT_BASED subscription is its number of seats: the assigned ones, each named
by a seat id, plus a count of unassigned ones. Seats change through effective-dated seat updates,
applied on their dates in the order sent (as quantity updates are), with Metronome's rules:
- adding a seat id fills an unassigned seat when there is one (the quantity stays), and adds a
  seat otherwise; an id already assigned is left as it is;
- removing a seat id removes that seat (the quantity drops); an id not assigned is a no-op;
- adding unassigned seats adds to the quantity; removing them takes away at most those there are.

The quantity schedule a seat schedule gives is what prices the subscription, so seats are billed,
prorated and re-priced exactly as quantity updates are (subscriptions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Sequence

from tally.billing.errors import InvalidInput
from tally.billing.pricing.subscriptions import QuantityChange


@dataclass(frozen=True, slots=True)
class Seats:
    assigned: tuple[str, ...]  # in the order they were assigned
    unassigned: int = 0

    @property
    def total(self) -> int:
        return len(self.assigned) + self.unassigned

    def same_as(self, other: Seats) -> bool:
        return self.unassigned == other.unassigned and set(self.assigned) == set(other.assigned)


@dataclass(frozen=True, slots=True)
class SeatChange:
    """One seat update: one kind of change (SDK: seat_updates.add_seat_ids[], ...) at an instant."""

    starting_at: datetime
    add_seat_ids: tuple[str, ...] = ()
    remove_seat_ids: tuple[str, ...] = ()
    add_unassigned: int = 0
    remove_unassigned: int = 0

    def applied_to(self, seats: Seats) -> Seats:
        assigned, unassigned = list(seats.assigned), seats.unassigned
        for seat_id in self.add_seat_ids:
            if seat_id in assigned:
                continue
            assigned.append(seat_id)
            if unassigned:
                unassigned -= 1  # fills an unassigned seat
        gone = set(self.remove_seat_ids)
        assigned = [s for s in assigned if s not in gone]
        unassigned += self.add_unassigned
        unassigned -= min(self.remove_unassigned, unassigned)
        return Seats(tuple(assigned), unassigned)


@dataclass(frozen=True, slots=True)
class SeatSegment:
    starting_at: datetime
    ending_before: datetime | None  # None: until the subscription ends (or never)
    seats: Seats

    def covers(self, instant: datetime) -> bool:
        return self.starting_at <= instant and (self.ending_before is None or instant < self.ending_before)


def seat_count(value: Decimal | int, field: str, allow_zero: bool) -> int:
    """A whole number of seats (Metronome's total_quantity is an integer)."""
    number = Decimal(value)
    if not number.is_finite() or number != number.to_integral_value():
        raise InvalidInput(field, "must be a whole number of seats")
    if number < 0 or (number == 0 and not allow_zero):
        raise InvalidInput(field, "must be greater than 0" if not allow_zero else "must not be negative")
    return int(number)


def seat_schedule(
    starting_at: datetime, ending_before: datetime | None, initial: Seats, changes: Sequence[SeatChange]
) -> tuple[SeatSegment, ...]:
    """The subscription's seats from its start, one segment per change of seats. `changes` are in
    the order sent; they apply in (starting_at, order sent) order, and a change at or before the
    start changes the initial seats. A change that leaves the seats as they were starts no segment."""
    ordered = sorted(enumerate(changes), key=lambda pair: (pair[1].starting_at, pair[0]))
    segments: list[tuple[datetime, Seats]] = [(starting_at, initial)]
    for _, change in ordered:
        at = max(change.starting_at, starting_at)
        if ending_before is not None and at >= ending_before:
            continue
        seats = change.applied_to(segments[-1][1])
        if segments[-1][0] == at:
            segments[-1] = (at, seats)
        else:
            segments.append((at, seats))
    # Changes may leave the seats as they were, or cancel out: join equal neighbours.
    joined: list[tuple[datetime, Seats]] = []
    for at, seats in segments:
        if not (joined and joined[-1][1].same_as(seats)):
            joined.append((at, seats))
    ends = [at for at, _ in joined[1:]] + [ending_before]
    return tuple(SeatSegment(at, end, seats) for (at, seats), end in zip(joined, ends))


def seat_quantities(segments: Sequence[SeatSegment]) -> tuple[Decimal, tuple[QuantityChange, ...]]:
    """The quantity schedule of a seat schedule: (initial quantity, changes), a change only where
    the number of seats changes (swapping one seat for another changes no price)."""
    initial = Decimal(segments[0].seats.total)
    changes: list[QuantityChange] = []
    previous = initial
    for segment in segments[1:]:
        total = Decimal(segment.seats.total)
        if total != previous:
            changes.append(QuantityChange(segment.starting_at, total))
            previous = total
    return initial, tuple(changes)
