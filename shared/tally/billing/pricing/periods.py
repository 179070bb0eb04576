"""Billing periods from a contract's usage statement schedule.

Period boundaries sit on a grid: the anchor plus k whole periods, for every integer k. Each grid
point is computed from the anchor directly (never by stepping from the previous one), so a
month-end anchor clamps per month (Jan 31, Feb 28, Mar 31) instead of drifting to the 28th.
A contract's periods are the grid cells clipped to [contract start, contract end): the first and
last may be partial.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from tally.billing.errors import InvalidInput
from tally.billing.pricing.validation import hour_aligned
from tally.billing.time import UTC

WEEK = timedelta(days=7)


class Frequency(str, Enum):
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    ANNUAL = "ANNUAL"
    WEEKLY = "WEEKLY"

    @property
    def months(self) -> int | None:
        return {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}.get(self.value)


class BillingDay(str, Enum):
    FIRST_OF_MONTH = "FIRST_OF_MONTH"
    CONTRACT_START = "CONTRACT_START"
    CUSTOM_DATE = "CUSTOM_DATE"


@dataclass(frozen=True, slots=True)
class UsageStatementSchedule:
    frequency: Frequency = Frequency.MONTHLY
    day: BillingDay = BillingDay.FIRST_OF_MONTH
    billing_anchor_date: datetime | None = None  # CUSTOM_DATE only
    # Usage invoices are generated for the periods ending after it only (None: from the contract's
    # start); the earlier ones are left to createHistoricalInvoices. A billing period's start.
    invoice_generation_starting_at: datetime | None = None

    def generates_usage_invoice(self, period: Period) -> bool:
        start = self.invoice_generation_starting_at
        return start is None or period.ending_before > start


@dataclass(frozen=True, slots=True)
class Period:
    starting_at: datetime  # inclusive
    ending_before: datetime  # exclusive

    def contains(self, instant: datetime) -> bool:
        return self.starting_at <= instant < self.ending_before

    @property
    def length(self) -> timedelta:
        return self.ending_before - self.starting_at


def validate_schedule(schedule: UsageStatementSchedule, field: str = "usage_statement_schedule") -> None:
    if schedule.day is BillingDay.CUSTOM_DATE:
        if schedule.billing_anchor_date is None:
            raise InvalidInput(f"{field}.billing_anchor_date", "is required when day is CUSTOM_DATE")
        hour_aligned(schedule.billing_anchor_date, f"{field}.billing_anchor_date")  # periods cut counters at hours
    elif schedule.billing_anchor_date is not None:
        raise InvalidInput(f"{field}.billing_anchor_date", "is only allowed when day is CUSTOM_DATE")


def billing_anchor(schedule: UsageStatementSchedule, contract_start: datetime) -> datetime:
    """The grid point every period boundary is counted from."""
    start = contract_start.astimezone(UTC)
    if schedule.day is BillingDay.CONTRACT_START:
        return start
    if schedule.day is BillingDay.CUSTOM_DATE:
        assert schedule.billing_anchor_date is not None, "validate_schedule first"
        return schedule.billing_anchor_date.astimezone(UTC)
    return start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def grid_point(anchor: datetime, frequency: Frequency, k: int) -> datetime:
    """The k-th boundary after (k < 0: before) the anchor."""
    if frequency.months is None:
        return anchor + k * WEEK
    months = anchor.month - 1 + k * frequency.months
    year, month = anchor.year + months // 12, months % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def grid_index(anchor: datetime, frequency: Frequency, instant: datetime) -> int:
    """The k whose grid cell [point(k), point(k+1)) holds the instant."""
    instant = instant.astimezone(UTC)
    if frequency.months is None:
        return (instant - anchor) // WEEK
    k = ((instant.year - anchor.year) * 12 + instant.month - anchor.month) // frequency.months
    while grid_point(anchor, frequency, k) > instant:
        k -= 1
    while grid_point(anchor, frequency, k + 1) <= instant:
        k += 1
    return k


def grid_cell(anchor: datetime, frequency: Frequency, instant: datetime) -> Period:
    k = grid_index(anchor, frequency, instant)
    return Period(grid_point(anchor, frequency, k), grid_point(anchor, frequency, k + 1))


def period_containing(
    schedule: UsageStatementSchedule, contract_start: datetime, contract_end: datetime | None, instant: datetime
) -> Period | None:
    """The contract's billing period holding an instant, or None outside the contract."""
    if instant < contract_start or (contract_end is not None and instant >= contract_end):
        return None
    cell = grid_cell(billing_anchor(schedule, contract_start), schedule.frequency, instant)
    end = cell.ending_before if contract_end is None else min(cell.ending_before, contract_end)
    return Period(max(cell.starting_at, contract_start.astimezone(UTC)), end)


def billing_periods(
    schedule: UsageStatementSchedule,
    contract_start: datetime,
    contract_end: datetime | None,
    until: datetime | None = None,
) -> list[Period]:
    """Every period of the contract in order, up to the contract's end or the one holding `until`."""
    if contract_end is None and until is None:
        raise ValueError("an open-ended contract needs `until`")
    periods: list[Period] = []
    cursor: datetime | None = contract_start
    while cursor is not None:
        period = period_containing(schedule, contract_start, contract_end, cursor)
        if period is None:
            break
        periods.append(period)
        if until is not None and period.ending_before > until:
            break
        cursor = period.ending_before
    return periods
