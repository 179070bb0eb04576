"""A contract: a rate card plus the customer's own overrides, subscriptions and scheduled charges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Mapping

from tally.billing.errors import InvalidInput
from tally.billing.pricing.catalog import Product, ProductType
from tally.billing.pricing.contract_charges import (
    Discount,
    ProServices,
    validate_discount,
    validate_professional_services,
)
from tally.billing.pricing.money import USD_CENTS, CreditType
from tally.billing.pricing.overrides import (
    MultiplierPrioritization,
    Override,
    OverrideType,
    PriceBook,
    validate_overrides,
)
from tally.billing.pricing.periods import (
    Period,
    UsageStatementSchedule,
    billing_anchor,
    billing_periods,
    period_containing,
    validate_schedule,
)
from tally.billing.pricing.rates import Rate, RateTimeline, RateType, validate_rates
from tally.billing.pricing.subscriptions import (
    ScheduledCharge,
    Subscription,
    validate_scheduled_charge,
    validate_subscription,
)
from tally.billing.pricing.usage_filters import FilterWindow, UsageFilter, filter_windows, validate_usage_filters
from tally.billing.pricing.validation import window

# Which rate types may price which product types.
RATE_TYPES_FOR = {
    ProductType.USAGE: {RateType.FLAT, RateType.TIERED},
    ProductType.COMPOSITE: {RateType.PERCENTAGE, RateType.TIERED_PERCENTAGE},
    ProductType.SUBSCRIPTION: {RateType.SUBSCRIPTION, RateType.FLAT},
    ProductType.FIXED: set(),  # priced by scheduled charges on the contract
}


@dataclass(frozen=True, slots=True)
class RateCard:
    id: str
    name: str
    rates: tuple[Rate, ...] = ()
    fiat_credit_type: CreditType = USD_CENTS
    # custom pricing unit id -> fiat per unit: how invoices convert spend in that unit
    credit_type_conversions: Mapping[str, Decimal] = field(default_factory=dict)
    # product ids in the order their lines appear on invoices (others after, by the default order)
    product_order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Contract:
    id: str
    customer_id: str
    starting_at: datetime
    rate_card: RateCard
    ending_before: datetime | None = None
    overrides: tuple[Override, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    scheduled_charges: tuple[ScheduledCharge, ...] = ()
    usage_statement_schedule: UsageStatementSchedule = field(default_factory=UsageStatementSchedule)
    multiplier_override_prioritization: MultiplierPrioritization = MultiplierPrioritization.LOWEST_MULTIPLIER
    usage_filter: UsageFilter | None = None  # None: the contract bills all the customer's usage
    usage_filter_updates: tuple[UsageFilter, ...] = ()  # later filters, each from its starting_at
    discounts: tuple[Discount, ...] = ()
    professional_services: ProServices = field(default_factory=ProServices)
    # scheduled_charges_on_usage_invoices ALL: a scheduled charge whose timestamp is a usage
    # period's ending_before is billed on that period's USAGE invoice (billing/pricing/invoices.py).
    scheduled_charges_on_usage_invoices: bool = False
    # Customer hierarchies (billing/consolidation.py): who pays its invoices when not itself, and
    # whether its fiat USAGE invoices are billed through a consolidated invoice instead.
    payer: tuple[str, str] | None = None
    consolidated_usage: bool = False

    @property
    def filters_usage(self) -> bool:
        return self.usage_filter is not None

    def usage_filter_windows(self) -> list[FilterWindow]:
        """Time cut where the usage filter changes, with the filter over each stretch (None: all usage)."""
        return filter_windows(self.usage_filter, self.usage_filter_updates, self.starting_at)

    def usage_filter_at(self, instant: datetime) -> UsageFilter | None:
        for start, end, usage_filter in self.usage_filter_windows():
            if (start is None or start <= instant) and (end is None or instant < end):
                return usage_filter
        return None

    def price_book(self) -> PriceBook:
        return PriceBook(RateTimeline(self.rate_card.rates), self.overrides, self.multiplier_override_prioritization)

    @property
    def billing_anchor(self) -> datetime:
        return billing_anchor(self.usage_statement_schedule, self.starting_at)

    def periods(self, until: datetime | None = None) -> list[Period]:
        return billing_periods(self.usage_statement_schedule, self.starting_at, self.ending_before, until)

    def period_containing(self, instant: datetime) -> Period | None:
        return period_containing(self.usage_statement_schedule, self.starting_at, self.ending_before, instant)


def validate_rate_card(rates: tuple[Rate, ...], products: Mapping[str, Product], field: str = "rates") -> None:
    validate_rates(rates, field)
    for index, rate in enumerate(rates):
        product = products.get(rate.product_id)
        if product is None:
            raise InvalidInput(f"{field}[{index}].product_id", "is not a known product")
        if rate.rate_type not in RATE_TYPES_FOR[product.type]:
            raise InvalidInput(
                f"{field}[{index}].rate_type", f"{rate.rate_type.value} cannot price a {product.type.value} product"
            )
        if product.type is ProductType.SUBSCRIPTION and rate.billing_frequency is None:
            raise InvalidInput(f"{field}[{index}].billing_frequency", "is required for SUBSCRIPTION products")
        version = product.at(rate.starting_at)
        for key in rate.pricing_group_values or {}:
            if key not in version.pricing_group_key:
                raise InvalidInput(f"{field}[{index}].pricing_group_values", f"{key!r} is not a pricing group key of the product")


def _validate_invoice_generation(contract: Contract) -> None:
    start = contract.usage_statement_schedule.invoice_generation_starting_at
    if start is None:
        return
    field = "usage_statement_schedule.invoice_generation_starting_at"
    if start < contract.starting_at or (contract.ending_before is not None and start >= contract.ending_before):
        raise InvalidInput(field, "must be within the contract (from its starting_at, before its ending_before)")
    period = contract.period_containing(start)
    if period is None or period.starting_at != start:
        raise InvalidInput(field, "must be the start of one of the contract's billing periods")


def validate_contract(contract: Contract, products: Mapping[str, Product]) -> None:
    """Everything the invoice builder relies on. Field names are those of the create request."""
    window(contract.starting_at, contract.ending_before, "")
    validate_schedule(contract.usage_statement_schedule)
    _validate_invoice_generation(contract)
    validate_usage_filters(contract.usage_filter, contract.usage_filter_updates, contract.starting_at, contract.ending_before)
    validate_rate_card(contract.rate_card.rates, products)
    on_card = {rate.product_id for rate in contract.rate_card.rates}
    validate_overrides(contract.overrides, contract.multiplier_override_prioritization)
    for index, override in enumerate(contract.overrides):
        named = [(f"overrides[{index}].product_id", override.product_id)] + [
            (f"overrides[{index}].override_specifiers[{position}].product_id", spec.product_id)
            for position, spec in enumerate(override.override_specifiers)
        ]
        for field_name, product_id in named:
            if product_id is not None and product_id not in on_card:
                raise InvalidInput(field_name, "is not on the rate card")
        if override.type is OverrideType.OVERWRITE and override.product_id is not None:
            assert override.overwrite_rate is not None
            product_type = products[override.product_id].type
            if override.overwrite_rate.rate_type not in RATE_TYPES_FOR[product_type]:
                raise InvalidInput(
                    f"overrides[{index}].overwrite_rate.rate_type",
                    f"{override.overwrite_rate.rate_type.value} cannot price a {product_type.value} product",
                )
    timeline = RateTimeline(contract.rate_card.rates)
    for index, subscription in enumerate(contract.subscriptions):
        prefix = f"subscriptions[{index}]"
        validate_subscription(subscription, prefix)
        product = products.get(subscription.product_id)
        if product is None or product.type is not ProductType.SUBSCRIPTION:
            raise InvalidInput(f"{prefix}.subscription_rate.product_id", "must be a SUBSCRIPTION product")
        if not any(
            rate.billing_frequency in (None, subscription.billing_frequency)
            for rate in timeline.of_product(subscription.product_id)
        ):
            raise InvalidInput(
                f"{prefix}.subscription_rate.billing_frequency", "no rate on the rate card has this product and frequency"
            )
        if subscription.starting_at < contract.starting_at:
            raise InvalidInput(f"{prefix}.starting_at", "must not be before the contract starts")
    for index, charge in enumerate(contract.scheduled_charges):
        prefix = f"scheduled_charges[{index}]"
        product = products.get(charge.product_id)
        if product is None or product.type is not ProductType.FIXED:
            raise InvalidInput(f"{prefix}.product_id", "must be a FIXED product")
        validate_scheduled_charge(charge, prefix)
        for position, item in enumerate(charge.schedule_items):
            if contract.period_containing(item.timestamp) is None:
                raise InvalidInput(
                    f"{prefix}.schedule.schedule_items[{position}].timestamp", "must fall within the contract"
                )
    for index, discount in enumerate(contract.discounts):
        prefix = f"discounts[{index}]"
        validate_discount(discount, products, prefix)
        for position, item in enumerate(discount.schedule_items):
            if contract.period_containing(item.timestamp) is None:
                raise InvalidInput(f"{prefix}.schedule.schedule_items[{position}].timestamp", "must fall within the contract")
    validate_professional_services(contract.professional_services, products, "professional_services")
    for charge in contract.professional_services.charges:
        if contract.period_containing(charge.issued_at) is None:
            raise InvalidInput("issued_at", "must fall within the contract")
