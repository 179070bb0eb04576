"""Invoice line items. A line's total is its exact total rounded once, by its credit type
(`line_from_charge`; usage rows are rounded the same way where rating makes them).

A draft invoice of a big contract holds thousands of usage lines, so rating keeps them compact: a
product's usage lines are a `UsageRun` of `UsageRow`s, each row naming the `UsageSpan` (product,
credit type, segment) it shares with the other rows of its segment. An invoice's `LineItems` hold
runs and lines together, in line order, and turn runs into `LineItem`s only when asked: totals,
the invoice JSON and composite spend are read from the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import reduce
from typing import ClassVar, Iterator, Mapping, NamedTuple, Sequence, overload

from tally.billing.pricing.catalog import ProductType
from tally.billing.pricing.money import PRICING_CONTEXT, CreditType
from tally.billing.pricing.pricers import Charge, TierCharge
from tally.billing.pricing.rates import Rate
from tally.billing.values import hot_value


class CommitPrice(NamedTuple):
    """What a usage line costs a grant paying for it, where a commit-specific override prices that
    draw (overrides.CommitPricing): rounded once, like the line's total."""

    grant_id: str | None  # None: any grant no override names
    target: str  # "LIST_RATE": what LIST_RATE grants spend; "COMMIT_RATE": what COMMIT_RATE grants spend
    total: Decimal


class LineType(str, Enum):
    USAGE = "usage"  # usage and composite products
    SUBSCRIPTION = "subscription"
    SCHEDULED = "scheduled"
    CPU_CONVERSION = "cpu_conversion"  # custom pricing unit spend converted to the fiat credit type
    COMMIT_PURCHASE = "commit_purchase"  # an invoice schedule item of a prepaid commit
    POSTPAID_TRUEUP = "postpaid_trueup"  # what a postpaid commit's usage did not consume
    APPLIED_COMMIT_OR_CREDIT = "applied_commit_or_credit"  # a drawdown, negative


@hot_value
class SubLineItem:
    name: str
    quantity: Decimal
    subtotal: Decimal  # exact
    tiers: tuple[TierCharge, ...] = ()


@hot_value
class LineOrigin:
    """Where a line of a USAGE_CONSOLIDATED invoice was copied from (metronome-sdk LineItemOrigin)."""

    contract_id: str
    customer_id: str
    invoice_id: str
    line_item_id: str


@hot_value
class LineItem:
    type: LineType
    name: str
    product_id: str
    product_type: ProductType
    credit_type: CreditType
    quantity: Decimal
    unit_price: Decimal | None  # None when the quantity spans several tier prices
    total: Decimal  # precise_total rounded once, to the credit type's precision
    precise_total: Decimal
    starting_at: datetime
    ending_before: datetime | None  # None for a charge at one instant (scheduled charges)
    pricing_group_values: Mapping[str, str | None] | None = None
    presentation_group_values: Mapping[str, str | None] | None = None
    sub_line_items: tuple[SubLineItem, ...] = ()
    is_prorated: bool = False
    list_price: Rate | None = None  # the rate card rate, when an override changed the price
    commit_total: Decimal | None = None  # usage lines: the same quantity at the rate's commit price
    subscription_id: str | None = None
    scheduled_charge_id: str | None = None
    converted_credit_type: CreditType | None = None  # CPU_CONVERSION: the unit converted from
    commit_id: str | None = None  # the commit or credit applied, bought or trued up
    commit_segment_id: str | None = None
    commit_type: str | None = None  # PREPAID, POSTPAID or CREDIT
    # Postpaid drawdowns are shown but paid in arrears (by the true-up), so they are not in the total.
    counts_in_total: bool = True
    scheduled_at: datetime | None = None  # on the SCHEDULED invoice issued at this instant
    commit_prices: tuple[CommitPrice, ...] = ()  # usage lines under commit-specific overrides
    discount_id: str | None = None  # a discount's (negative) scheduled line
    professional_service_id: str | None = None  # a professional service's scheduled line
    metadata: str | None = None  # professional service lines: the client's own note
    origin: LineOrigin | None = None  # a consolidated invoice's line: the constituent line it copies


def line_from_charge(
    charge: Charge,
    type: LineType,
    name: str,
    product_id: str,
    product_type: ProductType,
    credit_type: CreditType,
    starting_at: datetime,
    ending_before: datetime | None,
    pricing_group_values: Mapping[str, str | None] | None = None,
    presentation_group_values: Mapping[str, str | None] | None = None,
    list_price: Rate | None = None,
    is_prorated: bool = False,
    commit_total: Decimal | None = None,
    **extra: object,
) -> LineItem:
    """The line of a charge, its total rounded once. Positional arguments are allowed: usage lines
    are built by the thousand per invoice."""
    sub_lines = _sub_lines(name, charge.quantity, charge.precise_total, charge.tiers)
    return LineItem(
        type,
        name,
        product_id,
        product_type,
        credit_type,
        charge.quantity,
        charge.unit_price,
        credit_type.round(charge.precise_total),
        charge.precise_total,
        starting_at,
        ending_before,
        pricing_group_values,
        presentation_group_values,
        sub_lines,
        is_prorated,
        list_price,
        commit_total,  # positional: a keyword costs a search through the 26 parameters, per line
        **extra,  # type: ignore[arg-type]
    )


