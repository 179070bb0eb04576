"""Recurring commits and credits: a new commit (or credit) for every period, made from one definition.

Shapes follow metronome-sdk's `RecurringCommit` and `RecurringCredit` (v1 contract_create_params.py,
shared/contract_without_amendments.py). Each period from `starting_at` makes one *recurrence*:

* Periods. Without `recurrence_frequency` they are the contract's billing periods (its usage
  statement grid); with it, cells of that frequency counted from the recurring grant's own
  `starting_at`. The first period starts at `starting_at`, and the last ends at the grant's end:
  the earlier of its `ending_before` and the contract's (no end: periods keep coming).
* Access. A recurrence grants `access_amount` over `commit_duration` periods from its period's
  start (never past the grant's end), so with a duration above one they overlap.
* Proration. A first period cut by `starting_at` (FIRST) and a last one cut by the end (LAST)
  grant, and for a commit invoice, the amount times the part of the period they cover (measured
  in time, to the second), rounded once: with `proration_rounding` when given, else to the
  credit type. NONE grants whole amounts; FIRST_AND_LAST (Metronome's default) does both.
* Invoice. A prepaid recurring commit with an `invoice_amount` bills it at each period's start;
  without one its commits are complimentary. Credits are never invoiced.
* Rollover. `rollover_fraction` passes to every recurrence, and what a recurrence rolls over at
  its end (burn_down.py) lasts until the next recurrence's access ends: from one period into the
  next, however long each is.
* Updates (contract edits' update_recurring_commits/credits) change the recurrences whose access
  starts after the update; those begun or over by then stay as they were made.
* Subscriptions (`subscription_config`, POOLED allocation). A recurring grant linked to a
  subscription grants its access amount per seat (or unit of quantity): a recurrence grants the
  amount times the subscription's quantity at its period's start (0 outside the subscription). A
  seat increase during the period grants the added seats' amount at once, from the increase to the
  recurrence's access end: times the part of the period left (to the second, rounded once as
  above) when `apply_seat_increase_config.is_prorated`, else in full. Only seats above the most the
  period has had count: a seat removed and added back in one period grants nothing more. Decreases
  take nothing back (what was granted stays, as with any grant).
* INDIVIDUAL allocation (a SEAT_BASED subscription): each assigned seat gets its own allocation of
  the access amount instead (only its usage may draw it: services/recurring_grants.py): the seats
  assigned at the period's start, prorated as the recurrence is, and each seat first assigned
  during the period from then on, prorated like an increase. Unassigned seats have no id, so
  nothing to allocate to.

Nothing is stored per recurrence: `recurrences` computes them again on every read, with the same
indexes, from which callers derive stable ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum

from tally.billing.balances.grants import GrantKind
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_SCHEDULE_ITEMS
from tally.billing.pricing.money import PRICING_CONTEXT, CreditType
from tally.billing.pricing.periods import (
    WEEK,
    Frequency,
    UsageStatementSchedule,
    billing_anchor,
    grid_index,
    grid_point,
)
from tally.billing.pricing.subscriptions import ProrationRounding
from tally.billing.pricing.validation import non_negative, window

DAY = timedelta(days=1)

# The most recurrences one recurring commit or credit makes (a daily one: over three years).
MAX_RECURRENCES = MAX_SCHEDULE_ITEMS


class RecurrenceFrequency(str, Enum):
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    ANNUAL = "ANNUAL"
    WEEKLY = "WEEKLY"
    DAILY = "DAILY"

    def point(self, anchor: datetime, k: int) -> datetime:
        """The k-th boundary after the anchor (month ends clamp per month, as billing periods do)."""
        if self is RecurrenceFrequency.DAILY:
            return anchor + k * DAY
        return grid_point(anchor, Frequency(self.value), k)


class RecurringProration(str, Enum):
    NONE = "NONE"
    FIRST = "FIRST"
    LAST = "LAST"
    FIRST_AND_LAST = "FIRST_AND_LAST"

    @property
    def first(self) -> bool:
        return self in (RecurringProration.FIRST, RecurringProration.FIRST_AND_LAST)

    @property
    def last(self) -> bool:
        return self in (RecurringProration.LAST, RecurringProration.FIRST_AND_LAST)


@dataclass(frozen=True, slots=True)
class SeatLink:
    """The subscription a recurring grant is linked to: its quantity over time (seat count for a
    SEAT_BASED subscription) as (from, until or None, quantity) steps, and whether an increase
    within a period is prorated."""

    quantities: tuple[tuple[datetime, datetime | None, Decimal], ...]
    prorate_increase: bool
    individual: bool = False  # INDIVIDUAL allocation: per assigned seat (`assigned`)
    assigned: tuple[tuple[datetime, datetime | None, tuple[str, ...]], ...] = ()

    def seat_ids_at(self, instant: datetime) -> tuple[str, ...]:
        for start, end, seat_ids in self.assigned:
            if start <= instant and (end is None or instant < end):
                return seat_ids
        return ()

    def joined(self, start: datetime, end: datetime) -> tuple[tuple[datetime, str], ...]:
        """(instant, seat id) for each seat first assigned within (start, end)."""
        seen = set(self.seat_ids_at(start))
        found = []
        for at, _, seat_ids in self.assigned:
            if start < at < end:
                for seat_id in seat_ids:
                    if seat_id not in seen:
                        found.append((at, seat_id))
                        seen.add(seat_id)
        return tuple(found)

    def quantity_at(self, instant: datetime) -> Decimal:
        for start, end, quantity in self.quantities:
            if start <= instant and (end is None or instant < end):
                return quantity
        return Decimal(0)

    def increases(self, start: datetime, end: datetime) -> tuple[tuple[datetime, Decimal], ...]:
        """(instant, seats added above the most the period has had) within (start, end)."""
        most = self.quantity_at(start)
        found = []
        for at, _, quantity in self.quantities:
            if start < at < end and quantity > most:
                found.append((at, quantity - most))
                most = quantity
        return tuple(found)


@dataclass(frozen=True, slots=True)
class RecurringGrant:
    id: str
    kind: GrantKind  # PREPAID (a recurring commit) or CREDIT
    starting_at: datetime  # the first recurrence's start, hour-aligned
    access_amount: Decimal  # per whole period: access unit_price × quantity (per seat when linked)
    credit_type: CreditType
    ending_before: datetime | None = None  # no recurrence starts at or after it
    duration: int = 1  # periods each recurrence's access lasts
    frequency: RecurrenceFrequency | None = None  # None: the contract's billing periods
    proration: RecurringProration = RecurringProration.FIRST_AND_LAST
    access_rounding: ProrationRounding | None = None
    invoice_amount: Decimal | None = None  # prepaid: billed per whole period; None: complimentary
    invoice_rounding: ProrationRounding | None = None
    seats: SeatLink | None = None  # linked to a subscription: access_amount is per seat
    # Edits (update_recurring_commits/credits): (instant, the definition from then on). Each applies
    # to the recurrences whose access starts after its instant; those begun by then stay as they are.
    updates: tuple[tuple[datetime, RecurringGrant], ...] = ()

    def definition_at(self, start: datetime) -> tuple[int, RecurringGrant]:
        """(version, definition) of a recurrence starting at `start`: 0 for this one, k for the
        k-th update made before it starts."""
        found: tuple[int, RecurringGrant] = (0, self)
        for k, (after, definition) in enumerate(self.updates, start=1):
            if after < start:
                found = (k, definition)
        return found


@dataclass(frozen=True, slots=True)
class Recurrence:
    """One commit or credit a recurring grant makes."""

    index: int  # 0 for the first; ids derive from it
    starting_at: datetime  # its period's start (the grant's start for the first)
    period_ending_before: datetime  # its period's end (the grant's end for a cut last one)
    ending_before: datetime  # its access end
    rollover_ending_before: datetime | None  # where what it rolls over lasts until (None: as long as it)
    access_amount: Decimal
    invoice_amount: Decimal | None  # None: nothing to bill
    prorated: bool
    version: int = 0  # the definition it was made from (RecurringGrant.definition_at)
    # Linked to a subscription: (instant, amount) granted by seat increases within its period, each
    # from its instant to the recurrence's access end.
    increases: tuple[tuple[datetime, Decimal], ...] = ()
    # INDIVIDUAL allocation: (seat id, from, amount), one per seat, instead of the amounts above.
    allocations: tuple[tuple[str, datetime, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)
class _Grid:
    anchor: datetime
    first: int  # the index of the cell holding the grant's start
    step: RecurrenceFrequency

    def point(self, k: int) -> datetime:
        return self.step.point(self.anchor, k)


def _grid(recurring: RecurringGrant, schedule: UsageStatementSchedule, contract_start: datetime) -> _Grid:
    if recurring.frequency is not None:
        return _Grid(recurring.starting_at, 0, recurring.frequency)
    anchor = billing_anchor(schedule, contract_start)
    first = grid_index(anchor, schedule.frequency, recurring.starting_at)
    return _Grid(anchor, first, RecurrenceFrequency(schedule.frequency.value))


def grant_end(recurring: RecurringGrant, contract_end: datetime | None) -> datetime | None:
    """When the recurring grant stops: its own end or the contract's, the earlier."""
    ends = [e for e in (recurring.ending_before, contract_end) if e is not None]
    return min(ends) if ends else None


