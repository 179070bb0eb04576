"""Rates on a rate card, their validation, and the timeline that answers "which rate, when".

A rate is in effect over [starting_at, ending_before), both on UTC hour boundaries. A rate may be
limited to pricing group values: usage is priced by the most specific rate whose values it carries
(a rate without values is the product's default). Two rates for the same product, the same pricing
group values and the same billing frequency may not overlap in time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Iterable, Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.pricing.money import USD_CENTS, CreditType
from tally.billing.pricing.periods import Frequency
from tally.billing.pricing.validation import as_decimal, non_negative, window


class RateType(str, Enum):
    FLAT = "FLAT"
    TIERED = "TIERED"
    PERCENTAGE = "PERCENTAGE"
    SUBSCRIPTION = "SUBSCRIPTION"
    TIERED_PERCENTAGE = "TIERED_PERCENTAGE"  # composite products: graduated fractions of the period's spend

    @property
    def tiered(self) -> bool:
        """Priced by tiers rather than one price."""
        return self in (RateType.TIERED, RateType.TIERED_PERCENTAGE)

    @property
    def fraction_of_spend(self) -> bool:
        """Prices are fractions of covered spend (composite products), so each is at most 1."""
        return self in (RateType.PERCENTAGE, RateType.TIERED_PERCENTAGE)


@dataclass(frozen=True, slots=True)
class Tier:
    """A graduated tier. `size` is how many units the tier holds (Metronome's meaning: the invoice
    echoes each tier as {starting_at, size}); the last tier has no size and holds the rest."""

    price: Decimal
    size: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Rate:
    product_id: str
    starting_at: datetime
    rate_type: RateType
    entitled: bool = True
    ending_before: datetime | None = None
    price: Decimal | None = None  # FLAT and SUBSCRIPTION: unit price; PERCENTAGE: fraction of spend
    tiers: tuple[Tier, ...] = ()  # TIERED; TIERED_PERCENTAGE (tier sizes in spend, prices fractions of it)
    pricing_group_values: Mapping[str, str] | None = None
    quantity: Decimal | None = None  # SUBSCRIPTION default quantity (a subscription's own schedule rules)
    is_prorated: bool | None = None  # SUBSCRIPTION
    billing_frequency: Frequency | None = None  # SUBSCRIPTION products
    credit_type: CreditType = USD_CENTS
    # FLAT usage rates: the unit price a COMMIT_RATE commit spends when it pays for this usage
    # (Metronome's `commit_rate`); None: commits spend the list price.
    commit_price: Decimal | None = None

    def in_effect(self, instant: datetime) -> bool:
        return self.starting_at <= instant and (self.ending_before is None or instant < self.ending_before)

    def applies_to(self, group_values: Mapping[str, str | None]) -> bool:
        return all(group_values.get(key) == value for key, value in (self.pricing_group_values or {}).items())


def validate_tiers(tiers: Sequence[Tier], field: str, *, last_open: bool = True) -> None:
    """Sizes are tier widths, so boundaries increase exactly when every size is positive."""
    if not tiers:
        raise InvalidInput(field, "must hold at least one tier")
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.size is None:
            if not last:
                raise InvalidInput(f"{field}[{index}].size", "is required on every tier but the last")
        else:
            if last and last_open:
                raise InvalidInput(f"{field}[{index}].size", "must be omitted: the last tier is open-ended")
            if as_decimal(tier.size, f"{field}[{index}].size") <= 0:
                raise InvalidInput(f"{field}[{index}].size", "must be greater than 0, so tier boundaries increase")


def validate_rate_shape(
    rate_type: RateType,
    price: Decimal | None,
    tiers: Sequence[Tier],
    quantity: Decimal | None,
    is_prorated: bool | None,
    prefix: str,
) -> None:
    """The fields each rate type needs; shared by rate card rates and overwrite overrides."""
    if not isinstance(rate_type, RateType):
        raise InvalidInput(f"{prefix}rate_type", "must be FLAT, TIERED, PERCENTAGE, TIERED_PERCENTAGE or SUBSCRIPTION")
    if rate_type.tiered:
        if price is not None:
            raise InvalidInput(f"{prefix}price", f"must be omitted for {rate_type.value} rates: set tiers")
        validate_tiers(tiers, f"{prefix}tiers")
        for index, tier in enumerate(tiers):
            non_negative(tier.price, f"{prefix}tiers[{index}].price")
            if rate_type.fraction_of_spend and tier.price > 1:
                raise InvalidInput(f"{prefix}tiers[{index}].price", f"is a fraction of spend for {rate_type.value} rates: at most 1")
    else:
        if tiers:
            raise InvalidInput(f"{prefix}tiers", f"is only valid for TIERED and TIERED_PERCENTAGE rates, not {rate_type.value}")
        if price is None:
            raise InvalidInput(f"{prefix}price", f"is required for {rate_type.value} rates")
        non_negative(price, f"{prefix}price")
        if rate_type.fraction_of_spend and price > 1:
            raise InvalidInput(f"{prefix}price", "is a fraction of spend for PERCENTAGE rates: at most 1")
    if quantity is not None:
        if rate_type is not RateType.SUBSCRIPTION:
            raise InvalidInput(f"{prefix}quantity", "is only valid for SUBSCRIPTION rates")
        non_negative(quantity, f"{prefix}quantity")
    if is_prorated is not None:
        if rate_type is not RateType.SUBSCRIPTION:
            raise InvalidInput(f"{prefix}is_prorated", "is only valid for SUBSCRIPTION rates")
        if is_prorated is not True:
            raise InvalidInput(f"{prefix}is_prorated", "must be true when set")


def _identity(rate: Rate) -> tuple:
    return rate.product_id, frozenset((rate.pricing_group_values or {}).items()), rate.billing_frequency


def validate_rates(rates: Sequence[Rate], field: str = "rates") -> None:
    for index, rate in enumerate(rates):
        prefix = f"{field}[{index}]."
        window(rate.starting_at, rate.ending_before, prefix)
        validate_rate_shape(rate.rate_type, rate.price, rate.tiers, rate.quantity, rate.is_prorated, prefix)
        for key, value in (rate.pricing_group_values or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidInput(f"{prefix}pricing_group_values", "keys and values must be strings")
    by_identity: dict[tuple, list[int]] = defaultdict(list)
    for index, rate in enumerate(rates):
        by_identity[_identity(rate)].append(index)
    for indexes in by_identity.values():
        indexes.sort(key=lambda i: rates[i].starting_at)
        for before, after in zip(indexes, indexes[1:]):
            end = rates[before].ending_before
            if end is None or end > rates[after].starting_at:
                raise InvalidInput(
                    f"{field}[{after}].starting_at",
                    f"overlaps {field}[{before}] for the same product and pricing group values",
                )


@dataclass(frozen=True, slots=True)
class RateTimeline:
    """Rates indexed by product and pricing group values, for point-in-time lookups and splits."""

    rates: tuple[Rate, ...]
    _by_product: dict[str, tuple[Rate, ...]] = field(init=False, repr=False, compare=False)
    # product -> pricing group values (as frozen items) -> rates sorted by starting_at
    _by_values: dict[str, dict[frozenset, tuple[Rate, ...]]] = field(init=False, repr=False, compare=False)
    # product -> the distinct key sets its rates are limited by, most specific first
    _key_sets: dict[str, tuple[tuple[str, ...], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_product: dict[str, list[Rate]] = defaultdict(list)
        by_values: dict[str, dict[frozenset, list[Rate]]] = defaultdict(lambda: defaultdict(list))
        for rate in sorted(self.rates, key=lambda r: r.starting_at):
            by_product[rate.product_id].append(rate)
            by_values[rate.product_id][frozenset((rate.pricing_group_values or {}).items())].append(rate)
        object.__setattr__(self, "_by_product", {k: tuple(v) for k, v in by_product.items()})
        object.__setattr__(
            self, "_by_values", {p: {k: tuple(v) for k, v in groups.items()} for p, groups in by_values.items()}
        )
        object.__setattr__(
            self,
            "_key_sets",
            {
                p: tuple(sorted({tuple(sorted(k for k, _ in items)) for items in groups}, key=lambda ks: (-len(ks), ks)))
                for p, groups in by_values.items()
            },
        )

    def product_ids(self) -> tuple[str, ...]:
        return tuple(self._by_product)

    def of_product(self, product_id: str) -> tuple[Rate, ...]:
        return self._by_product.get(product_id, ())

    def in_effect(self, at: datetime, product_id: str | None = None) -> list[Rate]:
        """Every rate in effect at an instant (getRates): all pricing group values, all frequencies."""
        pool = self.rates if product_id is None else self.of_product(product_id)
        return [rate for rate in pool if rate.in_effect(at)]

    def rate_for(
        self,
        product_id: str,
        group_values: Mapping[str, str | None],
        at: datetime,
        billing_frequency: Frequency | None = None,
    ) -> Rate | None:
        """The rate pricing this usage at this instant. The most specific match wins (most pricing
        group values); equally specific matches resolve by their sorted values, never by order."""
        by_values = self._by_values.get(product_id)
        if not by_values:
            return None
        found: list[Rate] = []
        for keys in self._key_sets[product_id]:
            if found and len(keys) < len(found[0].pricing_group_values or {}):
                break
            if any(group_values.get(key) is None for key in keys):
                continue
            for rate in by_values.get(frozenset((key, group_values[key]) for key in keys), ()):
                if rate.starting_at > at:
                    break
                if rate.in_effect(at) and (
                    billing_frequency is None or rate.billing_frequency in (None, billing_frequency)
                ):
                    found.append(rate)
        if not found:
            return None
        return min(
            found,
            key=lambda r: (r.billing_frequency != billing_frequency, sorted((r.pricing_group_values or {}).items())),
        )

    def boundaries(self, product_id: str) -> set[datetime]:
        """Instants at which some rate of the product starts or ends."""
        points: set[datetime] = set()
        for rate in self.of_product(product_id):
            points.add(rate.starting_at)
            if rate.ending_before is not None:
                points.add(rate.ending_before)
        return points


def split_at(start: datetime, end: datetime, boundaries: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at every boundary strictly inside it, in time order."""
    inner = sorted({b for b in boundaries if start < b < end})
    edges = [start, *inner, end]
    return list(zip(edges, edges[1:]))
