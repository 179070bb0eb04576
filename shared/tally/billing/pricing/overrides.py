"""Contract overrides, and the price book that resolves a rate card rate plus overrides into the
effective price of a product at an instant.

Precedence, following Metronome's contract semantics:
- Entitlement: the first override (by precedence) that sets `entitled` decides; else the rate's.
- An OVERWRITE replaces the rate. Overwrites are prioritized over multipliers and tiered
  overrides: when one applies, no multiplier or tiered override applies on top of it.
- Otherwise, under LOWEST_MULTIPLIER the smallest applicable multiplier applies (the greatest
  discount). Under EXPLICIT, multipliers and tiered overrides form a waterfall over the period's
  cumulative quantity: the lowest `priority` covers what it covers (a multiplier covers everything,
  a tiered override only its tiers), the next covers the rest, and uncovered units pay list price.
- Precedence among overrides of one kind: lowest `priority` first (none: last), then the latest
  `starting_at`, then the order given. Never dict or set order.

Commit-specific overrides (`commit_specific`) change the price only of usage a commit or credit
pays for: the named ones (a specifier's `commit_ids`, which may name a recurring commit or credit:
then the ones it makes, `Grant.recurring_id`) or, naming none, any. The list price ignores
them. `PriceBook.commit_pricings` gives, for usage, the price each kind of payer spends at: a
LIST_RATE grant the list price with the LIST_RATE-target commit-specific overrides that admit it, a
COMMIT_RATE grant the rate's commit price (the list price without one) with the COMMIT_RATE-target
ones. Burn-down then spends each grant at its own price (balances/burn_down.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from enum import Enum
from typing import Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.pricing.catalog import ProductVersion
from tally.billing.pricing.money import PRICING_CONTEXT, CreditType
from tally.billing.pricing.periods import Frequency
from tally.billing.pricing.pricers import Band, flat_bands, tier_bands
from tally.billing.pricing.rates import Rate, RateTimeline, RateType, Tier, validate_rate_shape, validate_tiers
from tally.billing.pricing.validation import as_decimal, non_negative, window


class OverrideType(str, Enum):
    OVERWRITE = "OVERWRITE"
    MULTIPLIER = "MULTIPLIER"
    TIERED = "TIERED"


class OverrideTarget(str, Enum):
    """Which price a commit-specific override changes: the list rate, or the rate's commit rate."""

    LIST_RATE = "LIST_RATE"
    COMMIT_RATE = "COMMIT_RATE"


class MultiplierPrioritization(str, Enum):
    LOWEST_MULTIPLIER = "LOWEST_MULTIPLIER"
    EXPLICIT = "EXPLICIT"


@dataclass(frozen=True, slots=True)
class OverrideTier:
    multiplier: Decimal
    size: Decimal | None = None  # units in this tier; None on the last tier: all the rest


@dataclass(frozen=True, slots=True)
class OverwriteRate:
    rate_type: RateType
    price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    quantity: Decimal | None = None
    is_prorated: bool | None = None
    credit_type: CreditType | None = None  # None: the overwritten rate's


@dataclass(frozen=True, slots=True)
class OverrideSpecifier:
    """Matches when every field it sets matches (product tags: all of them; a billing frequency:
    rates of that frequency, i.e. subscription rates billed so)."""

    product_id: str | None = None
    product_tags: tuple[str, ...] = ()
    pricing_group_values: Mapping[str, str] | None = None
    presentation_group_values: Mapping[str, str] | None = None
    # Commit-specific overrides only: the commits and credits whose draws it prices (none: any), by
    # their id or the id of the recurring commit or credit that made them.
    commit_ids: tuple[str, ...] = ()
    billing_frequency: Frequency | None = None

    def admits(self, grant_id: str | None) -> bool:
        """Whether usage paid by `grant_id` is priced by this specifier (None: a grant no
        specifier names, which only a specifier naming no commit admits)."""
        return not self.commit_ids or grant_id in self.commit_ids

    def matches(
        self,
        product_id: str,
        tags: Sequence[str],
        pricing_values: Mapping[str, str | None],
        presentation_values: Mapping[str, str | None],
        billing_frequency: Frequency | None = None,
    ) -> bool:
        if self.product_id is not None and self.product_id != product_id:
            return False
        if self.billing_frequency is not None and self.billing_frequency is not billing_frequency:
            return False
        if any(tag not in tags for tag in self.product_tags):
            return False
        if any(pricing_values.get(k) != v for k, v in (self.pricing_group_values or {}).items()):
            return False
        return all(presentation_values.get(k) == v for k, v in (self.presentation_group_values or {}).items())