def _sub_lines(name: str, quantity: Decimal, precise_total: Decimal, tiers: tuple[TierCharge, ...]) -> tuple[SubLineItem, ...]:
    """A line's sub line items: its graduated detail, when it has tiers."""
    return (SubLineItem(name, quantity, precise_total, tiers),) if tiers else ()


# -- usage lines, compact ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class UsageSpan:
    """What the usage lines of one billed segment of a product share. Compared by identity: rating
    makes one per segment and pricing class, and the rows of that segment point to it."""

    name: str
    product_id: str
    credit_type: CreditType
    starting_at: datetime
    ending_before: datetime
    list_price: Rate | None  # the rate card rate, when an override changed the price


class UsageRow(NamedTuple):
    """One usage line of a span: the fields of its LineItem that are its own."""

    span: UsageSpan
    pricing_group_values: Mapping[str, str | None] | None
    presentation_group_values: Mapping[str, str | None] | None
    quantity: Decimal
    unit_price: Decimal | None
    total: Decimal
    precise_total: Decimal
    tiers: tuple[TierCharge, ...]  # the graduated detail; () for a single price
    commit_total: Decimal | None
    commit_prices: tuple[CommitPrice, ...] = ()

    def line_item(self) -> LineItem:
        span = self.span
        quantity, precise, tiers = self.quantity, self.precise_total, self.tiers
        return LineItem(
            LineType.USAGE,
            span.name,
            span.product_id,
            ProductType.USAGE,
            span.credit_type,
            quantity,
            self.unit_price,
            self.total,
            precise,
            span.starting_at,
            span.ending_before,
            self.pricing_group_values,
            self.presentation_group_values,
            _sub_lines(span.name, quantity, precise, tiers),
            False,
            span.list_price,
            self.commit_total,
            **({"commit_prices": self.commit_prices} if self.commit_prices else _NO_EXTRA),
        )


_NO_EXTRA: dict = {}


@dataclass(frozen=True, slots=True, eq=False)
class UsageRun:
    """Usage lines of one product, name and credit type, in line order (pricing group values,
    presentation group values, start), as rows. None has quantity 0. `total` is the exact sum of
    the rows' totals. It answers what assembling an invoice asks of a line with what every usage
    line answers (its kind, counted in the total, on the period's USAGE invoice)."""

    type: ClassVar[LineType] = LineType.USAGE
    counts_in_total: ClassVar[bool] = True
    scheduled_at: ClassVar[None] = None

    name: str
    product_id: str
    credit_type: CreditType
    rows: tuple[UsageRow, ...]
    total: Decimal

    @staticmethod
    def of(rows: Sequence[UsageRow]) -> UsageRun:
        """The run of rows sharing their span's product, name and credit type, in line order."""
        span = rows[0].span
        total = reduce(PRICING_CONTEXT.add, [row.total for row in rows], Decimal(0))
        return UsageRun(span.name, span.product_id, span.credit_type, tuple(rows), total)

    def line_items(self) -> list[LineItem]:
        return [row.line_item() for row in self.rows]


LinePart = LineItem | UsageRun


class LineItems(Sequence[LineItem]):
    """An invoice's lines, in order: lines and usage runs, each run standing for its rows' lines,
    which are made on first access. Equal to any sequence of the same LineItems."""

    __slots__ = ("parts", "_items", "_length")

    def __init__(self, parts: Sequence[LinePart] = ()) -> None:
        self.parts: tuple[LinePart, ...] = tuple(parts)
        self._items: tuple[LineItem, ...] | None = None
        self._length = sum(len(p.rows) if type(p) is UsageRun else 1 for p in self.parts)

    def _all(self) -> tuple[LineItem, ...]:
        if self._items is None:
            items: list[LineItem] = []
            for part in self.parts:
                if type(part) is UsageRun:
                    items += part.line_items()
                else:
                    items.append(part)  # type: ignore[arg-type]
            self._items = tuple(items)
        return self._items

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[LineItem]:
        return iter(self._all())

    @overload
    def __getitem__(self, index: int) -> LineItem: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[LineItem, ...]: ...
    def __getitem__(self, index):  # type: ignore[override]
        return self._all()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LineItems):
            return self._all() == other._all()
        if isinstance(other, (tuple, list)):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return f"LineItems({list(self._all())!r})"
