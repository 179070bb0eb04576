"""Rate schedules: which prices apply when, as a pricing page or a quote shows them.

- A rate card's schedule is its own rates whose time overlaps a window (getRateSchedule).
- A contract's schedule is what the contract pays at an instant, overrides applied
  (getContractRateSchedule): for each rate in effect then, and each set of pricing group values
  an override specifier prices differently, one segment, the longest stretch of time around the
  instant over which that price does not change, within the contract. Prices come from the same
  PriceBook the invoices are rated with, so a segment's bands priced over a quantity give the
  invoice line's total. Commit-specific overrides are left out (they price only what commits pay),
  and so are specifiers on presentation group values (a rate has none); unentitled prices are not
  shown, as Metronome documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Mapping, Sequence

from tally.billing.pricing.catalog import Product, ProductVersion
from tally.billing.pricing.contracts import Contract
from tally.billing.pricing.overrides import EffectivePricing, PriceBook
from tally.billing.pricing.periods import Frequency
from tally.billing.pricing.pricers import Band
from tally.billing.pricing.rates import Rate, RateType, Tier

_JUST_BEFORE = timedelta(microseconds=1)  # prices change on hour boundaries: this instant is the hour before's


@dataclass(frozen=True, slots=True)
class RateSelector:
    """Which rates a schedule shows (a schedule takes several, and shows what matches any)."""

    product_id: str | None = None
    pricing_group_values: Mapping[str, str] | None = None  # exactly these values
    partial_pricing_group_values: Mapping[str, str] | None = None  # at least these values
    product_tags: tuple[str, ...] | None = None  # any of these tags
    billing_frequency: Frequency | None = None

    def matches(self, rate: Rate, version: ProductVersion) -> bool:
        return self.matches_price(rate.product_id, rate.pricing_group_values, rate.billing_frequency, version)

    def matches_price(
        self,
        product_id: str,
        pricing_group_values: Mapping[str, str] | None,
        billing_frequency: Frequency | None,
        version: ProductVersion,
    ) -> bool:
        values = dict(pricing_group_values or {})
        return (
            (self.product_id is None or product_id == self.product_id)
            and (self.pricing_group_values is None or values == dict(self.pricing_group_values))
            and (
                self.partial_pricing_group_values is None
                or all(values.get(k) == v for k, v in self.partial_pricing_group_values.items())
            )
            and (self.product_tags is None or any(tag in version.tags for tag in self.product_tags))
            and (self.billing_frequency is None or billing_frequency is self.billing_frequency)
        )


def selected(selectors: Sequence[RateSelector], match) -> bool:
    """No selectors select everything; otherwise any of them."""
    return not selectors or any(match(selector) for selector in selectors)


def rates_overlapping(
    rates: Sequence[Rate],
    products: Mapping[str, Product],
    starting_at: datetime,
    ending_before: datetime | None = None,
    selectors: Sequence[RateSelector] = (),
) -> list[Rate]:
    """A rate card's rates in effect at some time in [starting_at, ending_before) (no end: from
    starting_at on), matching any selector, ordered by product name and id, pricing group values,
    billing frequency and start."""
    found = []
    for rate in rates:
        if rate.ending_before is not None and rate.ending_before <= starting_at:
            continue
        if ending_before is not None and rate.starting_at >= ending_before:
            continue
        version = products[rate.product_id].at(max(rate.starting_at, starting_at))
        if selected(selectors, lambda s: s.matches(rate, version)):
            found.append(rate)
    return sorted(found, key=lambda r: (*_order(r, products[r.product_id].at(max(r.starting_at, starting_at))), r.starting_at))


def _order(rate: Rate, version: ProductVersion) -> tuple:
    return (
        version.name,
        rate.product_id,
        sorted((rate.pricing_group_values or {}).items()),
        rate.billing_frequency.value if rate.billing_frequency else "",
    )


@dataclass(frozen=True, slots=True)
class ScheduledPrice:
    """One segment of a contract's rate schedule: a rate card rate and what the contract pays for it."""

    product_id: str
    version: ProductVersion  # the product as it is at the instant asked about
    list_rate: Rate
    pricing_group_values: Mapping[str, str] | None
    starting_at: datetime
    ending_before: datetime | None
    pricing: EffectivePricing

    @property
    def override_rate(self) -> OverriddenRate | None:
        """The price after overrides, as a rate; None when no override changes it."""
        return overridden_rate(self.pricing) if self.pricing.overridden else None


@dataclass(frozen=True, slots=True)
class OverriddenRate:
    rate_type: RateType
    price: Decimal | None  # one price for every unit; else tiers
    tiers: tuple[Tier, ...]
    pricing: EffectivePricing