@dataclass(frozen=True, slots=True)
class Override:
    id: str
    starting_at: datetime
    ending_before: datetime | None = None
    type: OverrideType | None = None  # None: an entitlement-only override
    product_id: str | None = None
    applicable_product_tags: tuple[str, ...] = ()  # any of them
    override_specifiers: tuple[OverrideSpecifier, ...] = ()  # any of them
    entitled: bool | None = None
    priority: Decimal | None = None
    multiplier: Decimal | None = None  # MULTIPLIER
    overwrite_rate: OverwriteRate | None = None  # OVERWRITE
    tiers: tuple[OverrideTier, ...] = ()  # TIERED
    commit_specific: bool = False  # prices only what commits and credits pay for
    target: OverrideTarget = OverrideTarget.LIST_RATE  # commit-specific overrides only

    def in_effect(self, instant: datetime) -> bool:
        return self.starting_at <= instant and (self.ending_before is None or instant < self.ending_before)

    def targets(
        self,
        product_id: str,
        tags: Sequence[str],
        pricing_values: Mapping[str, str | None],
        presentation_values: Mapping[str, str | None],
        grant_id: str | None = None,
        billing_frequency: Frequency | None = None,
    ) -> bool:
        """Whether the override prices this usage (`grant_id`: the grant paying for it, which a
        commit-specific override's specifiers must admit; `billing_frequency`: the rate's)."""
        if self.override_specifiers:
            return any(
                s.matches(product_id, tags, pricing_values, presentation_values, billing_frequency)
                and (not self.commit_specific or s.admits(grant_id))
                for s in self.override_specifiers
            )
        if self.product_id is not None:
            return self.product_id == product_id
        return any(tag in tags for tag in self.applicable_product_tags)

    @property
    def named_grants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g for s in self.override_specifiers for g in s.commit_ids))