def recurrences(
    recurring: RecurringGrant,
    schedule: UsageStatementSchedule,
    contract_start: datetime,
    contract_end: datetime | None,
    until: datetime | None = None,
) -> tuple[Recurrence, ...]:
    """Every recurrence up to the grant's end, or, when it has none, those whose period has started
    by `until` (as Metronome makes them, at their period's start). At most MAX_RECURRENCES."""
    if until is None and any(grant_end(d, contract_end) is None for d in (recurring, *(u for _, u in recurring.updates))):
        raise ValueError("an open-ended recurring grant needs `until`")
    grid = _grid(recurring, schedule, contract_start)
    found: list[Recurrence] = []
    n = 0
    while n < MAX_RECURRENCES:
        cell_start, cell_end = grid.point(grid.first + n), grid.point(grid.first + n + 1)
        start = max(cell_start, recurring.starting_at)
        version, d = recurring.definition_at(start)
        end = grant_end(d, contract_end)
        if (end is not None and start >= end) or (end is None and until is not None and start > until):
            break
        period_end = cell_end if end is None else min(cell_end, end)
        access_end = grid.point(grid.first + n + d.duration)
        if end is not None:
            access_end = min(access_end, end)
        # the part of the period this recurrence pays for, where proration applies
        paid_start = start if d.proration.first else cell_start
        paid_end = period_end if d.proration.last else cell_end
        prorated = (paid_start, paid_end) != (cell_start, cell_end)
        cell_seconds = Decimal((cell_end - cell_start).total_seconds())
        fraction = PRICING_CONTEXT.divide(Decimal((paid_end - paid_start).total_seconds()), cell_seconds)
        per_period, increases, allocations = d.access_amount, (), ()
        if d.seats is not None and d.seats.individual:
            each = _prorated(d.access_amount, fraction, prorated, d.access_rounding, d.credit_type)
            allocations = tuple((seat_id, start, each) for seat_id in d.seats.seat_ids_at(start)) + tuple(
                (
                    seat_id,
                    at,
                    _prorated(
                        d.access_amount,
                        PRICING_CONTEXT.divide(Decimal((period_end - at).total_seconds()), cell_seconds),
                        d.seats.prorate_increase,
                        d.access_rounding,
                        d.credit_type,
                    ),
                )
                for at, seat_id in d.seats.joined(start, period_end)
            )
            per_period = Decimal(0)
        elif d.seats is not None:
            per_period = PRICING_CONTEXT.multiply(d.access_amount, d.seats.quantity_at(start))
            increases = tuple(
                (
                    at,
                    _prorated(
                        PRICING_CONTEXT.multiply(d.access_amount, added),
                        PRICING_CONTEXT.divide(Decimal((period_end - at).total_seconds()), cell_seconds),
                        d.seats.prorate_increase,
                        d.access_rounding,
                        d.credit_type,
                    ),
                )
                for at, added in d.seats.increases(start, period_end)
            )
        found.append(
            Recurrence(
                n,
                start,
                period_end,
                access_end,
                None,
                _prorated(per_period, fraction, prorated, d.access_rounding, d.credit_type),
                None
                if d.invoice_amount is None
                else _prorated(d.invoice_amount, fraction, prorated, d.invoice_rounding, d.credit_type),
                prorated,
                version,
                increases,
                allocations,
            )
        )
        n += 1
    # What a recurrence rolls over lasts until the next one's access ends.
    linked = [
        replace(r, rollover_ending_before=nxt.ending_before) if nxt.ending_before > r.ending_before else r
        for r, nxt in zip(found, found[1:])
    ]
    return tuple(linked + found[len(linked):])


