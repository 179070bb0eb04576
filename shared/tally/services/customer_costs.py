"""A customer's pending costs per UTC day (/v1/customers/{id}/costs), by credit type and line.

Priced as the invoices are: the day breakdowns of the customer's draft invoices (services/
breakdowns.py: each period priced once with a cut at every midnight, so tiers still count from the
period start), from the counters, never from events. A day's cost in a credit type is the sum of
the lines that count in an invoice total; its breakdown lists them by name (and group, when the
line is one group's). Every day of the range is listed, with no credit types when nothing is due.
Pages count days; a page prices only the periods its days overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_COST_DAYS
from tally.billing.pricing import CreditType, LineItem
from tally.billing.time import is_day_aligned
from tally.services.breakdowns import BreakdownService

DAY = timedelta(days=1)
_ALL = 10_000  # breakdowns read per call while gathering a page's days (the days bound them)


@dataclass(slots=True)
class CreditTypeCost:
    credit_type: CreditType
    cost: Decimal = Decimal(0)
    # (name, group key, group value) -> cost, in first-seen order
    lines: dict[tuple[str, str | None, str | None], Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DailyCost:
    starting_at: datetime
    ending_before: datetime
    credit_types: dict[str, CreditTypeCost]


def _group(line: LineItem) -> tuple[str | None, str | None]:
    values = line.presentation_group_values or line.pricing_group_values
    if not values:
        return None, None
    key = next(iter(values))
    return key, values[key]


def _parse_cursor(cursor: str | None, days: int) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit() or not 0 < int(cursor) < days:
        raise InvalidInput("next_page", "is not a cursor this API returned")
    return int(cursor)


class CustomerCostService:
    def __init__(self, breakdowns: BreakdownService) -> None:
        self._breakdowns = breakdowns

    def list(
        self,
        customer_id: str,
        *,
        starting_on: datetime | None,
        ending_before: datetime | None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[DailyCost], str | None]:
        if starting_on is None:
            raise InvalidInput("starting_on", "is required")
        if ending_before is None:
            raise InvalidInput("ending_before", "is required")
        for name, instant in (("starting_on", starting_on), ("ending_before", ending_before)):
            if not is_day_aligned(instant):
                raise InvalidInput(name, "must be at UTC midnight (costs are per day)")
        if ending_before <= starting_on:
            raise InvalidInput("ending_before", "must be after starting_on")
        days = (ending_before - starting_on) // DAY
        if days > MAX_COST_DAYS:
            raise InvalidInput("ending_before", f"must be at most {MAX_COST_DAYS} days after starting_on")
        first = _parse_cursor(cursor, days)
        last = min(days, first + limit)
        page = [
            DailyCost(starting_on + i * DAY, starting_on + (i + 1) * DAY, {}) for i in range(first, last)
        ]
        low, high = page[0].starting_at, page[-1].ending_before
        next_cursor: str | None = ""
        while next_cursor is not None:
            breakdowns, next_cursor = self._breakdowns.list(
                customer_id, starting_on=low, ending_before=high, window_size="DAY",
                cursor=next_cursor or None, limit=_ALL,
            )
            for breakdown in breakdowns:
                day = page[(breakdown.window.starting_at - low) // DAY]
                for line in breakdown.draft.invoice.line_items:
                    if not line.counts_in_total:
                        continue
                    cost = day.credit_types.setdefault(line.credit_type.id, CreditTypeCost(line.credit_type))
                    cost.cost += line.total
                    key = (line.name, *_group(line))
                    cost.lines[key] = cost.lines.get(key, Decimal(0)) + line.total
        return page, str(last) if last < days else None