def validate_overrides(
    overrides: Sequence[Override], prioritization: MultiplierPrioritization, field: str = "overrides"
) -> None:
    for index, override in enumerate(overrides):
        prefix = f"{field}[{index}]."
        window(override.starting_at, override.ending_before, prefix)
        targeting = [bool(override.product_id), bool(override.applicable_product_tags), bool(override.override_specifiers)]
        if sum(targeting) != 1:
            raise InvalidInput(
                f"{prefix}product_id", "set exactly one of product_id, applicable_product_tags or override_specifiers"
            )
        for position, spec in enumerate(override.override_specifiers):
            if not (spec.product_id or spec.product_tags or spec.pricing_group_values or spec.presentation_group_values):
                raise InvalidInput(
                    f"{prefix}override_specifiers[{position}]",
                    "must set product_id, product_tags, pricing_group_values or presentation_group_values",
                )
        for position, spec in enumerate(override.override_specifiers):
            if spec.commit_ids and not override.commit_specific:
                raise InvalidInput(
                    f"{prefix}override_specifiers[{position}].commit_ids", "is only valid for commit-specific overrides"
                )
        if not isinstance(override.target, OverrideTarget):
            raise InvalidInput(f"{prefix}target", "must be COMMIT_RATE or LIST_RATE")
        if override.target is OverrideTarget.COMMIT_RATE and not override.commit_specific:
            raise InvalidInput(f"{prefix}target", "COMMIT_RATE is only valid for commit-specific overrides (is_commit_specific)")
        if override.commit_specific and override.type is None:
            raise InvalidInput(f"{prefix}type", "is required for commit-specific overrides: entitlement is not commit-specific")
        if override.priority is not None and as_decimal(override.priority, f"{prefix}priority") <= 0:
            raise InvalidInput(f"{prefix}priority", "must be greater than 0")
        kind = override.type
        if kind is None:
            if override.entitled is None:
                raise InvalidInput(f"{prefix}type", "is required unless the override only sets entitled")
        elif not isinstance(kind, OverrideType):
            raise InvalidInput(f"{prefix}type", "must be OVERWRITE, MULTIPLIER or TIERED")
        if kind is not OverrideType.OVERWRITE and override.overwrite_rate is not None:
            raise InvalidInput(f"{prefix}overwrite_rate", "is only valid for OVERWRITE overrides")
        if kind is not OverrideType.MULTIPLIER and override.multiplier is not None:
            raise InvalidInput(f"{prefix}multiplier", "is only valid for MULTIPLIER overrides")
        if kind is not OverrideType.TIERED and override.tiers:
            raise InvalidInput(f"{prefix}tiers", "is only valid for TIERED overrides")
        if kind is OverrideType.OVERWRITE:
            rate = override.overwrite_rate
            if rate is None:
                raise InvalidInput(f"{prefix}overwrite_rate", "is required for OVERWRITE overrides")
            validate_rate_shape(
                rate.rate_type, rate.price, rate.tiers, rate.quantity, rate.is_prorated, f"{prefix}overwrite_rate."
            )
        elif kind is OverrideType.MULTIPLIER:
            if override.multiplier is None:
                raise InvalidInput(f"{prefix}multiplier", "is required for MULTIPLIER overrides")
            non_negative(override.multiplier, f"{prefix}multiplier")
            if prioritization is MultiplierPrioritization.EXPLICIT and override.priority is None:
                raise InvalidInput(f"{prefix}priority", "is required for multipliers under EXPLICIT prioritization")
        elif kind is OverrideType.TIERED:
            if prioritization is not MultiplierPrioritization.EXPLICIT:
                raise InvalidInput("multiplier_override_prioritization", "must be EXPLICIT when TIERED overrides are used")
            if override.priority is None:
                raise InvalidInput(f"{prefix}priority", "is required for TIERED overrides")
            validate_tiers(override.tiers, f"{prefix}tiers", last_open=False)
            for position, tier in enumerate(override.tiers):
                non_negative(tier.multiplier, f"{prefix}tiers[{position}].multiplier")


@dataclass(frozen=True, slots=True)
class EffectivePricing:
    """What a product costs at an instant for one set of group values, overrides applied."""

    rate_type: RateType
    bands: tuple[Band, ...]
    credit_type: CreditType
    entitled: bool
    list_rate: Rate  # the rate card rate
    override_ids: tuple[str, ...] = ()  # overrides that changed the price (not just entitlement)

    @property
    def overridden(self) -> bool:
        return bool(self.override_ids)


@dataclass(frozen=True, slots=True)
class CommitPricing:
    """What a grant paying for usage spends at, when commit-specific overrides change it."""

    grant_id: str | None  # None: any grant no override names
    target: OverrideTarget  # LIST_RATE: the price LIST_RATE grants spend; COMMIT_RATE: COMMIT_RATE grants
    pricing: EffectivePricing


def rate_bands(rate_type: RateType, price: Decimal | None, tiers: Sequence[Tier]) -> tuple[Band, ...]:
    if rate_type.tiered:
        return tier_bands(tiers)
    assert price is not None, "validated rates carry a price"
    return flat_bands(price)


# (low, high, multiplier) over cumulative quantity; None bounds are unbounded.
_Coverage = tuple[Decimal | None, Decimal | None, Decimal]


def _coverage(override: Override) -> list[_Coverage]:
    if override.type is OverrideType.MULTIPLIER:
        assert override.multiplier is not None
        return [(None, None, override.multiplier)]
    pieces: list[_Coverage] = []
    start: Decimal = Decimal(0)
    for index, tier in enumerate(override.tiers):
        end = None if tier.size is None else start + tier.size
        pieces.append((None if index == 0 else start, end, tier.multiplier))
        if end is None:
            break
        start = end
    return pieces