def _prorated(
    amount: Decimal, fraction: Decimal, prorated: bool, rounding: ProrationRounding | None, credit_type: CreditType
) -> Decimal:
    if not prorated:
        return amount
    precise = PRICING_CONTEXT.multiply(amount, fraction)
    return rounding.round(precise, credit_type) if rounding is not None else credit_type.round(precise)


def recurrence_count(
    recurring: RecurringGrant, schedule: UsageStatementSchedule, contract_start: datetime, contract_end: datetime | None
) -> int | None:
    """How many recurrences a grant with an end makes (None: it has no end), counted without
    making them; more than MAX_RECURRENCES is possible here, and refused by validation."""
    ends = [grant_end(d, contract_end) for d in (recurring, *(u for _, u in recurring.updates))]
    if None in ends:
        return None
    end = max(e for e in ends if e is not None)
    grid = _grid(recurring, schedule, contract_start)
    if grid.step is RecurrenceFrequency.DAILY:
        return -(-(end - grid.point(grid.first)) // DAY)
    if grid.step is RecurrenceFrequency.WEEKLY:
        return -(-(end - grid.point(grid.first)) // WEEK)
    months = Frequency(grid.step.value).months
    assert months is not None
    start = grid.point(grid.first)
    span = (end.year - start.year) * 12 + end.month - start.month
    count = max(span // months - 1, 0)
    while grid.point(grid.first + count) < end:
        count += 1
    return count


def validate_recurring(
    recurring: RecurringGrant,
    schedule: UsageStatementSchedule,
    contract_start: datetime,
    contract_end: datetime | None,
    field_prefix: str,
) -> None:
    """Field names are the create request's under `field_prefix` (e.g. "recurring_credits[0]")."""

    def field(name: str) -> str:
        return f"{field_prefix}.{name}" if field_prefix else name

    if recurring.kind not in (GrantKind.PREPAID, GrantKind.CREDIT):
        raise InvalidInput(field("type"), "recurring commits are PREPAID; recurring credits are CREDIT")
    window(recurring.starting_at, recurring.ending_before, f"{field_prefix}." if field_prefix else "")
    if recurring.starting_at < contract_start:
        raise InvalidInput(field("starting_at"), "must not be before the contract starts")
    non_negative(recurring.access_amount, field("access_amount.unit_price"))
    if recurring.invoice_amount is not None:
        if recurring.kind is GrantKind.CREDIT:
            raise InvalidInput(field("invoice_amount"), "credits are never invoiced")
        non_negative(recurring.invoice_amount, field("invoice_amount.unit_price"))
    if not isinstance(recurring.duration, int) or isinstance(recurring.duration, bool) or recurring.duration < 1:
        raise InvalidInput(field("commit_duration.value"), "must be a whole number of periods, at least 1")
    if recurring.duration > MAX_RECURRENCES:
        raise InvalidInput(field("commit_duration.value"), f"must be at most {MAX_RECURRENCES:,} periods")
    count = recurrence_count(recurring, schedule, contract_start, contract_end)
    if count is not None and count > MAX_RECURRENCES:
        raise InvalidInput(
            field("ending_before"), f"would make {count:,} commits or credits; at most {MAX_RECURRENCES:,} are allowed"
        )
