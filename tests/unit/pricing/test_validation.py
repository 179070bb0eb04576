"""Bad input is refused with InvalidInput naming the field and the rule, before anything is priced."""

from dataclasses import replace
from datetime import datetime

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import (
    BillingDay,
    CollectionSchedule,
    ConversionOperation,
    Frequency,
    MultiplierPrioritization,
    Override,
    OverrideTier,
    OverrideType,
    ProductType,
    QuantityConversion,
    QuantityRounding,
    Rate,
    RateType,
    RoundingMethod,
    ScheduledCharge,
    ScheduleItem,
    Subscription,
    UsageStatementSchedule,
    validate_contract,
    validate_product,
)
from tests.unit.pricing.builders import D, at, catalog, contract, flat, product, tiered

API = product("api", pricing_group_key=("region",))
SEATS = product("seats", ProductType.SUBSCRIPTION)
SETUP = product("setup", ProductType.FIXED)
PRODUCTS = catalog(API, SEATS, SETUP, product("support", ProductType.COMPOSITE, composite_tags=("billable",)))
SEAT_RATE = Rate("seats", at(1, 1), RateType.SUBSCRIPTION, price=D(1000), billing_frequency=Frequency.MONTHLY)


def seats(**kw):
    fields = dict(
        id="s1", product_id="seats", collection_schedule=CollectionSchedule.ADVANCE,
        billing_frequency=Frequency.MONTHLY, starting_at=at(1, 1), initial_quantity=D(1),
    )
    return Subscription(**{**fields, **kw})


CASES = [
    ("a rate starting off the hour", [flat("api", 1, start=at(1, 1, 0, minute=30))], {}, "rates[0].starting_at"),
    ("a rate ending off the hour", [flat("api", 1, end=datetime(2026, 2, 1, 0, 0, 1, tzinfo=at(1, 1).tzinfo))], {},
     "rates[0].ending_before"),
    ("a rate ending before it starts", [flat("api", 1, start=at(2, 1), end=at(1, 1))], {}, "rates[0].ending_before"),
    ("a rate without a timezone", [flat("api", 1, start=datetime(2026, 1, 1))], {}, "rates[0].starting_at"),
    ("two open-ended rates for the same product overlap", [flat("api", 1), flat("api", 2, start=at(3, 1))], {},
     "rates[1].starting_at"),
    ("dated rates overlapping by an hour",
     [flat("api", 1, start=at(1, 1), end=at(2, 1, 1)), flat("api", 2, start=at(2, 1), end=at(3, 1))], {},
     "rates[1].starting_at"),
    ("rates for the same pricing group values overlap",
     [flat("api", 1, pricing_group_values={"region": "eu"}), flat("api", 2, pricing_group_values={"region": "eu"})],
     {}, "rates[1].starting_at"),
    ("tiers with a zero size do not increase", [tiered("api", [(10, 100), (5, 0), (1,)])], {}, "rates[0].tiers[1].size"),
    ("tiers with a negative size", [tiered("api", [(10, -5), (1,)])], {}, "rates[0].tiers[0].size"),
    ("a tier other than the last without a size", [tiered("api", [(10,), (1,)])], {}, "rates[0].tiers[0].size"),
    ("a last tier with a size is not open-ended", [tiered("api", [(10, 100), (1, 50)])], {}, "rates[0].tiers[1].size"),
    ("a tiered rate without tiers", [Rate("api", at(1, 1), RateType.TIERED)], {}, "rates[0].tiers"),
    ("a negative price", [flat("api", -1)], {}, "rates[0].price"),
    ("a negative tier price", [tiered("api", [(-10, 100), (1,)])], {}, "rates[0].tiers[0].price"),
    ("a float price", [Rate("api", at(1, 1), RateType.FLAT, price=0.1)], {}, "rates[0].price"),
    ("a percentage above one", [Rate("support", at(1, 1), RateType.PERCENTAGE, price=D("1.5"))], {}, "rates[0].price"),
    ("a percentage rate on a usage product", [Rate("api", at(1, 1), RateType.PERCENTAGE, price=D("0.1"))], {},
     "rates[0].rate_type"),
    ("a negative subscription rate quantity", [replace(SEAT_RATE, quantity=D(-1))], {}, "rates[0].quantity"),
    ("a rate for a group key the product does not price by", [flat("api", 1, pricing_group_values={"tier": "gold"})],
     {}, "rates[0].pricing_group_values"),
    ("a negative subscription quantity", [SEAT_RATE], {"subscriptions": (seats(initial_quantity=D(-2)),)},
     "subscriptions[0].initial_quantity"),
    ("a subscription without a matching rate frequency", [SEAT_RATE],
     {"subscriptions": (seats(billing_frequency=Frequency.ANNUAL),)}, "subscriptions[0].subscription_rate.billing_frequency"),
    ("a scheduled charge with a negative quantity", [flat("api", 1)],
     {"scheduled_charges": (ScheduledCharge("x", "setup", (ScheduleItem(at(1, 5), D(100), D(-1)),)),)},
     "scheduled_charges[0].schedule.schedule_items[0].quantity"),
    ("a scheduled charge on a usage product", [flat("api", 1)],
     {"scheduled_charges": (ScheduledCharge("x", "api", (ScheduleItem(at(1, 5), D(100)),)),)},
     "scheduled_charges[0].product_id"),
    ("an override starting off the hour", [flat("api", 1)],
     {"overrides": (Override("o", at(1, 1, minute=5), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D(1)),)},
     "overrides[0].starting_at"),
    ("an override on a product not on the card", [flat("api", 1)],
     {"overrides": (Override("o", at(1, 1), type=OverrideType.MULTIPLIER, product_id="seats", multiplier=D(1)),)},
     "overrides[0].product_id"),
    ("a negative multiplier", [flat("api", 1)],
     {"overrides": (Override("o", at(1, 1), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D(-1)),)},
     "overrides[0].multiplier"),
    ("a tiered override without explicit prioritization", [flat("api", 1)],
     {"overrides": (Override("o", at(1, 1), type=OverrideType.TIERED, product_id="api", priority=D(1),
                             tiers=(OverrideTier(D("0.5"), D(10)),)),)},
     "multiplier_override_prioritization"),
    ("a multiplier without a priority under explicit prioritization", [flat("api", 1)],
     {"overrides": (Override("o", at(1, 1), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D(1)),),
      "multiplier_override_prioritization": MultiplierPrioritization.EXPLICIT},
     "overrides[0].priority"),
    ("an overwrite without a rate", [flat("api", 1)],
     {"overrides": (Override("o", at(1, 1), type=OverrideType.OVERWRITE, product_id="api"),)}, "overrides[0].overwrite_rate"),
    ("a custom billing day without an anchor date", [flat("api", 1)],
     {"usage_statement_schedule": UsageStatementSchedule(day=BillingDay.CUSTOM_DATE)},
     "usage_statement_schedule.billing_anchor_date"),
]