def _value_at(pieces: Sequence[_Coverage], x: Decimal) -> Decimal | None:
    for low, high, value in pieces:
        if (low is None or low <= x) and (high is None or x < high):
            return value
    return None


def apply_multipliers(bands: tuple[Band, ...], waterfall: Sequence[Override]) -> tuple[tuple[Band, ...], tuple[str, ...]]:
    """Scale each unit's price by the multiplier of the first override in `waterfall` covering it.
    Returns the new bands and the ids of the overrides that covered any units."""
    coverages = [_coverage(o) for o in waterfall]
    points = {Decimal(0)}
    for band in bands:
        points.add(band.start)
    for pieces in coverages:
        for low, high, _ in pieces:
            points.update(p for p in (low, high) if p is not None and p > 0)
    ordered = sorted(points)
    result: list[Band] = []
    used: set[int] = set()
    with localcontext(PRICING_CONTEXT):
        for index, start in enumerate(ordered):
            end = ordered[index + 1] if index + 1 < len(ordered) else None
            base = next(b.price for b in reversed(bands) if b.start <= start)
            multiplier = Decimal(1)
            for position, pieces in enumerate(coverages):
                value = _value_at(pieces, start)
                if value is not None:
                    multiplier = value
                    used.add(position)
                    break
            price = base * multiplier
            if result and result[-1].price == price:
                result[-1] = Band(result[-1].start, end, price)
            else:
                result.append(Band(start, end, price))
    return tuple(result), tuple(waterfall[i].id for i in sorted(used))


_UNNAMED = object()  # in a pricing class: a group value no rate or override specifier names
_Named = tuple[tuple[str, frozenset], ...]  # group key -> the values named for it


def _precedence(indexed: tuple[int, Override]) -> tuple:
    index, override = indexed
    return (override.priority is None, override.priority or 0, -override.starting_at.timestamp(), index)


