"""The rating engine: catalog, rates, overrides, pricers, billing periods and draft invoices.

Pure domain: no AWS, no environment, no clock. Usage quantities come in through `UsageSource`.
"""

from tally.billing.pricing.catalog import (
    ConversionOperation,
    Product,
    ProductType,
    ProductVersion,
    QuantityConversion,
    QuantityRounding,
    RoundingMethod,
    convert_quantity,
    validate_product,
    validate_product_version,
)
from tally.billing.pricing.contracts import Contract, RateCard, validate_contract, validate_rate_card
from tally.billing.pricing.invoices import Invoice, InvoiceType, UsageSource, assemble_invoices, build_draft_invoices
from tally.billing.pricing.lines import LineItem, LineType, SubLineItem
from tally.billing.pricing.money import USD_CENTS, CreditType
from tally.billing.pricing.overrides import (
    EffectivePricing,
    MultiplierPrioritization,
    Override,
    OverrideSpecifier,
    OverrideTier,
    OverrideType,
    OverwriteRate,
    PriceBook,
    validate_overrides,
)
from tally.billing.pricing.periods import (
    BillingDay,
    Frequency,
    Period,
    UsageStatementSchedule,
    billing_anchor,
    billing_periods,
    period_containing,
    validate_schedule,
)
from tally.billing.pricing.pricers import (
    Band,
    Charge,
    TierCharge,
    graduated_charge,
    price_flat,
    price_percentage,
    price_subscription,
    price_tiered,
    price_tiered_percentage,
)
from tally.billing.pricing.rates import Rate, RateTimeline, RateType, Tier, split_at, validate_rates, validate_tiers
from tally.billing.pricing.subscriptions import (
    CollectionSchedule,
    QuantityChange,
    ScheduledCharge,
    ScheduleItem,
    Subscription,
)

__all__ = [
    "Band", "BillingDay", "Charge", "CollectionSchedule", "Contract", "ConversionOperation", "CreditType",
    "EffectivePricing", "Frequency", "Invoice", "InvoiceType", "LineItem", "LineType", "MultiplierPrioritization", "Override",
    "OverrideSpecifier", "OverrideTier", "OverrideType", "OverwriteRate", "Period", "PriceBook", "Product",
    "ProductType", "ProductVersion", "QuantityChange", "QuantityConversion", "QuantityRounding", "Rate", "RateCard",
    "RateTimeline", "RateType", "RoundingMethod", "ScheduleItem", "ScheduledCharge", "SubLineItem", "Subscription",
    "Tier", "TierCharge", "USD_CENTS", "UsageSource", "UsageStatementSchedule", "billing_anchor", "billing_periods",
    "assemble_invoices", "build_draft_invoices", "convert_quantity", "graduated_charge", "period_containing", "price_flat",
    "price_percentage", "price_subscription", "price_tiered", "price_tiered_percentage", "split_at", "validate_contract", "validate_overrides",
    "validate_product", "validate_product_version", "validate_rate_card", "validate_rates", "validate_schedule",
    "validate_tiers",
]