def overridden_rate(pricing: EffectivePricing) -> OverriddenRate:
    """An effective price as a rate: one open band is a price; several are tiers (a flat or
    percentage rate that a tiered override cut becomes TIERED or TIERED_PERCENTAGE)."""
    bands = pricing.bands
    if len(bands) == 1 and bands[0].end is None:
        rate_type = pricing.rate_type
        if rate_type.tiered:  # a tiered rate a multiplier flattened to one price keeps its type, as one tier
            return OverriddenRate(rate_type, None, (Tier(bands[0].price),), pricing)
        return OverriddenRate(rate_type, bands[0].price, (), pricing)
    rate_type = RateType.TIERED_PERCENTAGE if pricing.rate_type.fraction_of_spend else RateType.TIERED
    return OverriddenRate(rate_type, None, _tiers(bands), pricing)


def _tiers(bands: Sequence[Band]) -> tuple[Tier, ...]:
    return tuple(Tier(b.price, None if b.end is None else b.end - b.start) for b in bands)


def contract_rate_schedule(
    contract: Contract, products: Mapping[str, Product], at: datetime, selectors: Sequence[RateSelector] = ()
) -> list[ScheduledPrice]:
    """What the contract pays at `at`, one segment per rate and priced set of pricing group values
    (see the module docstring); empty outside the contract's time."""
    if at < contract.starting_at or (contract.ending_before is not None and at >= contract.ending_before):
        return []
    book = contract.price_book()
    found: list[ScheduledPrice] = []
    for rate in book.timeline.in_effect(at):
        product = products[rate.product_id]
        version = product.at(at)
        for values in _priced_values(book, rate, version, at):
            if book.timeline.rate_for(rate.product_id, values, at, rate.billing_frequency) != rate:
                continue  # a more specific rate of the card prices these values: it has its own segment
            pricing = book.pricing(rate.product_id, version, at, values, {}, rate.billing_frequency)
            if pricing is None or not pricing.entitled:
                continue
            if not selected(selectors, lambda s: s.matches_price(rate.product_id, values or None, rate.billing_frequency, version)):
                continue
            start, end = _constant_around(book, contract, product, rate, values, at, pricing)
            found.append(ScheduledPrice(rate.product_id, version, rate, values or None, start, end, pricing))
    found.sort(
        key=lambda p: (
            p.version.name,
            p.product_id,
            sorted((p.pricing_group_values or {}).items()),
            p.list_rate.billing_frequency.value if p.list_rate.billing_frequency else "",
        )
    )
    return found


def _priced_values(book: PriceBook, rate: Rate, version: ProductVersion, at: datetime) -> list[dict[str, str]]:
    """The rate's own pricing group values, and each extension of them that a specifier of an
    override in effect prices (its values for pricing group keys the product has, agreeing with the
    rate's)."""
    base = dict(rate.pricing_group_values or {})
    variants = [base]
    for override in book.overrides:
        if override.commit_specific or not override.in_effect(at):
            continue
        for spec in override.override_specifiers:
            wanted = spec.pricing_group_values
            if not wanted or spec.presentation_group_values:
                continue
            if spec.product_id not in (None, rate.product_id) or not set(spec.product_tags) <= set(version.tags):
                continue
            if any(key not in version.pricing_group_key for key in wanted):
                continue
            if any(base.get(key, value) != value for key, value in wanted.items()):
                continue
            variant = base | dict(wanted)
            if variant not in variants:
                variants.append(variant)
    return sorted(variants, key=lambda v: sorted(v.items()))


def _constant_around(
    book: PriceBook,
    contract: Contract,
    product: Product,
    rate: Rate,
    values: Mapping[str, str],
    at: datetime,
    pricing: EffectivePricing,
) -> tuple[datetime, datetime | None]:
    """The longest [start, end) holding `at` over which the price stays `pricing`, within the contract.
    Prices change only where a rate, an override or a product version starts or ends."""

    def price_at(instant: datetime) -> EffectivePricing | None:
        return book.pricing(rate.product_id, product.at(instant), instant, values, {}, rate.billing_frequency)

    points = sorted(book.boundaries(rate.product_id) | set(product.version_boundaries))
    start = contract.starting_at
    for point in reversed([p for p in points if contract.starting_at < p <= at]):
        if price_at(point - _JUST_BEFORE) != pricing:
            start = point
            break
    end = contract.ending_before
    for point in (p for p in points if p > at):
        if end is not None and point >= end:
            break
        if price_at(point) != pricing:
            end = point
            break
    return start, end
