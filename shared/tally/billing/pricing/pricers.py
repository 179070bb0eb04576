"""One pricer per rate type. Each turns a price schedule and a quantity into an exact charge.

Every price, once overrides are applied, is a *band schedule*: a unit price that is constant over
ranges of the cumulative quantity of the billing period [start, end). A FLAT rate is one band; a
TIERED rate is one band per tier; a multiplier scales bands; a tiered override cuts them.
Graduated pricing of q units that start at cumulative position a is the integral of the schedule
over [a, a + q), so pricing a period in pieces gives exactly the price of the whole period.

Nothing here rounds: the invoice builder rounds each line's total once (money.CreditType.round).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import reduce
from typing import Sequence

from tally.billing.pricing.money import PRICING_CONTEXT
from tally.billing.pricing.rates import Tier
from tally.billing.values import hot_value

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Band:
    """Units from `start` to `end` (None: no end) cost `price` each. The first band of a schedule
    starts at 0 and also prices negative positions (usage corrections below zero)."""

    start: Decimal
    end: Decimal | None
    price: Decimal


@hot_value
class TierCharge:
    starting_at: Decimal  # the cumulative quantity at which the tier begins
    quantity: Decimal  # units of this charge that fell in the tier
    price: Decimal
    subtotal: Decimal  # exact, never rounded


@hot_value
class Charge:
    quantity: Decimal
    precise_total: Decimal
    unit_price: Decimal | None  # None when the quantity spans a schedule of several prices
    tiers: tuple[TierCharge, ...] = ()  # set when the schedule has several bands


def flat_bands(price: Decimal) -> tuple[Band, ...]:
    return (Band(ZERO, None, price),)


def tier_bands(tiers: Sequence[Tier]) -> tuple[Band, ...]:
    bands, start = [], ZERO
    for tier in tiers:
        end = None if tier.size is None else start + tier.size
        bands.append(Band(start, end, tier.price))
        if end is None:
            break
        start = end
    return tuple(bands)


def graduated_charge(bands: Sequence[Band], position: Decimal, quantity: Decimal) -> Charge:
    """Charge `quantity` units that follow `position` units already used in the period."""
    # PRICING_CONTEXT's own methods do exactly what the operators do inside `localcontext(PRICING_CONTEXT)`,
    # without a context copied per charge: usage lines are priced by the thousand.
    first = bands[0]
    if len(bands) == 1 and first.end is None:  # one price for every unit: no tiers to detail
        price = first.price
        # add(ZERO, …): a zero price times negative units is -0, which must not show as a total
        return Charge(quantity, PRICING_CONTEXT.add(ZERO, PRICING_CONTEXT.multiply(quantity, price)) if quantity else ZERO, price)
    if quantity > 0 and position >= 0 and first.start == 0:
        return _graduated_above_zero(bands, position, PRICING_CONTEXT.add(position, quantity), quantity)
    return _graduated(bands, position, quantity)


def _graduated(bands: Sequence[Band], position: Decimal, quantity: Decimal) -> Charge:
    """graduated_charge in general: negative quantities (corrections) and positions included."""
    add, subtract, multiply = PRICING_CONTEXT.add, PRICING_CONTEXT.subtract, PRICING_CONTEXT.multiply
    sign = 1 if quantity >= 0 else -1
    low, high = (position, add(position, quantity)) if sign > 0 else (add(position, quantity), position)
    tiers, total = [], ZERO
    for index, band in enumerate(bands):
        band_low = band.start if index else None  # None: unbounded below
        if band_low is not None and band_low >= high:
            break  # bands ascend: this one and every later one start above the units charged
        lo = low if band_low is None else max(low, band_low)
        hi = high if band.end is None else min(high, band.end)
        if hi <= lo:
            continue
        units = multiply(subtract(hi, lo), sign)
        subtotal = multiply(units, band.price)
        total = add(total, subtotal)
        tiers.append(TierCharge(band.start, units, band.price, subtotal))
    single = len(bands) == 1
    return Charge(quantity, total, bands[0].price if single else None, () if single else tuple(tiers))


def _graduated_above_zero(bands: Sequence[Band], low: Decimal, high: Decimal, quantity: Decimal) -> Charge:
    """graduated_charge of the units from `low` to `high`, 0 <= low < high: the usual usage line,
    priced by the thousand. Every band then bounds the units from below at its start (the first
    band's being 0), which spares the general loop's cases; the arithmetic is the same."""
    subtract, multiply = PRICING_CONTEXT.subtract, PRICING_CONTEXT.multiply
    tiers = []
    for band in bands:
        start, end = band.start, band.end
        if start >= high:
            break  # bands ascend: this one and every later one start above the units charged
        lo = start if start > low else low
        hi = end if end is not None and end < high else high
        if hi > lo:
            units = subtract(hi, lo)
            tiers.append(TierCharge(start, units, band.price, multiply(units, band.price)))
    total = reduce(PRICING_CONTEXT.add, [t.subtotal for t in tiers], ZERO)
    if len(bands) == 1:
        return Charge(quantity, total, bands[0].price)
    return Charge(quantity, total, None, tuple(tiers))


def price_flat(price: Decimal, quantity: Decimal) -> Charge:
    """FLAT: quantity × price."""
    return graduated_charge(flat_bands(price), ZERO, quantity)


def price_tiered(tiers: Sequence[Tier], quantity: Decimal, position: Decimal = ZERO) -> Charge:
    """TIERED, graduated: each unit at the price of the tier its cumulative position falls in."""
    return graduated_charge(tier_bands(tiers), position, quantity)


def price_percentage(bands: Sequence[Band], spend: Decimal, position: Decimal = ZERO) -> Charge:
    """PERCENTAGE and TIERED_PERCENTAGE (composite products): the band prices are fractions of the
    covered spend, and band edges are amounts of spend. `position` is the spend already covered in
    the period, so the tiers of a TIERED_PERCENTAGE rate count from the period start."""
    return graduated_charge(bands, position, spend)


def price_tiered_percentage(tiers: Sequence[Tier], spend: Decimal, position: Decimal = ZERO) -> Charge:
    """TIERED_PERCENTAGE: each unit of spend at the fraction of the tier its cumulative position falls in."""
    return graduated_charge(tier_bands(tiers), position, spend)


def price_subscription(bands: Sequence[Band], quantity: Decimal, fraction: Decimal) -> Charge:
    """SUBSCRIPTION: quantity × price for a whole period, times the fraction of it being charged."""
    charge = graduated_charge(bands, ZERO, quantity)
    with localcontext(PRICING_CONTEXT):
        if fraction == 1:
            return charge
        tiers = tuple(
            TierCharge(t.starting_at, t.quantity, t.price, t.subtotal * fraction) for t in charge.tiers
        )
        return Charge(quantity, charge.precise_total * fraction, charge.unit_price, tiers)
