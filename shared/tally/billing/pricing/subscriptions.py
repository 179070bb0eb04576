"""Subscriptions and scheduled charges: the lines that do not come from metered usage.

Service periods of a subscription are cells of the grid its billing frequency draws from the
contract's billing anchor (or its own, billing_cycle_config.anchor_date), clipped to the
subscription's active time. Which invoice a charge
lands on is decided by the instant it is charged at:
- ADVANCE: at the start of the service period, for the quantity then (a SCHEDULED invoice issued
  then). A quantity increase later in the period is charged for the units above the most already
  charged in that period, for the rest of the period (decreases are not refunded), and
  `proration.invoice_behavior` says when:
  - BILL_IMMEDIATELY: when it happens, on a SCHEDULED invoice issued then;
  - BILL_ON_NEXT_COLLECTION_DATE: in arrears, at the end of the service period, on the USAGE
    invoice of the billing period that service period ends in.
- ARREARS: at the end of the service period, for each stretch of constant quantity and price, on
  the USAGE invoice of the billing period it ends in. Metronome allows only
  BILL_ON_NEXT_COLLECTION_DATE for ARREARS, and that is what ARREARS does.
Proration is by exact time: the charged stretch over the whole grid cell, in microseconds. Without
proration a partial period costs a whole one (stretches then weigh by their share of the active
time, so a full period's charge never exceeds quantity × price). `proration.rounding` rounds a
prorated line's total, once, to its decimal places with its method instead of the credit type's.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import Enum

from tally.billing.errors import InvalidInput
from tally.billing.pricing.catalog import Product, ProductType
from tally.billing.pricing.lines import LineItem, LineType, line_from_charge
from tally.billing.pricing.money import PRICING_CONTEXT, USD_CENTS, CreditType
from tally.billing.pricing.overrides import EffectivePricing, PriceBook
from tally.billing.pricing.periods import Frequency, Period, grid_index, grid_point
from tally.billing.pricing.pricers import price_flat, price_subscription
from tally.billing.pricing.rates import split_at
from tally.billing.pricing.validation import aware, hour_aligned, non_negative, window

MICROSECOND = timedelta(microseconds=1)


class CollectionSchedule(str, Enum):
    ADVANCE = "ADVANCE"
    ARREARS = "ARREARS"


class InvoiceBehavior(str, Enum):
    """When a mid-period quantity increase of an ADVANCE subscription is billed."""

    BILL_IMMEDIATELY = "BILL_IMMEDIATELY"
    BILL_ON_NEXT_COLLECTION_DATE = "BILL_ON_NEXT_COLLECTION_DATE"


class ProrationRoundingMethod(str, Enum):
    HALF_UP = "HALF_UP"
    FLOOR = "FLOOR"
    CEILING = "CEILING"


_DECIMAL_ROUNDING = {
    ProrationRoundingMethod.HALF_UP: ROUND_HALF_UP,
    ProrationRoundingMethod.FLOOR: ROUND_FLOOR,
    ProrationRoundingMethod.CEILING: ROUND_CEILING,
}
# Bounds of proration.rounding.decimal_places: -12 rounds to 10^12 units ($10 billion in cents).
MIN_DECIMAL_PLACES, MAX_DECIMAL_PLACES = -12, 12


@dataclass(frozen=True, slots=True)
class ProrationRounding:
    """Metronome's `proration.rounding`: a prorated amount rounded to `decimal_places` of the credit
    type's unit (negative: to a power of ten; -2 in cents is whole dollars) with `method`."""

    decimal_places: int
    method: ProrationRoundingMethod

    def round(self, amount: Decimal, credit_type: CreditType) -> Decimal:
        """`amount` rounded once. A line never keeps more places than its credit type, so more
        decimal places than that round to the credit type's, still with this method."""
        places = min(self.decimal_places, credit_type.precision)
        rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=_DECIMAL_ROUNDING[self.method], context=PRICING_CONTEXT)
        # 1.2E+3 -> 1200: a total is shown as a plain number.
        return rounded.quantize(Decimal(1), context=PRICING_CONTEXT) if places < 0 else rounded