@pytest.mark.parametrize("rates,contract_fields,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_contract_input_names_the_field(rates, contract_fields, field):
    with pytest.raises(InvalidInput) as raised:
        validate_contract(contract(*rates, **contract_fields), PRODUCTS)
    assert raised.value.field == field
    assert raised.value.rule


PRODUCT_CASES = [
    ("a conversion factor of zero",
     dict(quantity_conversion=QuantityConversion(D(0), ConversionOperation.DIVIDE)), "quantity_conversion.conversion_factor"),
    ("a negative conversion factor",
     dict(quantity_conversion=QuantityConversion(D(-2), ConversionOperation.MULTIPLY)), "quantity_conversion.conversion_factor"),
    ("negative rounding places",
     dict(quantity_rounding=QuantityRounding(-1, RoundingMethod.ROUND_UP)), "quantity_rounding.decimal_places"),
    ("a usage product without a metric", dict(billable_metric_id=None), "billable_metric_id"),
]


@pytest.mark.parametrize("fields,field", [c[1:] for c in PRODUCT_CASES], ids=[c[0] for c in PRODUCT_CASES])
def test_bad_product_input_names_the_field(fields, field):
    with pytest.raises(InvalidInput) as raised:
        validate_product(product("api", **fields))
    assert raised.value.field == field


def test_a_composite_product_needs_what_it_covers():
    with pytest.raises(InvalidInput) as raised:
        validate_product(product("support", ProductType.COMPOSITE))
    assert raised.value.field == "composite_product_ids"


def test_a_well_formed_contract_passes():
    validate_contract(
        contract(
            flat("api", 1, end=at(2, 1)),
            flat("api", 2, start=at(2, 1)),
            flat("api", 3, pricing_group_values={"region": "eu"}),
            SEAT_RATE,
            subscriptions=(seats(),),
            scheduled_charges=(ScheduledCharge("x", "setup", (ScheduleItem(at(1, 5), D(100)),)),),
        ),
        PRODUCTS,
    )
