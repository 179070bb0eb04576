"""Catalog use cases: products, pricing units (credit types), rate cards and their rates.

The read methods `product`, `products`, `rate_card`, `is_archived` and `rate_card_id_for_alias`
return engine objects; contracts and invoices build on them. Every write validates with the
engine's validate_* functions first and stores nothing when a rule is broken.

Rates: an open-ended rate is superseded by a later open-ended rate for the same product, pricing
group values and billing frequency (a price change): the earlier one is stored again ending where
the new one starts. Any other overlap is refused.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping, Protocol, Sequence

from tally.billing.errors import InvalidInput, NotFound
from tally.billing.limits import MAX_RATE_CARD_PRODUCT_ORDER
from tally.billing.pricing import (
    USD_CENTS,
    CreditType,
    Product,
    ProductType,
    ProductVersion,
    Rate,
    RateCard,
    RateTimeline,
    validate_product,
    validate_product_version,
    validate_rate_card,
    validate_rates,
)
from tally.billing.pricing.rate_schedules import RateSelector, rates_overlapping
from tally.billing.time import format_sortable, truncate_to_hour
from tally.billing.metrics import BillableMetric
from tally.services.ports import MetricStore

# Product fields an update may change (names of ProductVersion and of the update request).
UPDATABLE_PRODUCT_FIELDS = (
    "name",
    "billable_metric_id",
    "composite_product_ids",
    "composite_tags",
    "quantity_conversion",
    "quantity_rounding",
    "pricing_group_key",
    "presentation_group_key",
    "tags",
)


@dataclass(frozen=True, slots=True)
class ProductRecord:
    product: Product
    created_at: datetime
    version_created_at: Mapping[datetime, datetime] = field(default_factory=dict)  # by version starting_at
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    revision: int = 0


@dataclass(frozen=True, slots=True)
class CreditTypeRecord:
    credit_type: CreditType
    created_at: datetime
    archived_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RateCardAlias:
    name: str
    starting_at: datetime | None = None
    ending_before: datetime | None = None

    def in_effect(self, at: datetime) -> bool:
        return (self.starting_at is None or self.starting_at <= at) and (
            self.ending_before is None or at < self.ending_before
        )

    def overlaps(self, other: RateCardAlias) -> bool:
        starts_before_other_ends = other.ending_before is None or self.starting_at is None or self.starting_at < other.ending_before
        ends_after_other_starts = self.ending_before is None or other.starting_at is None or other.starting_at < self.ending_before
        return self.name == other.name and starts_before_other_ends and ends_after_other_starts


@dataclass(frozen=True, slots=True)
class CreditTypeConversion:
    credit_type: CreditType
    fiat_per_custom_credit: Decimal


@dataclass(frozen=True, slots=True)
class RateCardRecord:
    id: str
    name: str
    created_at: datetime
    description: str | None = None
    aliases: tuple[RateCardAlias, ...] = ()
    fiat_credit_type: CreditType = USD_CENTS
    credit_type_conversions: tuple[CreditTypeConversion, ...] = ()
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    archived_at: datetime | None = None
    revision: int = 0
    # Product ids in the order their lines appear on invoices (setRateCardProductsOrder); products
    # not named come after, in the default line order.
    product_order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredRate:
    key: str  # the rate's stable storage key within its rate card
    rate: Rate


@dataclass(frozen=True, slots=True)
class RateDraft:
    """A rate as requested: the credit type is still an id, resolved against the rate card."""

    rate: Rate
    credit_type_id: str | None = None


class CatalogStore(Protocol):
    def put_product(self, record: ProductRecord, expected_revision: int | None) -> None: ...
    def get_product(self, product_id: str) -> ProductRecord | None: ...
    def all_products(self) -> list[ProductRecord]: ...
    def put_credit_type(self, record: CreditTypeRecord) -> None: ...
    def get_credit_type(self, credit_type_id: str) -> CreditTypeRecord | None: ...
    def all_credit_types(self) -> list[CreditTypeRecord]: ...
    def put_rate_card(self, record: RateCardRecord, expected_revision: int | None) -> None: ...
    def get_rate_card(self, rate_card_id: str) -> tuple[RateCardRecord, list[StoredRate]] | None: ...
    def all_rate_cards(self) -> list[RateCardRecord]: ...
    def put_rates(self, rate_card_id: str, revision: int, rates: list[StoredRate]) -> None: ...


def new_rate_key(rate: Rate) -> str:
    """Sorts a card's rates by product, then start; the uuid keeps equal starts apart."""
    return f"rate#{rate.product_id}#{format_sortable(rate.starting_at)}#{uuid.uuid4()}"