@dataclass(frozen=True, slots=True)
class QuantityChange:
    starting_at: datetime
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    product_id: str
    collection_schedule: CollectionSchedule
    billing_frequency: Frequency
    starting_at: datetime
    initial_quantity: Decimal
    is_prorated: bool = True
    ending_before: datetime | None = None
    quantity_updates: tuple[QuantityChange, ...] = ()  # sorted by starting_at
    name: str | None = None
    invoice_behavior: InvoiceBehavior = InvoiceBehavior.BILL_IMMEDIATELY  # ADVANCE only (see the module)
    proration_rounding: ProrationRounding | None = None
    # billing_cycle_config: its own anchor (None: the contract's billing anchor), and in-advance
    # charges on the USAGE invoice of the billing period they start in rather than their own
    # SCHEDULED invoice (ON_USAGE_INVOICE).
    billing_anchor: datetime | None = None
    advance_on_usage_invoice: bool = False

    def anchor(self, contract_anchor: datetime) -> datetime:
        """Where its service periods' grid is drawn from."""
        return self.billing_anchor if self.billing_anchor is not None else contract_anchor

    def quantity_at(self, instant: datetime) -> Decimal:
        index = bisect_right([u.starting_at for u in self.quantity_updates], instant)
        return self.quantity_updates[index - 1].quantity if index else self.initial_quantity

    @property
    def quantity_schedule(self) -> tuple[tuple[datetime, datetime | None, Decimal], ...]:
        """(starting_at, ending_before, quantity) from the start: getSubscriptionQuantityHistory."""
        starts = [self.starting_at, *(u.starting_at for u in self.quantity_updates)]
        quantities = [self.initial_quantity, *(u.quantity for u in self.quantity_updates)]
        ends = [*starts[1:], self.ending_before]
        return tuple(zip(starts, ends, quantities))


@dataclass(frozen=True, slots=True)
class ScheduleItem:
    timestamp: datetime
    unit_price: Decimal  # Metronome's `amount` is unit_price with quantity 1
    quantity: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class ScheduledCharge:
    id: str
    product_id: str  # a FIXED product
    schedule_items: tuple[ScheduleItem, ...]
    name: str | None = None
    credit_type: CreditType = USD_CENTS
    do_not_invoice: bool = False  # kept on the contract, never billed


def validate_subscription(subscription: Subscription, field: str) -> None:
    window(subscription.starting_at, subscription.ending_before, f"{field}.")
    if not isinstance(subscription.collection_schedule, CollectionSchedule):
        raise InvalidInput(f"{field}.collection_schedule", "must be ADVANCE or ARREARS")
    if not isinstance(subscription.billing_frequency, Frequency):
        raise InvalidInput(f"{field}.subscription_rate.billing_frequency", "must be MONTHLY, QUARTERLY, ANNUAL or WEEKLY")
    non_negative(subscription.initial_quantity, f"{field}.initial_quantity")
    if not isinstance(subscription.invoice_behavior, InvoiceBehavior):
        raise InvalidInput(f"{field}.proration.invoice_behavior", "must be BILL_IMMEDIATELY or BILL_ON_NEXT_COLLECTION_DATE")
    rounding = subscription.proration_rounding
    if rounding is not None:
        if not isinstance(rounding.method, ProrationRoundingMethod):
            raise InvalidInput(f"{field}.proration.rounding.rounding_method", "must be HALF_UP, FLOOR or CEILING")
        if not isinstance(rounding.decimal_places, int) or not MIN_DECIMAL_PLACES <= rounding.decimal_places <= MAX_DECIMAL_PLACES:
            raise InvalidInput(
                f"{field}.proration.rounding.decimal_places",
                f"must be a whole number from {MIN_DECIMAL_PLACES} to {MAX_DECIMAL_PLACES}",
            )
    previous = subscription.starting_at
    for index, update in enumerate(subscription.quantity_updates):
        hour_aligned(update.starting_at, f"{field}.quantity_updates[{index}].starting_at")
        if update.starting_at <= previous:
            raise InvalidInput(f"{field}.quantity_updates[{index}].starting_at", "must be after the previous change")
        if subscription.ending_before is not None and update.starting_at >= subscription.ending_before:
            raise InvalidInput(f"{field}.quantity_updates[{index}].starting_at", "must be before the subscription ends")
        non_negative(update.quantity, f"{field}.quantity_updates[{index}].quantity")
        previous = update.starting_at


