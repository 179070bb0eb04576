"""Discounts and professional services on a contract's SCHEDULED invoices: where each lands and
what it adds up to. Totals worked out by hand in each case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import InvoiceType, LineType, ProductType, ScheduledCharge, ScheduleItem, validate_contract
from tally.billing.pricing.contract_charges import (
    Discount,
    ProfessionalService,
    ProServiceCharge,
    ProServices,
)
from tests.unit.pricing.builders import JAN, all_invoices, at, catalog, contract, flat, product

D = Decimal
API = product("api")
SETUP = product("setup", ProductType.FIXED, name="Onboarding")
PROMO = product("promo", ProductType.FIXED, name="Launch discount")
CONSULTING = product("consulting", ProductType.FIXED, name="Consulting")
PRODUCTS = catalog(API, SETUP, PROMO, CONSULTING)
ONBOARDING = ScheduledCharge("sc", "setup", (ScheduleItem(at(1, 10), D(50000)),))
TERM = ProfessionalService("ps", "consulting", D(10), D(15000), D(200000), "Implementation")

# (case, contract parts, [(issue instant, [(line name, quantity, unit price, total)], invoice total)])
CASES = [
    (
        # 50000 - 1500 × 2 = 47000
        "a discount comes off the SCHEDULED invoice issued at its timestamp",
        dict(scheduled_charges=(ONBOARDING,), discounts=(Discount("d", "promo", (ScheduleItem(at(1, 10), D(1500), D(2)),)),)),
        [(at(1, 10), [("Launch discount", D(2), D(-1500), D("-3000.00")), ("Onboarding", D(1), D(50000), D("50000.00"))],
          D("47000.00"))],  # scheduled lines in name order
    ),
    (
        "a discount at its own instant is a SCHEDULED invoice of its own",
        dict(discounts=(Discount("d", "promo", (ScheduleItem(at(1, 20), D("99.995")),), name="Loyalty"),)),
        [(at(1, 20), [("Loyalty", D(1), D("-99.995"), D("-100.00"))], D("-100.00"))],  # rounded once, half up
    ),
    (
        # 3 × 15000 (the term's price) + 1 × 12000 (a price of the line's own) = 57000
        "professional services scheduled on one instant are billed on its invoice",
        dict(professional_services=ProServices((TERM,), (
            ProServiceCharge("l1", "ps", at(1, 15), D(3), D(15000)),
            ProServiceCharge("l2", "ps", at(1, 15), D(1), D(12000), metadata="PO-7"),
        ))),
        [(at(1, 15), [("Implementation", D(3), D(15000), D("45000.00")), ("Implementation", D(1), D(12000), D("12000.00"))],
          D("57000.00"))],
    ),
    (
        "a term with nothing scheduled bills nothing",
        dict(professional_services=ProServices((TERM,), ())),
        [],
    ),
]


@pytest.mark.parametrize("parts, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_scheduled_invoices_of_discounts_and_professional_services(parts, expected):
    invoices = all_invoices(contract(flat("api", 1), **parts), PRODUCTS)
    scheduled = [i for i in invoices if i.type is InvoiceType.SCHEDULED]
    assert [
        (i.starting_at, [(l.name, l.quantity, l.unit_price, l.total) for l in i.line_items], i.total) for i in scheduled
    ] == expected
    for line in (l for i in scheduled for l in i.line_items):
        assert line.type is LineType.SCHEDULED
        assert line.discount_id == ("d" if line.product_id == "promo" else None)
        assert line.professional_service_id == ("ps" if line.product_id == "consulting" else None)


REFUSED = [
    ("a discount under a usage product", dict(discounts=(Discount("d", "api", (ScheduleItem(at(1, 10), D(1)),)),)),
     "discounts[0].product_id"),
    ("a negative discount", dict(discounts=(Discount("d", "promo", (ScheduleItem(at(1, 10), D(-1)),)),)),
     "discounts[0].schedule.schedule_items[0].unit_price"),
    ("a discount after the contract", dict(ending_before=at(2, 1), discounts=(Discount("d", "promo", (ScheduleItem(at(3, 1), D(1)),)),)),
     "discounts[0].schedule.schedule_items[0].timestamp"),
    ("a term under a usage product", dict(professional_services=ProServices((ProfessionalService("ps", "api", D(1), D(1), D(1)),))),
     "professional_services[0].product_id"),
    # 200000 at most: 10 × 15000 + 4 × 15000 = 210000
    ("charges past the term's max_amount", dict(professional_services=ProServices((TERM,), (
        ProServiceCharge("l1", "ps", at(1, 15), D(10), D(15000)), ProServiceCharge("l2", "ps", at(1, 20), D(4), D(15000))))),
     "line_items.amount"),
]


@pytest.mark.parametrize("parts, field", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_discounts_and_professional_services_are_refused_naming_the_field(parts, field):
    with pytest.raises(InvalidInput) as refused:
        validate_contract(contract(flat("api", 1), **parts), PRODUCTS)
    assert refused.value.field == field