def _identity(rate: Rate) -> tuple:
    return rate.product_id, frozenset((rate.pricing_group_values or {}).items()), rate.billing_frequency


def _prefixed(exc: InvalidInput, prefix_from: str, prefix_to: str) -> InvalidInput:
    if prefix_from and exc.field.startswith(prefix_from):
        return InvalidInput(prefix_to + exc.field[len(prefix_from) :], exc.rule)
    return exc


class CatalogService:
    def __init__(self, store: CatalogStore, metrics: MetricStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # == reads for contracts and invoices ======================================================
    def product(self, product_id: str) -> Product:
        """The product with all its versions (archived ones too). NotFound if unknown."""
        return self.product_record(product_id).product

    def metric(self, metric_id: str) -> BillableMetric | None:
        return self._metrics.get(metric_id)

    def products(self) -> dict[str, Product]:
        """Every product by id, archived included."""
        return {r.product.id: r.product for r in self._store.all_products()}

    def rate_card(self, rate_card_id: str) -> RateCard:
        """The rate card with all its rates. NotFound if unknown (archived cards are returned)."""
        card, rates = self.rate_card_record(rate_card_id)
        ordered = sorted((s.rate for s in rates), key=lambda r: (r.product_id, r.starting_at))
        conversions = {c.credit_type.id: c.fiat_per_custom_credit for c in card.credit_type_conversions}
        return RateCard(card.id, card.name, tuple(ordered), card.fiat_credit_type, conversions, card.product_order)

    def is_archived(self, rate_card_id: str) -> bool:
        """Whether the rate card is archived. NotFound if unknown."""
        return self.rate_card_record(rate_card_id)[0].archived_at is not None

    def rate_card_id_for_alias(self, alias: str, at: datetime) -> str | None:
        """The id of the active rate card holding `alias` in effect at `at`, if any."""
        for card in self._store.all_rate_cards():
            if card.archived_at is None and any(a.name == alias and a.in_effect(at) for a in card.aliases):
                return card.id
        return None

    def credit_type(self, credit_type_id: str) -> CreditType:
        """USD (cents) or a custom pricing unit (archived ones too). NotFound if unknown."""
        if credit_type_id == USD_CENTS.id:
            return USD_CENTS
        record = self._store.get_credit_type(credit_type_id)
        if record is None:
            raise NotFound(f"pricing unit {credit_type_id} not found")
        return record.credit_type

    # == products ==============================================================================
    def product_record(self, product_id: str) -> ProductRecord:
        record = self._store.get_product(product_id)
        if record is None:
            raise NotFound(f"product {product_id} not found")
        return record

    def product_records(self, archive_filter: str = "NOT_ARCHIVED") -> list[ProductRecord]:
        records = sorted(self._store.all_products(), key=lambda r: (r.created_at, r.product.id))
        if archive_filter == "ALL":
            return records
        archived = archive_filter == "ARCHIVED"
        return [r for r in records if (r.product.archived_at is not None) == archived]

    def create_product(
        self, product_type: ProductType, version: ProductVersion, custom_fields: Mapping[str, str] | None = None
    ) -> ProductRecord:
        """The first version is dated at the hour of creation; it also governs any time before."""
        now = self._clock()
        first = replace(version, starting_at=truncate_to_hour(now))
        validate_product_version(product_type, first)
        self._check_references(product_type, first, None)
        product = Product(str(uuid.uuid4()), product_type, (first,))
        validate_product(product)
        record = ProductRecord(product, now, {first.starting_at: now}, dict(custom_fields or {}))
        self._store.put_product(record, None)
        return record

    def update_product(self, product_id: str, starting_at: datetime, changes: Mapping[str, Any]) -> ProductRecord:
        """A new version from `starting_at` (past or future): the fields given, the rest as they were then."""
        record = self.product_record(product_id)
        product = record.product
        if product.archived_at is not None:
            raise InvalidInput("product_id", "is archived: it cannot be updated")
        unknown = set(changes) - set(UPDATABLE_PRODUCT_FIELDS)
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "cannot be updated")
        version = replace(product.at(starting_at), starting_at=starting_at, **changes)
        validate_product_version(product.type, version)
        self._check_references(product.type, version, product.id)
        updated = product.updated(version)
        validate_product(updated)
        now = self._clock()
        after = replace(
            record,
            product=updated,
            version_created_at={**record.version_created_at, starting_at: now},
            revision=record.revision + 1,
        )
        self._store.put_product(after, record.revision)
        return after

    def archive_product(self, product_id: str) -> ProductRecord:
        record = self.product_record(product_id)
        if record.product.archived_at is not None:
            return record
        p = record.product
        after = replace(record, product=Product(p.id, p.type, p.versions, self._clock()), revision=record.revision + 1)
        self._store.put_product(after, record.revision)
        return after

    def _check_references(self, product_type: ProductType, version: ProductVersion, self_id: str | None) -> None:
        if product_type is ProductType.USAGE:
            metric = self._metrics.get(version.billable_metric_id or "")
            if metric is None:
                raise InvalidInput("billable_metric_id", "is not a known billable metric")
            keys = set(version.group_keys)
            if keys and not any(keys == set(group) for group in metric.group_keys):
                raise InvalidInput(
                    "pricing_group_key",
                    "together with presentation_group_key must form one of the billable metric's group_keys",
                )
        for index, other in enumerate(version.composite_product_ids):
            if other == self_id or self._store.get_product(other) is None:
                raise InvalidInput(f"composite_product_ids[{index}]", "is not a known product")

    # == pricing units =========================================================================
    def credit_types(self) -> list[CreditTypeRecord]:
        """USD (cents) first, then the custom pricing units still active, oldest first."""
        custom = sorted(self._store.all_credit_types(), key=lambda r: (r.created_at, r.credit_type.id))
        usd = CreditTypeRecord(USD_CENTS, datetime.min)
        return [usd, *(r for r in custom if r.archived_at is None)]

    def credit_type_names(self) -> dict[str, str]:
        """Every credit type's name by id, archived pricing units too: what a balance, rate or
        invoice priced in one shows as `credit_type.name` ("USD (cents)" for the fiat default)."""
        names = {r.credit_type.id: r.credit_type.name for r in self._store.all_credit_types()}
        return names | {USD_CENTS.id: USD_CENTS.name}

    def create_credit_type(self, name: str) -> CreditTypeRecord:
        if not name or not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        if any(r.credit_type.name == name for r in self.credit_types()):
            raise InvalidInput("name", "is already the name of a pricing unit")
        record = CreditTypeRecord(CreditType(str(uuid.uuid4()), name), self._clock())
        self._store.put_credit_type(record)
        return record

    def archive_credit_type(self, credit_type_id: str) -> CreditTypeRecord:
        if credit_type_id == USD_CENTS.id:
            raise InvalidInput("id", "USD (cents) cannot be archived")
        record = self._store.get_credit_type(credit_type_id)
        if record is None:
            raise NotFound(f"pricing unit {credit_type_id} not found")
        if record.archived_at is None:
            record = replace(record, archived_at=self._clock())
            self._store.put_credit_type(record)
        return record

    def _custom_credit_type(self, credit_type_id: str, field: str) -> CreditType:
        record = self._store.get_credit_type(credit_type_id)
        if record is None:
            raise InvalidInput(field, "is not a known custom pricing unit")
        if record.archived_at is not None:
            raise InvalidInput(field, "is an archived pricing unit")
        return record.credit_type

    # == rate cards ============================================================================
    def rate_card_record(self, rate_card_id: str) -> tuple[RateCardRecord, list[StoredRate]]:
        found = self._store.get_rate_card(rate_card_id)
        if found is None:
            raise NotFound(f"rate card {rate_card_id} not found")
        return found

    def rate_card_records(self) -> list[RateCardRecord]:
        cards = sorted(self._store.all_rate_cards(), key=lambda c: (c.created_at, c.id))
        return [c for c in cards if c.archived_at is None]

    def create_rate_card(
        self,
        name: str,
        *,
        description: str | None = None,
        aliases: tuple[RateCardAlias, ...] = (),
        fiat_credit_type_id: str | None = None,
        credit_type_conversions: tuple[tuple[str, Decimal], ...] = (),
        custom_fields: Mapping[str, str] | None = None,
    ) -> RateCardRecord:
        if not name or not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        if fiat_credit_type_id not in (None, USD_CENTS.id):
            raise InvalidInput("fiat_credit_type_id", "must be a fiat pricing unit (USD (cents))")
        self._check_aliases(aliases, None, "aliases")
        conversions = self._conversions(credit_type_conversions, (), "credit_type_conversions")
        card = RateCardRecord(
            id=str(uuid.uuid4()),
            name=name,
            created_at=self._clock(),
            description=description,
            aliases=aliases,
            credit_type_conversions=conversions,
            custom_fields=dict(custom_fields or {}),
        )
        self._store.put_rate_card(card, None)
        return card

    def update_rate_card(
        self,
        rate_card_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        aliases: tuple[RateCardAlias, ...] | None = None,
        add_credit_type_conversions: tuple[tuple[str, Decimal], ...] = (),
    ) -> RateCardRecord:
        card, _ = self.rate_card_record(rate_card_id)
        if card.archived_at is not None:
            raise InvalidInput("rate_card_id", "is archived: it cannot be updated")
        if name is not None and not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        if aliases is not None:
            self._check_aliases(aliases, card.id, "aliases")
        added = self._conversions(add_credit_type_conversions, card.credit_type_conversions, "add_credit_type_conversions")
        after = replace(
            card,
            name=card.name if name is None else name,
            description=card.description if description is None else description,
            aliases=card.aliases if aliases is None else aliases,
            credit_type_conversions=card.credit_type_conversions + added,
            revision=card.revision + 1,
        )
        self._store.put_rate_card(after, card.revision)
        return after

    def set_product_order(self, rate_card_id: str, product_order: Sequence[str]) -> RateCardRecord:
        """The card's product order, as given (conditional on the card's revision read)."""
        card, _ = self.rate_card_record(rate_card_id)
        if card.archived_at is not None:
            raise InvalidInput("rate_card_id", "is archived: it cannot be updated")
        if len(product_order) > MAX_RATE_CARD_PRODUCT_ORDER:
            raise InvalidInput("product_order", f"must name at most {MAX_RATE_CARD_PRODUCT_ORDER:,} products, got {len(product_order):,}")
        seen: set[str] = set()
        for index, product_id in enumerate(product_order):
            if product_id in seen:
                raise InvalidInput(f"product_order[{index}]", f"names product {product_id} twice")
            if self._store.get_product(product_id) is None:
                raise InvalidInput(f"product_order[{index}]", f"product {product_id} not found")
            seen.add(product_id)
        return self._store_order(card, tuple(product_order))

    def move_products(self, rate_card_id: str, moves: Sequence[tuple[str, int]]) -> RateCardRecord:
        """Move products to 0-based positions of the card's current order, one move after the
        other. The current order is the stored one, then the card's other products by name (the
        order their lines take without one); conditional on the card's revision read."""
        card, rates = self.rate_card_record(rate_card_id)
        if card.archived_at is not None:
            raise InvalidInput("rate_card_id", "is archived: it cannot be updated")
        records = {r.product.id: r for r in self._store.all_products()}
        unordered = {s.rate.product_id for s in rates} - set(card.product_order)
        at = self._clock()

        def name(product_id: str) -> str:
            record = records.get(product_id)
            return "" if record is None else record.product.at(at).name

        order = list(card.product_order) + sorted(unordered, key=lambda p: (name(p).casefold(), name(p), p))
        for index, (product_id, position) in enumerate(moves):
            if product_id not in records:
                raise InvalidInput(f"product_moves[{index}].product_id", f"product {product_id} not found")
            if product_id in order:
                order.remove(product_id)
            if not 0 <= position <= len(order):
                raise InvalidInput(f"product_moves[{index}].position", f"must be between 0 and {len(order)}")
            order.insert(position, product_id)
        if len(order) > MAX_RATE_CARD_PRODUCT_ORDER:
            raise InvalidInput("product_moves", f"the order would name more than {MAX_RATE_CARD_PRODUCT_ORDER:,} products")
        return self._store_order(card, tuple(order))

    def _store_order(self, card: RateCardRecord, order: tuple[str, ...]) -> RateCardRecord:
        if order == card.product_order:
            return card
        after = replace(card, product_order=order, revision=card.revision + 1)
        self._store.put_rate_card(after, card.revision)  # conditional on the revision read
        return after

    def archive_rate_card(self, rate_card_id: str) -> RateCardRecord:
        card, _ = self.rate_card_record(rate_card_id)
        if card.archived_at is not None:
            return card
        after = replace(card, archived_at=self._clock(), revision=card.revision + 1)
        self._store.put_rate_card(after, card.revision)
        return after

    def _check_aliases(self, aliases: tuple[RateCardAlias, ...], self_id: str | None, field: str) -> None:
        for index, alias in enumerate(aliases):
            prefix = f"{field}[{index}]"
            if not alias.name or not alias.name.strip():
                raise InvalidInput(f"{prefix}.name", "must be a non-empty string")
            if alias.starting_at and alias.ending_before and alias.ending_before <= alias.starting_at:
                raise InvalidInput(f"{prefix}.ending_before", "must be after starting_at")
            for other in aliases[:index]:
                if alias.overlaps(other):
                    raise InvalidInput(f"{prefix}.name", "is given twice over overlapping times")
        # Alias names are unique among active rate cards at any instant (lookups resolve to one card).
        for card in self._store.all_rate_cards():
            if card.id == self_id or card.archived_at is not None:
                continue
            for index, alias in enumerate(aliases):
                if any(alias.overlaps(other) for other in card.aliases):
                    raise InvalidInput(f"{field}[{index}].name", f"is already an alias of rate card {card.id} over an overlapping time")

    def _conversions(
        self, requested: tuple[tuple[str, Decimal], ...], existing: tuple[CreditTypeConversion, ...], field: str
    ) -> tuple[CreditTypeConversion, ...]:
        known = {c.credit_type.id for c in existing}
        result = []
        for index, (credit_type_id, factor) in enumerate(requested):
            prefix = f"{field}[{index}]"
            if credit_type_id == USD_CENTS.id:
                raise InvalidInput(f"{prefix}.custom_credit_type_id", "must be a custom pricing unit, not the fiat one")
            credit_type = self._custom_credit_type(credit_type_id, f"{prefix}.custom_credit_type_id")
            if credit_type_id in known:
                raise InvalidInput(f"{prefix}.custom_credit_type_id", "already has a conversion on this rate card")
            if isinstance(factor, bool) or not isinstance(factor, (int, Decimal)) or not Decimal(factor).is_finite() or factor <= 0:
                raise InvalidInput(f"{prefix}.fiat_per_custom_credit", "must be a number greater than 0")
            known.add(credit_type_id)
            result.append(CreditTypeConversion(credit_type, Decimal(factor)))
        return tuple(result)

    # == rates =================================================================================
    def add_rates(self, rate_card_id: str, drafts: list[RateDraft], *, single: bool = False) -> list[Rate]:
        """Add rates atomically: all are stored, or none (with the field and rule that failed).

        Field names are `rates[i].<field>` (addRates), or the bare field for one rate (addRate)."""
        field = "rates"
        try:
            return self._add_rates(rate_card_id, drafts, field)
        except InvalidInput as exc:
            raise (_prefixed(exc, f"{field}[0].", "") if single else exc) from None

    def _add_rates(self, rate_card_id: str, drafts: list[RateDraft], field: str) -> list[Rate]:
        card, stored = self.rate_card_record(rate_card_id)
        if card.archived_at is not None:
            raise InvalidInput("rate_card_id", "is archived: rates cannot be added")
        if not drafts:
            raise InvalidInput(field, "must hold at least one rate")
        if len(drafts) > 99:
            raise InvalidInput(field, "must hold at most 99 rates per request")
        rates = [replace(d.rate, credit_type=self._rate_credit_type(card, d.credit_type_id, f"{field}[{i}].credit_type_id")) for i, d in enumerate(drafts)]
        products: dict[str, Product] = {}
        for index, rate in enumerate(rates):
            if rate.product_id in products:
                continue
            record = self._store.get_product(rate.product_id)
            if record is None:
                raise InvalidInput(f"{field}[{index}].product_id", "is not a known product")
            if record.product.archived_at is not None:
                raise InvalidInput(f"{field}[{index}].product_id", "is archived: it cannot be used in new rates")
            products[rate.product_id] = record.product
        for index, rate in enumerate(rates):  # before rates are compared in time
            try:
                validate_rates((rate,), field)
            except InvalidInput as exc:
                raise _prefixed(exc, f"{field}[0].", f"{field}[{index}].") from None
        # Price changes: an open-ended rate ends where a later open-ended rate of its identity starts.
        entries: list[tuple[int | None, StoredRate]] = [(None, s) for s in stored]
        entries += [(i, StoredRate(new_rate_key(r), r)) for i, r in enumerate(rates)]
        groups: dict[tuple, list[tuple[int | None, StoredRate]]] = defaultdict(list)
        for entry in entries:
            groups[_identity(entry[1].rate)].append(entry)
        changed: dict[str, StoredRate] = {}
        final: dict[str, tuple[int | None, StoredRate]] = {}
        for group in groups.values():
            group.sort(key=lambda e: e[1].rate.starting_at)
            for position, (index, entry) in enumerate(group):
                rate = entry.rate
                following = group[position + 1][1].rate if position + 1 < len(group) else None
                if (
                    following is not None
                    and rate.ending_before is None
                    and following.ending_before is None
                    and rate.starting_at < following.starting_at
                ):
                    entry = StoredRate(entry.key, replace(rate, ending_before=following.starting_at))
                    changed[entry.key] = entry
                final[entry.key] = (index, entry)
            # Any overlap left is refused, named on the new rate involved.
            members = [final[e[1].key] for e in group]
            for index, entry in members:
                if index is None:
                    continue
                others = tuple(e.rate for i, e in members if i is None or i < index)
                try:
                    validate_rates((*others, entry.rate), field)
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"{field}[{index}].starting_at",
                        "overlaps another rate on the rate card for the same product and pricing group values",
                    ) from exc
        new_rates = tuple(e.rate for _, e in sorted((v for v in final.values() if v[0] is not None), key=lambda v: v[0]))
        validate_rate_card(new_rates, products, field)
        to_write = [e for i, e in final.values() if i is not None] + [
            e for key, e in changed.items() if final[key][0] is None
        ]
        self._store.put_rates(card.id, card.revision, to_write)
        return [final_entry.rate for final_entry in sorted((e for i, e in final.values() if i is not None), key=lambda e: e.key)]

    def _rate_credit_type(self, card: RateCardRecord, credit_type_id: str | None, field: str) -> CreditType:
        if credit_type_id is None or credit_type_id == card.fiat_credit_type.id:
            return card.fiat_credit_type
        for conversion in card.credit_type_conversions:
            if conversion.credit_type.id == credit_type_id:
                return conversion.credit_type
        self._custom_credit_type(credit_type_id, field)  # unknown or archived: say so
        raise InvalidInput(field, "has no credit_type_conversions entry on the rate card")

    def rates_at(
        self, rate_card_id: str, at: datetime, selectors: list[RateSelector] | None = None
    ) -> list[tuple[Rate, ProductRecord]]:
        """The rates in effect at an instant matching any selector (all rates without selectors)."""
        card = self.rate_card(rate_card_id)
        products: dict[str, ProductRecord] = {}
        result = []
        for rate in RateTimeline(card.rates).in_effect(at):
            record = products.get(rate.product_id)
            if record is None:
                record = products[rate.product_id] = self.product_record(rate.product_id)
            version = record.product.at(at)
            if selectors and not any(s.matches(rate, version) for s in selectors):
                continue
            result.append((rate, record))
        result.sort(
            key=lambda pair: (
                pair[1].product.at(at).name,
                pair[0].product_id,
                sorted((pair[0].pricing_group_values or {}).items()),
                pair[0].billing_frequency.value if pair[0].billing_frequency else "",
            )
        )
        return result

    def rate_schedule(
        self,
        rate_card_id: str,
        starting_at: datetime,
        ending_before: datetime | None = None,
        selectors: list[RateSelector] | None = None,
    ) -> list[tuple[Rate, ProductRecord]]:
        """The card's rates in effect at some time in [starting_at, ending_before), matching any
        selector (all without selectors), with their products (getRateSchedule)."""
        if ending_before is not None and ending_before <= starting_at:
            raise InvalidInput("ending_before", "must be after starting_at")
        card = self.rate_card(rate_card_id)
        records = {r.product.id: r for r in self._store.all_products()}
        products = {product_id: record.product for product_id, record in records.items()}
        found = rates_overlapping(card.rates, products, starting_at, ending_before, selectors or ())
        return [(rate, records[rate.product_id]) for rate in found]