def validate_scheduled_charge(charge: ScheduledCharge, field: str) -> None:
    if not charge.schedule_items:
        raise InvalidInput(f"{field}.schedule.schedule_items", "must hold at least one item")
    for index, item in enumerate(charge.schedule_items):
        prefix = f"{field}.schedule.schedule_items[{index}]"
        aware(item.timestamp, f"{prefix}.timestamp")
        non_negative(item.unit_price, f"{prefix}.unit_price")
        non_negative(item.quantity, f"{prefix}.quantity")


@dataclass(frozen=True, slots=True)
class SubscriptionPeriods:
    """A subscription's billing periods around an instant (Metronome's `billing_periods`): each a
    cell of the grid its billing frequency draws from the contract's billing anchor, clipped to the
    subscription's active time; None where there is no such period."""

    previous: Period | None
    current: Period | None
    next: Period | None


def subscription_periods(
    subscription: Subscription, anchor: datetime, contract_end: datetime | None, now: datetime
) -> SubscriptionPeriods:
    """The period holding `now`, the one before and the one after. Before the subscription starts
    only `next` (its first period) is given; after it ends only `previous` (its last)."""
    frequency = subscription.billing_frequency
    ends = [e for e in (subscription.ending_before, contract_end) if e is not None]
    active_start, active_end = subscription.starting_at, min(ends) if ends else None

    def clipped(k: int) -> Period | None:
        start = max(grid_point(anchor, frequency, k), active_start)
        end = grid_point(anchor, frequency, k + 1)
        if active_end is not None:
            end = min(end, active_end)
        return Period(start, end) if start < end else None

    if now < active_start:
        return SubscriptionPeriods(None, None, clipped(grid_index(anchor, frequency, active_start)))
    if active_end is not None and now >= active_end:
        return SubscriptionPeriods(clipped(grid_index(anchor, frequency, active_end - MICROSECOND)), None, None)
    k = grid_index(anchor, frequency, now)
    return SubscriptionPeriods(clipped(k - 1), clipped(k), clipped(k + 1))


