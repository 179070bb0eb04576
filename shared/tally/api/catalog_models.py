"""Request bodies and responses of the catalog API (products, pricing units, rate cards, rates).
Field names follow `metronome-sdk`'s types/v1/contracts/product_*, rate_card_*, rate_cards/* and
types/v1/pricing_unit_* modules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field

from tally.api.models import MAX_NAME_LENGTH, CustomFields, Request, parse_instant
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_RATE_CARD_PRODUCT_ORDER
from tally.billing.pricing import (
    ConversionOperation,
    ProductType,
    ProductVersion,
    QuantityConversion,
    QuantityRounding,
    Rate,
    RateType,
    RoundingMethod,
    Tier,
)
from tally.billing.pricing.periods import Frequency
from tally.billing.time import format_rfc3339
from tally.services.catalog import (
    CreditTypeRecord,
    ProductRecord,
    RateCardAlias,
    RateCardRecord,
    RateDraft,
    RateSelector,
)

CREATED_BY = "api"
FrequencyIn = Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"]


def _instant(field: str, value: str | None) -> datetime | None:
    return parse_instant(field, value)


# -- products ------------------------------------------------------------------------------------
class QuantityConversionIn(Request):
    conversion_factor: Decimal
    operation: Literal["MULTIPLY", "DIVIDE"]
    name: str | None = None

    def to_domain(self) -> QuantityConversion:
        return QuantityConversion(self.conversion_factor, ConversionOperation(self.operation), self.name)


class QuantityRoundingIn(Request):
    decimal_places: int
    rounding_method: Literal["ROUND_UP", "ROUND_DOWN", "ROUND_HALF_UP"]

    def to_domain(self) -> QuantityRounding:
        return QuantityRounding(self.decimal_places, RoundingMethod(self.rounding_method))


class _ProductFields(Request):
    billable_metric_id: str | None = None
    composite_product_ids: list[str] | None = None
    composite_tags: list[str] | None = None
    presentation_group_key: list[str] | None = None
    pricing_group_key: list[str] | None = None
    quantity_conversion: QuantityConversionIn | None = None
    quantity_rounding: QuantityRoundingIn | None = None
    tags: list[str] | None = None
    # Accepted for compatibility; they change nothing Tally computes.
    exclude_free_usage: bool | None = None
    include_composite_spend: bool | None = None
    is_refundable: bool | None = None
    netsuite_internal_item_id: str | None = None
    netsuite_overage_item_id: str | None = None
    sql_breakdown_granularity: Literal["HOUR", "SERVICE_PERIOD"] | None = None

    def _version_value(self, name: str) -> Any:
        value = getattr(self, name)
        if name in ("quantity_conversion", "quantity_rounding"):
            return None if value is None else value.to_domain()
        if name in ("composite_product_ids", "composite_tags", "presentation_group_key", "pricing_group_key", "tags"):
            return tuple(value or ())
        return value


class ProductCreate(_ProductFields):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    type: Literal["FIXED", "USAGE", "COMPOSITE", "SUBSCRIPTION"]
    custom_fields: CustomFields = Field(default_factory=dict)

    def to_domain(self) -> tuple[ProductType, ProductVersion]:
        version = ProductVersion(
            starting_at=datetime.min,  # set by the service to the hour of creation
            name=self.name,
            billable_metric_id=self.billable_metric_id,
            composite_product_ids=self._version_value("composite_product_ids"),
            composite_tags=self._version_value("composite_tags"),
            quantity_conversion=self._version_value("quantity_conversion"),
            quantity_rounding=self._version_value("quantity_rounding"),
            pricing_group_key=self._version_value("pricing_group_key"),
            presentation_group_key=self._version_value("presentation_group_key"),
            tags=self._version_value("tags"),
        )
        return ProductType(self.type), version


class ProductUpdate(_ProductFields):
    product_id: str = Field(min_length=1)
    starting_at: str
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)

    def changes(self) -> dict[str, Any]:
        from tally.services.catalog import UPDATABLE_PRODUCT_FIELDS

        return {n: self._version_value(n) for n in UPDATABLE_PRODUCT_FIELDS if n in self.model_fields_set}

    def starting(self) -> datetime:
        return _instant("starting_at", self.starting_at)


class ProductGet(Request):
    id: str = Field(min_length=1)


class ProductArchive(Request):
    product_id: str = Field(min_length=1)


class ProductList(Request):
    archive_filter: Literal["ARCHIVED", "NOT_ARCHIVED", "ALL"] = "NOT_ARCHIVED"


def _version_state(record: ProductRecord, version: ProductVersion) -> dict:
    created = record.version_created_at.get(version.starting_at, record.created_at)
    state: dict[str, Any] = {
        "created_at": format_rfc3339(created),
        "created_by": CREATED_BY,
        "name": version.name,
        "starting_at": format_rfc3339(version.starting_at),
        "tags": list(version.tags),
    }
    if version.billable_metric_id:
        state["billable_metric_id"] = version.billable_metric_id
    if version.composite_product_ids or version.composite_tags:
        state["composite_product_ids"] = list(version.composite_product_ids)
        state["composite_tags"] = list(version.composite_tags)
    if version.pricing_group_key:
        state["pricing_group_key"] = list(version.pricing_group_key)
    if version.presentation_group_key:
        state["presentation_group_key"] = list(version.presentation_group_key)
    if version.quantity_conversion is not None:
        qc = version.quantity_conversion
        state["quantity_conversion"] = {"conversion_factor": qc.conversion_factor, "operation": qc.operation.value}
        if qc.name:
            state["quantity_conversion"]["name"] = qc.name
    if version.quantity_rounding is not None:
        qr = version.quantity_rounding
        state["quantity_rounding"] = {"decimal_places": qr.decimal_places, "rounding_method": qr.rounding_method.value}
    return state


def product_json(record: ProductRecord, now: datetime) -> dict:
    product = record.product
    body: dict[str, Any] = {
        "id": product.id,
        "type": product.type.value,
        "initial": _version_state(record, product.versions[0]),
        "current": _version_state(record, product.at(now)),
        "updates": [_version_state(record, v) for v in product.versions[1:]],
        "custom_fields": dict(record.custom_fields),
    }
    if product.archived_at is not None:
        body["archived_at"] = format_rfc3339(product.archived_at)
    return body


# -- pricing units -------------------------------------------------------------------------------
class CreditTypeCreate(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class CreditTypeArchive(Request):
    id: str = Field(min_length=1)


def credit_type_json(record: CreditTypeRecord) -> dict:
    from tally.billing.pricing import USD_CENTS

    c = record.credit_type
    return {"id": c.id, "name": c.name, "is_currency": c.id == USD_CENTS.id}


# -- rate cards ----------------------------------------------------------------------------------
class AliasIn(Request):
    name: str = Field(min_length=1)
    starting_at: str | None = None
    ending_before: str | None = None

    def to_domain(self, prefix: str) -> RateCardAlias:
        return RateCardAlias(
            self.name, _instant(f"{prefix}.starting_at", self.starting_at), _instant(f"{prefix}.ending_before", self.ending_before)
        )


class CreditTypeConversionIn(Request):
    custom_credit_type_id: str = Field(min_length=1)
    fiat_per_custom_credit: Decimal


def _aliases(aliases: list[AliasIn] | None) -> tuple[RateCardAlias, ...] | None:
    return None if aliases is None else tuple(a.to_domain(f"aliases[{i}]") for i, a in enumerate(aliases))


def _conversions(items: list[CreditTypeConversionIn] | None) -> tuple[tuple[str, Decimal], ...]:
    return tuple((c.custom_credit_type_id, c.fiat_per_custom_credit) for c in items or ())


class RateCardCreate(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    aliases: list[AliasIn] | None = None
    credit_type_conversions: list[CreditTypeConversionIn] | None = None
    custom_fields: CustomFields = Field(default_factory=dict)
    description: str | None = None
    fiat_credit_type_id: str | None = None

    def to_kwargs(self) -> dict:
        return {
            "description": self.description,
            "aliases": _aliases(self.aliases) or (),
            "fiat_credit_type_id": self.fiat_credit_type_id,
            "credit_type_conversions": _conversions(self.credit_type_conversions),
            "custom_fields": self.custom_fields,
        }


class RateCardUpdate(Request):
    rate_card_id: str = Field(min_length=1)
    add_credit_type_conversions: list[CreditTypeConversionIn] | None = None
    aliases: list[AliasIn] | None = None
    description: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)

    def to_kwargs(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "aliases": _aliases(self.aliases),
            "add_credit_type_conversions": _conversions(self.add_credit_type_conversions),
        }


class RateCardId(Request):
    id: str = Field(min_length=1)


class RateCardProductOrderSet(Request):
    rate_card_id: str = Field(min_length=1)
    product_order: list[str] = Field(max_length=MAX_RATE_CARD_PRODUCT_ORDER)


class ProductMoveIn(Request):
    product_id: str = Field(min_length=1)
    position: int = Field(ge=0, le=MAX_RATE_CARD_PRODUCT_ORDER)  # 0-based; a float with a fraction is a 400


class RateCardProductsMove(Request):
    rate_card_id: str = Field(min_length=1)
    product_moves: list[ProductMoveIn] = Field(min_length=1, max_length=MAX_RATE_CARD_PRODUCT_ORDER)


class RateCardList(Request):
    model_config = ConfigDict(extra="ignore")  # the SDK's list takes a free-form body


def rate_card_json(card: RateCardRecord) -> dict:
    body: dict[str, Any] = {
        "id": card.id,
        "created_at": format_rfc3339(card.created_at),
        "created_by": CREATED_BY,
        "name": card.name,
        "aliases": [
            {
                k: v
                for k, v in {
                    "name": a.name,
                    "starting_at": None if a.starting_at is None else format_rfc3339(a.starting_at),
                    "ending_before": None if a.ending_before is None else format_rfc3339(a.ending_before),
                }.items()
                if v is not None
            }
            for a in card.aliases
        ],
        "credit_type_conversions": [
            {
                "custom_credit_type": {"id": c.credit_type.id, "name": c.credit_type.name},
                "fiat_per_custom_credit": f"{c.fiat_per_custom_credit:f}",
            }
            for c in card.credit_type_conversions
        ],
        "custom_fields": dict(card.custom_fields),
        "fiat_credit_type": {"id": card.fiat_credit_type.id, "name": card.fiat_credit_type.name},
    }
    if card.description is not None:
        body["description"] = card.description
    if card.archived_at is not None:
        body["archived_at"] = format_rfc3339(card.archived_at)
    return body


# -- rates ---------------------------------------------------------------------------------------
class TierIn(Request):
    price: Decimal
    size: Decimal | None = None


class RateIn(Request):
    entitled: bool
    product_id: str = Field(min_length=1)
    rate_type: Literal["FLAT", "PERCENTAGE", "SUBSCRIPTION", "TIERED", "TIERED_PERCENTAGE", "CUSTOM"]
    starting_at: str
    billing_frequency: FrequencyIn | None = None
    commit_rate: dict | None = None
    credit_type_id: str | None = None
    custom_rate: dict | None = None
    ending_before: str | None = None
    is_prorated: bool | None = None
    price: Decimal | None = None
    pricing_group_values: dict[str, str] | None = None
    quantity: Decimal | None = None
    tiers: list[TierIn] | None = None

    def to_draft(self, prefix: str) -> RateDraft:
        if self.custom_rate is not None:
            raise InvalidInput(f"{prefix}custom_rate", "is not supported")
        commit_price = None
        if self.commit_rate is not None:
            if self.rate_type != "FLAT" or self.commit_rate.get("rate_type", "FLAT") != "FLAT":
                raise InvalidInput(f"{prefix}commit_rate", "only a FLAT commit_rate on a FLAT rate is supported")
            try:
                commit_price = Decimal(str(self.commit_rate["price"]))
            except (KeyError, ArithmeticError, ValueError) as exc:
                raise InvalidInput(f"{prefix}commit_rate.price", "must be a number") from exc
            if not commit_price.is_finite() or commit_price < 0:
                raise InvalidInput(f"{prefix}commit_rate.price", "must be zero or more")
        if self.rate_type == "CUSTOM":
            raise InvalidInput(f"{prefix}rate_type", "CUSTOM rates are not supported")
        rate = Rate(
            product_id=self.product_id,
            starting_at=_instant(f"{prefix}starting_at", self.starting_at),
            rate_type=RateType(self.rate_type),
            entitled=self.entitled,
            ending_before=_instant(f"{prefix}ending_before", self.ending_before),
            price=self.price,
            tiers=tuple(Tier(t.price, t.size) for t in self.tiers or ()),
            pricing_group_values=self.pricing_group_values or None,
            quantity=self.quantity,
            commit_price=commit_price,
            is_prorated=self.is_prorated,
            billing_frequency=None if self.billing_frequency is None else Frequency(self.billing_frequency),
        )
        return RateDraft(rate, self.credit_type_id)


class RateAdd(RateIn):
    rate_card_id: str = Field(min_length=1)


class RatesAdd(Request):
    rate_card_id: str = Field(min_length=1)
    rates: list[RateIn]


class SelectorIn(Request):
    billing_frequency: FrequencyIn | None = None
    partial_pricing_group_values: dict[str, str] | None = None
    pricing_group_values: dict[str, str] | None = None
    product_id: str | None = None
    product_tags: list[str] | None = None

    def to_domain(self) -> RateSelector:
        return RateSelector(
            product_id=self.product_id,
            pricing_group_values=self.pricing_group_values,
            partial_pricing_group_values=self.partial_pricing_group_values,
            product_tags=None if self.product_tags is None else tuple(self.product_tags),
            billing_frequency=None if self.billing_frequency is None else Frequency(self.billing_frequency),
        )


class RatesGet(Request):
    at: str
    rate_card_id: str = Field(min_length=1)
    selectors: list[SelectorIn] | None = None


def rate_json(rate: Rate) -> dict:
    body: dict[str, Any] = {
        "rate_type": rate.rate_type.value,
        "credit_type": {"id": rate.credit_type.id, "name": rate.credit_type.name},
    }
    if rate.price is not None:
        body["price"] = rate.price
    if rate.tiers:
        body["tiers"] = [{"price": t.price, **({"size": t.size} if t.size is not None else {})} for t in rate.tiers]
    if rate.pricing_group_values:
        body["pricing_group_values"] = dict(rate.pricing_group_values)
    if rate.quantity is not None:
        body["quantity"] = rate.quantity
    if rate.is_prorated is not None:
        body["is_prorated"] = rate.is_prorated
    if rate.commit_price is not None:
        body["commit_rate"] = {"rate_type": "FLAT", "price": rate.commit_price}
    return body


def rate_schedule_json(rate: Rate, record: ProductRecord, at: datetime) -> dict:
    version = record.product.at(at)
    body: dict[str, Any] = {
        "entitled": rate.entitled,
        "product_custom_fields": dict(record.custom_fields),
        "product_id": rate.product_id,
        "product_name": version.name,
        "product_tags": list(version.tags),
        "rate": rate_json(rate),
        "starting_at": format_rfc3339(rate.starting_at),
    }
    return body | rate_scope_json(rate)


def rate_scope_json(rate: Rate) -> dict:
    """The optional fields that say when and for what a rate applies, as rate schedules show them."""
    scope: dict[str, Any] = {}
    if rate.ending_before is not None:
        scope["ending_before"] = format_rfc3339(rate.ending_before)
    if rate.billing_frequency is not None:
        scope["billing_frequency"] = rate.billing_frequency.value
    if rate.pricing_group_values:
        scope["pricing_group_values"] = dict(rate.pricing_group_values)
    return scope
