"""Invoice breakdowns: a customer's draft invoices split into hour or day windows.

A period is priced once, with a cut at every window edge inside it, so no usage or composite line
straddles a window while tiers still count from the period start (a tier crossed on day 3 stays
crossed on day 4). Each line then goes to the window holding the instant it starts at, clamped to
the period start (an in-arrears service period may begin in an earlier period, yet it is charged
on this one), and each window's lines are assembled into invoices as a period's are:
- the period's USAGE invoice has a breakdown in every window (empty ones too), and keeps its own
  id, type and period; custom pricing unit spend is converted to fiat per window;
- a SCHEDULED invoice (scheduled charges, in-advance subscriptions) is one breakdown, in the window
  holding its issue instant.

Windows are the UTC hour or day grid of the requested range, clipped to the range and to the
invoice's period. Each window line is rounded once, as any invoice line is: the precise amounts of
a period's windows add up to the period's, and the rounded ones may differ from the invoice total
by the rounding of the extra lines the cuts create.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Mapping

from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_WINDOWS
from tally.billing.pricing import (
    InvoiceType,
    LineItem,
    LineType,
    Period,
    Product,
    UsageSource,
    assemble_invoices,
    build_draft_invoices,
)
from tally.billing.time import is_day_aligned, is_hour_aligned
from tally.services.invoices import DraftInvoice, DuePeriod, InvoiceService, invoice_id

_CURSOR = re.compile(r"^(\d{1,9})\.(\d{1,9})$")


class WindowSize(str, Enum):
    HOUR = "HOUR"
    DAY = "DAY"

    @property
    def length(self) -> timedelta:
        return timedelta(hours=1) if self is WindowSize.HOUR else timedelta(days=1)


@dataclass(frozen=True, slots=True)
class BreakdownRange:
    """A validated request range: [starting_on, ending_before) on the window grid."""

    starting_on: datetime
    ending_before: datetime
    window_size: WindowSize

    @classmethod
    def parse(cls, starting_on: datetime | None, ending_before: datetime | None, window_size: str | None) -> BreakdownRange:
        if starting_on is None:
            raise InvalidInput("starting_on", "is required")
        if ending_before is None:
            raise InvalidInput("ending_before", "is required")
        try:
            size = WindowSize((window_size or WindowSize.DAY.value).upper())
        except ValueError as exc:
            raise InvalidInput("window_size", "must be HOUR or DAY") from exc
        aligned, rule = (
            (is_hour_aligned, "must be on a whole UTC hour for HOUR windows")
            if size is WindowSize.HOUR
            else (is_day_aligned, "must be at UTC midnight for DAY windows")
        )
        for field, instant in (("starting_on", starting_on), ("ending_before", ending_before)):
            if not aligned(instant):
                raise InvalidInput(field, rule)
        if ending_before <= starting_on:
            raise InvalidInput("ending_before", "must be after starting_on")
        if ending_before - starting_on > MAX_WINDOWS * size.length:
            raise InvalidInput(
                "ending_before", f"must be at most {MAX_WINDOWS} {size.value} windows after starting_on"
            )
        return cls(starting_on, ending_before, size)

    def windows(self, period: Period) -> list[Period]:
        """The grid windows overlapping `period`, clipped to it and to the range, oldest first."""
        low, high = max(self.starting_on, period.starting_at), min(self.ending_before, period.ending_before)
        step = self.window_size.length
        edge = self.starting_on + ((low - self.starting_on) // step) * step
        windows = []
        while edge < high:
            windows.append(Period(max(edge, low), min(edge + step, high)))
            edge += step
        return windows


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One window of a draft invoice: the invoice's id, type and period, the window's lines and total."""

    draft: DraftInvoice
    window: Period


def lines_by_window(lines: list[LineItem], period: Period, windows: list[Period]) -> list[list[LineItem]]:
    """The lines, one list per window; lines starting outside every window are left out."""
    starts = [w.starting_at for w in windows]
    grouped: list[list[LineItem]] = [[] for _ in windows]
    for line in lines:
        at = max(line.starting_at, period.starting_at)
        index = bisect_right(starts, at) - 1
        if index >= 0 and at < windows[index].ending_before:
            grouped[index].append(line)
    return grouped


def _cursor(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 0
    match = _CURSOR.match(text)
    if match is None:
        raise InvalidInput("next_page", "is not a cursor this API returned")
    return int(match.group(1)), int(match.group(2))


class BreakdownService:
    def __init__(self, invoices: InvoiceService) -> None:
        self._invoices = invoices

    def list(
        self,
        customer_id: str,
        *,
        starting_on: datetime | None,
        ending_before: datetime | None,
        window_size: str | None = None,
        status: str | None = None,
        credit_type_id: str | None = None,
        newest_first: bool = False,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Breakdown], str | None]:
        """A page of breakdowns and the cursor of the next page (None: last page).

        Order: by period, then window, then as a period's invoices are (USAGE in fiat first, then
        other credit types, then SCHEDULED by issue instant). The cursor is
        "<period position>.<breakdown position in that period>", so a page prices only its own
        periods, each once."""
        requested = BreakdownRange.parse(starting_on, ending_before, window_size)
        if status is not None and status.upper() not in ("DRAFT", "FINALIZED", "VOID"):
            raise InvalidInput("status", "must be DRAFT, FINALIZED or VOID")
        position, skip = _cursor(cursor)
        customer, due = self._invoices.due_periods(customer_id)
        if status is not None and status.upper() != "DRAFT":
            return [], None  # nothing is finalized or voided yet
        due = [
            d
            for d in due
            if d.period.starting_at < requested.ending_before and requested.starting_on < d.period.ending_before
        ]
        if newest_first:
            due.reverse()
        usage, products = self._invoices.pricing_inputs(customer)
        page: list[Breakdown] = []
        while position < len(due) and len(page) < limit:
            breakdowns = self._breakdowns(due[position], requested, products, usage, credit_type_id, newest_first)
            taken = breakdowns[skip : skip + limit - len(page)]
            page += taken
            skip += len(taken)
            if skip >= len(breakdowns):
                position, skip = position + 1, 0
        return page, f"{position}.{skip}" if position < len(due) else None

    @staticmethod
    def _breakdowns(
        due: DuePeriod,
        requested: BreakdownRange,
        products: Mapping[str, Product],
        usage: UsageSource,
        credit_type_id: str | None,
        newest_first: bool,
    ) -> list[Breakdown]:
        period, contract = due.period, due.contract
        windows = requested.windows(period)
        edges = {instant for w in windows for instant in (w.starting_at, w.ending_before)}
        cuts = frozenset(e for e in edges if period.starting_at < e < period.ending_before)
        priced = build_draft_invoices(contract, products, period, usage, cuts=cuts)
        # Conversion lines sum a whole invoice's custom-unit spend; each window converts its own.
        lines = [l for invoice in priced for l in invoice.line_items if l.type is not LineType.CPU_CONVERSION]
        per_window: list[list[Breakdown]] = []
        for window, window_lines in zip(windows, lines_by_window(lines, period, windows)):
            breakdowns = []
            for invoice in assemble_invoices(contract, window, window_lines):
                if invoice.type is InvoiceType.USAGE:
                    invoice = replace(invoice, starting_at=period.starting_at, ending_before=period.ending_before)
                if credit_type_id is not None and invoice.credit_type.id != credit_type_id:
                    continue
                id_ = invoice_id(contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                breakdowns.append(Breakdown(DraftInvoice(id_, invoice, contract, products=products), window))
            per_window.append(breakdowns)
        if newest_first:
            per_window.reverse()
        return [b for window in per_window for b in window]