def _fraction(part: timedelta, whole: timedelta) -> Decimal:
    return PRICING_CONTEXT.divide(Decimal(part // MICROSECOND), Decimal(whole // MICROSECOND))


def subscription_lines(
    subscription: Subscription,
    product: Product,
    book: PriceBook,
    anchor: datetime,
    contract_end: datetime | None,
    period: Period,
) -> list[LineItem]:
    """The subscription's charges that land on the invoice for `period`."""
    ends = [e for e in (subscription.ending_before, contract_end) if e is not None]
    active_start, active_end = subscription.starting_at, min(ends) if ends else None
    low = max(period.starting_at, active_start)
    high = period.ending_before if active_end is None else min(period.ending_before, active_end)
    if low >= high:
        return []
    frequency = subscription.billing_frequency
    lines: list[LineItem] = []
    for k in range(grid_index(anchor, frequency, low), grid_index(anchor, frequency, high - MICROSECOND) + 1):
        cell = Period(grid_point(anchor, frequency, k), grid_point(anchor, frequency, k + 1))
        start = max(cell.starting_at, active_start)
        end = cell.ending_before if active_end is None else min(cell.ending_before, active_end)
        if start >= end:
            continue
        if subscription.collection_schedule is CollectionSchedule.ADVANCE:
            lines += _advance(subscription, product, book, cell, start, end, period)
        elif period.starting_at < end <= period.ending_before:
            lines += _arrears(subscription, product, book, cell, start, end)
    return lines


def _pricing(subscription: Subscription, product: Product, book: PriceBook, at: datetime) -> EffectivePricing | None:
    pricing = book.pricing(product.id, product.at(at), at, billing_frequency=subscription.billing_frequency)
    return pricing if pricing is not None and pricing.entitled else None


def _line(
    subscription: Subscription,
    product: Product,
    pricing: EffectivePricing,
    quantity: Decimal,
    fraction: Decimal,
    start: datetime,
    end: datetime,
) -> LineItem:
    charge = price_subscription(pricing.bands, quantity, fraction)
    is_prorated = subscription.is_prorated and fraction != 1
    line = line_from_charge(
        charge,
        type=LineType.SUBSCRIPTION,
        name=subscription.name or product.at(start).name,
        product_id=product.id,
        product_type=ProductType.SUBSCRIPTION,
        credit_type=pricing.credit_type,
        starting_at=start,
        ending_before=end,
        is_prorated=is_prorated,
        list_price=pricing.list_rate if pricing.overridden else None,
        subscription_id=subscription.id,
    )
    rounding = subscription.proration_rounding
    if is_prorated and rounding is not None:
        # The line's one rounding is the proration's, from the exact total.
        line = replace(line, total=rounding.round(line.precise_total, line.credit_type))
    return line


def _advance(
    subscription: Subscription,
    product: Product,
    book: PriceBook,
    cell: Period,
    start: datetime,
    end: datetime,
    period: Period,
) -> list[LineItem]:
    lines = []
    charged = subscription.quantity_at(start)
    charges = [(start, charged)]
    for update in subscription.quantity_updates:
        if start < update.starting_at < end and update.quantity > charged:
            charges.append((update.starting_at, update.quantity - charged))
            charged = update.quantity
    # An increase billed on the next collection date lands where an in-arrears charge would.
    deferred_here = period.starting_at < end <= period.ending_before
    for at, quantity in charges:
        billed_here = period.contains(at) if billed_in_advance(subscription, cell, at) else deferred_here
        if not billed_here or quantity == 0:
            continue
        pricing = _pricing(subscription, product, book, at)
        if pricing is None:
            continue
        fraction = _fraction(end - at, cell.length) if subscription.is_prorated else Decimal(1)
        lines.append(_line(subscription, product, pricing, quantity, fraction, at, end))
    return lines


def billed_in_advance(subscription: Subscription, cell: Period, charged_from: datetime) -> bool:
    """Whether the subscription's charge for service from `charged_from` in the grid cell `cell` is
    billed when that service starts (a SCHEDULED invoice issued then) rather than at the end of the
    cell (the USAGE invoice). An ADVANCE subscription bills each period's start in advance, and a
    mid-period increase too unless it is BILL_ON_NEXT_COLLECTION_DATE."""
    if subscription.collection_schedule is not CollectionSchedule.ADVANCE:
        return False
    if subscription.invoice_behavior is InvoiceBehavior.BILL_IMMEDIATELY:
        return True
    return charged_from in (cell.starting_at, subscription.starting_at)


def charge_billed_in_advance(subscription: Subscription, anchor: datetime, charged_from: datetime) -> bool:
    """`billed_in_advance` for a line of the subscription starting at `charged_from`: the grid cell
    is the one of its billing frequency from the contract's anchor that holds that instant."""
    frequency = subscription.billing_frequency
    k = grid_index(anchor, frequency, charged_from)
    cell = Period(grid_point(anchor, frequency, k), grid_point(anchor, frequency, k + 1))
    return billed_in_advance(subscription, cell, charged_from)


def _arrears(
    subscription: Subscription, product: Product, book: PriceBook, cell: Period, start: datetime, end: datetime
) -> list[LineItem]:
    cuts = {u.starting_at for u in subscription.quantity_updates} | book.boundaries(product.id)
    stretches: list[tuple[datetime, datetime, Decimal, EffectivePricing | None]] = []
    for a, b in split_at(start, end, cuts):
        quantity, pricing = subscription.quantity_at(a), _pricing(subscription, product, book, a)
        if stretches and stretches[-1][2:] == (quantity, pricing):
            stretches[-1] = (stretches[-1][0], b, quantity, pricing)
        else:
            stretches.append((a, b, quantity, pricing))
    whole = cell.length if subscription.is_prorated else end - start
    return [
        _line(subscription, product, pricing, quantity, _fraction(b - a, whole), a, b)
        for a, b, quantity, pricing in stretches
        if pricing is not None and quantity != 0
    ]


def scheduled_charge_lines(charge: ScheduledCharge, product: Product, period: Period) -> list[LineItem]:
    """Items whose timestamp falls in the period, each priced quantity × unit_price; none for a
    charge that is not invoiced (`do_not_invoice`)."""
    if charge.do_not_invoice:
        return []
    return [
        line_from_charge(
            price_flat(item.unit_price, item.quantity),
            type=LineType.SCHEDULED,
            name=charge.name or product.at(item.timestamp).name,
            product_id=product.id,
            product_type=ProductType.FIXED,
            credit_type=charge.credit_type,
            starting_at=item.timestamp,
            ending_before=None,
            scheduled_charge_id=charge.id,
        )
        for item in charge.schedule_items
        if period.contains(item.timestamp)
    ]