@dataclass(frozen=True, slots=True)
class PriceBook:
    """A contract's prices: its rate card's rates plus its overrides.

    Lookups are memoized per book (overrides in effect per instant; the resolved price per rate
    and set of matching overrides; the group values each product's prices name), so an invoice
    with many group values resolves each distinct price once. A book is immutable, so the memo
    never goes stale."""

    timeline: RateTimeline
    overrides: tuple[Override, ...] = ()
    prioritization: MultiplierPrioritization = MultiplierPrioritization.LOWEST_MULTIPLIER
    _in_effect: dict[datetime, list[tuple[int, Override]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _resolved: dict[tuple, EffectivePricing] = field(default_factory=dict, init=False, repr=False, compare=False)
    _named: dict[str, tuple[_Named, _Named]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _overrides_at(self, at: datetime) -> list[tuple[int, Override]]:
        """Overrides in effect at an instant, in precedence order."""
        found = self._in_effect.get(at)
        if found is None:
            found = self._in_effect[at] = sorted(
                ((i, o) for i, o in enumerate(self.overrides) if o.in_effect(at)), key=_precedence
            )
        return found

    def boundaries(self, product_id: str) -> set[datetime]:
        """Instants where the product's price may change. Every override's edges are included;
        segments priced the same on both sides of one are merged again by the invoice builder."""
        points = self.timeline.boundaries(product_id)
        for override in self.overrides:
            points.add(override.starting_at)
            if override.ending_before is not None:
                points.add(override.ending_before)
        return points

    def pricing_class(
        self,
        product_id: str,
        pricing_values: Mapping[str, str | None],
        presentation_values: Mapping[str, str | None],
    ) -> tuple:
        """A key such that group values with equal keys get the same `pricing` of the product at
        every instant, whatever its version.

        A price tells group values apart only by comparing them with the values that a rate of the
        product (`pricing_group_values`) or an override specifier names. A value nothing names finds
        no specific rate and matches no specifier, exactly as a missing value does. So the key holds,
        for each group key something names, the value if it is named and a placeholder if not; the
        values of group keys nothing names are left out."""
        pricing_named, presentation_named = self._named_of(product_id)
        if not pricing_named and not presentation_named:
            return ()  # nothing names a value: one price for all group values
        return (
            tuple(v if (v := pricing_values.get(k)) in values else _UNNAMED for k, values in pricing_named),
            tuple(v if (v := presentation_values.get(k)) in values else _UNNAMED for k, values in presentation_named),
        )

    def prices_all_values_alike(self, product_id: str) -> bool:
        """Whether every group values get the same `pricing` of the product at every instant: one
        pricing class, (), because no rate or specifier names a value."""
        return self._named_of(product_id) == ((), ())

    def class_representatives(
        self, product_id: str, most: int
    ) -> list[tuple[dict[str, str | None], dict[str, str | None]]] | None:
        """(pricing values, presentation values) of one member of each pricing class of the
        product, a key left out standing for every value nothing names (`pricing_class`), or None
        when there are more than `most` classes."""
        pricing_named, presentation_named = self._named_of(product_id)
        choices = [(key, (*sorted(values, key=str), _UNNAMED)) for key, values in pricing_named + presentation_named]
        count = 1
        for _, values in choices:
            count *= len(values)
            if count > most:
                return None
        found: list[tuple[dict[str, str | None], dict[str, str | None]]] = [({}, {})]
        for position, (key, values) in enumerate(choices):
            in_pricing = position < len(pricing_named)
            found = [
                (pricing | ({key: v} if in_pricing and v is not _UNNAMED else {}),
                 presentation | ({key: v} if not in_pricing and v is not _UNNAMED else {}))
                for pricing, presentation in found
                for v in values
            ]
        return found

    def _named_of(self, product_id: str) -> tuple[_Named, _Named]:
        named = self._named.get(product_id)
        if named is None:
            named = self._named[product_id] = self._named_values(product_id)
        return named

    def _named_values(self, product_id: str) -> tuple[_Named, _Named]:
        """(pricing, presentation): each group key some rate of the product or some override
        specifier names, with the values named for it. Specifiers of other products count too: more
        named values only make more pricing classes, never fewer."""
        pricing: dict[str, set] = {}
        presentation: dict[str, set] = {}
        for rate in self.timeline.of_product(product_id):
            for key, value in (rate.pricing_group_values or {}).items():
                pricing.setdefault(key, set()).add(value)
        for override in self.overrides:
            for specifier in override.override_specifiers:
                for key, value in (specifier.pricing_group_values or {}).items():
                    pricing.setdefault(key, set()).add(value)
                for key, value in (specifier.presentation_group_values or {}).items():
                    presentation.setdefault(key, set()).add(value)
        return (
            tuple((key, frozenset(values)) for key, values in sorted(pricing.items())),
            tuple((key, frozenset(values)) for key, values in sorted(presentation.items())),
        )

    def pricing(
        self,
        product_id: str,
        version: ProductVersion,
        at: datetime,
        pricing_values: Mapping[str, str | None] | None = None,
        presentation_values: Mapping[str, str | None] | None = None,
        billing_frequency: Frequency | None = None,
    ) -> EffectivePricing | None:
        """The effective price at an instant, or None when no rate card rate prices the product."""
        pricing_values = pricing_values or {}
        presentation_values = presentation_values or {}
        rate = self.timeline.rate_for(product_id, pricing_values, at, billing_frequency)
        if rate is None:
            return None
        matching = [
            (index, override)
            for index, override in self._overrides_at(at)
            if not override.commit_specific
            and override.targets(product_id, version.tags, pricing_values, presentation_values, None, rate.billing_frequency)
        ]
        return self._resolved_for(rate, matching)

    def _resolved_for(self, rate: Rate, matching: list[tuple[int, Override]]) -> EffectivePricing:
        key = (id(rate), tuple(index for index, _ in matching))
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolved[key] = self._resolve(rate, [o for _, o in matching])
        return resolved

    @property
    def has_commit_specific(self) -> bool:
        return any(o.commit_specific for o in self.overrides)

    def commit_pricings(
        self,
        product_id: str,
        version: ProductVersion,
        at: datetime,
        pricing_values: Mapping[str, str | None] | None = None,
        presentation_values: Mapping[str, str | None] | None = None,
        billing_frequency: Frequency | None = None,
    ) -> tuple[CommitPricing, ...]:
        """Where commit-specific overrides change what a grant paying for this usage spends: one
        entry per (payer, target) they change, the payer being a grant id some override names or
        None for any other grant. A grant with no entry spends its usual price (LIST_RATE grants the
        list price, COMMIT_RATE ones the commit price). Empty without commit-specific overrides."""
        if not self.has_commit_specific:
            return ()
        pricing_values = pricing_values or {}
        presentation_values = presentation_values or {}
        rate = self.timeline.rate_for(product_id, pricing_values, at, billing_frequency)
        if rate is None:
            return ()
        regular, specific = [], []
        frequency = rate.billing_frequency
        for index, override in self._overrides_at(at):
            if not override.commit_specific:
                if override.targets(product_id, version.tags, pricing_values, presentation_values, None, frequency):
                    regular.append((index, override))
            elif any(  # its product filters match, whichever grant pays
                s.matches(product_id, version.tags, pricing_values, presentation_values, frequency)
                for s in override.override_specifiers
            ) or (not override.override_specifiers and override.targets(product_id, version.tags, pricing_values, presentation_values)):
                specific.append((index, override))
        if not specific:
            return ()
        payers: list[str | None] = [None, *sorted({g for _, o in specific for g in o.named_grants})]
        found: list[CommitPricing] = []
        for target in OverrideTarget:
            chosen_for_anyone: tuple[int, ...] | None = None
            for payer in payers:
                chosen = [
                    (i, o) for i, o in specific
                    if o.target is target
                    and o.targets(product_id, version.tags, pricing_values, presentation_values, payer, frequency)
                ]
                indexes = tuple(i for i, _ in chosen)
                if payer is None:
                    chosen_for_anyone = indexes
                elif indexes == chosen_for_anyone:
                    continue  # priced as any other grant: that entry covers it
                if not chosen:
                    continue
                found.append(CommitPricing(payer, target, self._commit_resolved(rate, target, regular, chosen)))
        return tuple(found)

    def _commit_resolved(
        self, rate: Rate, target: OverrideTarget, regular: list[tuple[int, Override]], chosen: list[tuple[int, Override]]
    ) -> EffectivePricing:
        if target is OverrideTarget.COMMIT_RATE and rate.commit_price is not None:
            # The commit rate is its own price: the contract's other overrides change the list rate only.
            commit_rate = Rate(rate.product_id, rate.starting_at, RateType.FLAT, rate.entitled, rate.ending_before,
                               price=rate.commit_price, credit_type=rate.credit_type)
            return self._resolve(commit_rate, [o for _, o in sorted(chosen, key=_precedence)])
        merged = sorted([*regular, *chosen], key=_precedence)
        return self._resolve(rate, [o for _, o in merged])

    def _resolve(self, rate: Rate, matching: list[Override]) -> EffectivePricing:
        """The rate with the matching overrides (in precedence order) applied."""
        entitled = next((o.entitled for o in matching if o.entitled is not None), rate.entitled)
        overwrite = next((o for o in matching if o.type is OverrideType.OVERWRITE), None)
        if overwrite is not None:
            new = overwrite.overwrite_rate
            assert new is not None
            return EffectivePricing(
                new.rate_type,
                rate_bands(new.rate_type, new.price, new.tiers),
                new.credit_type or rate.credit_type,
                entitled,
                rate,
                (overwrite.id,),
            )
        bands = rate_bands(rate.rate_type, rate.price, rate.tiers)
        if self.prioritization is MultiplierPrioritization.LOWEST_MULTIPLIER:
            multipliers = [o for o in matching if o.type is OverrideType.MULTIPLIER]
            waterfall = [min(multipliers, key=lambda o: o.multiplier)] if multipliers else []
        else:
            waterfall = [o for o in matching if o.type in (OverrideType.MULTIPLIER, OverrideType.TIERED)]
        if not waterfall:
            return EffectivePricing(rate.rate_type, bands, rate.credit_type, entitled, rate)
        bands, used = apply_multipliers(bands, waterfall)
        return EffectivePricing(rate.rate_type, bands, rate.credit_type, entitled, rate, used)
