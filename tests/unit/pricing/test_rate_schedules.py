"""Rate schedules: a card's rates over a window, and what a contract pays at an instant after its
overrides, each segment the longest stretch of one price. Prices are checked by hand, and against
the invoice the same contract rates."""

from __future__ import annotations

import pytest

from tally.billing.pricing import (
    MultiplierPrioritization,
    Override,
    OverrideSpecifier,
    OverrideTier,
    OverrideType,
    OverwriteRate,
    RateType,
)
from tally.billing.pricing.periods import Frequency
from tally.billing.pricing.pricers import graduated_charge
from tally.billing.pricing.rate_schedules import RateSelector, contract_rate_schedule, rates_overlapping
from tally.billing.pricing.rates import Rate
from tests.unit.pricing.builders import D, FakeUsage, at, catalog, contract, flat, invoice, product, tiered

API = product("api", name="API calls", tags=("ai",), pricing_group_key=("region",))
STORAGE = product("storage", name="Storage", tags=("disk",))
SEATS = product("seats", name="Seats")
PRODUCTS = catalog(API, STORAGE, SEATS)
YEAR_START = at(1, 1, year=2025)


def multiplier(id, value, start=at(1, 1), end=None, **target):
    target = target or {"product_id": "api"}
    return Override(id, start, end, type=OverrideType.MULTIPLIER, multiplier=D(value), **target)


def overwrite(id, price, start=at(1, 1), end=None):
    return Override(id, start, end, type=OverrideType.OVERWRITE, product_id="api",
                    overwrite_rate=OverwriteRate(RateType.FLAT, price=D(price)))


def row(price):
    """(product, pricing group values, start, end, list price, override shown) of a segment."""
    overridden = price.override_rate
    shown = None
    if overridden is not None:
        shown = overridden.price if overridden.price is not None else tuple((t.price, t.size) for t in overridden.tiers)
    return (
        price.product_id,
        dict(price.pricing_group_values or {}),
        price.starting_at.strftime("%m-%d"),
        None if price.ending_before is None else price.ending_before.strftime("%m-%d"),
        price.list_rate.price,
        shown,
    )


CONTRACT_CASES = [
    ("without overrides, the list price from the contract's start on",
     dict(rates=(flat("api", 10),)), at(1, 10),
     [("api", {}, "01-01", None, D(10), None)]),
    ("a price change on the card ends the segment",
     dict(rates=(flat("api", 10, end=at(2, 1)), flat("api", 12, start=at(2, 1)))), at(1, 10),
     [("api", {}, "01-01", "02-01", D(10), None)]),
    ("after the change, the new price from the change on",
     dict(rates=(flat("api", 10, end=at(2, 1)), flat("api", 12, start=at(2, 1)))), at(2, 10),
     [("api", {}, "02-01", None, D(12), None)]),
    ("a multiplier over part of the month shows its price over exactly its time",
     dict(rates=(flat("api", 10),), overrides=(multiplier("m", "0.8", at(1, 10), at(1, 20)),)), at(1, 15),
     [("api", {}, "01-10", "01-20", D(10), D(8))]),
    ("before a multiplier starts, the list price until it starts",
     dict(rates=(flat("api", 10),), overrides=(multiplier("m", "0.8", at(1, 10), at(1, 20)),)), at(1, 5),
     [("api", {}, "01-01", "01-10", D(10), None)]),
    ("an overwrite replaces the price",
     dict(rates=(flat("api", 10),), overrides=(overwrite("w", 7),)), at(1, 15),
     [("api", {}, "01-01", None, D(10), D(7))]),
    ("a second overwrite at the same price is a new segment: a different override prices it",
     dict(rates=(flat("api", 10),), overrides=(overwrite("w1", 7, end=at(1, 10)), overwrite("w2", 7, start=at(1, 10)))),
     at(1, 15), [("api", {}, "01-10", None, D(10), D(7))]),
    ("a tiered override cuts a flat price into tiers",
     dict(rates=(flat("api", 10),), multiplier_override_prioritization=MultiplierPrioritization.EXPLICIT,
          overrides=(Override("t", at(1, 1), type=OverrideType.TIERED, product_id="api", priority=D(1),
                              tiers=(OverrideTier(D("0.5"), D(100)),)),)), at(1, 15),
     [("api", {}, "01-01", None, D(10), ((D(5), D(100)), (D(10), None)))]),
    ("a multiplier scales every tier of a tiered rate",
     dict(rates=(tiered("api", [(10, 100), (4,)]),), overrides=(multiplier("m", "0.5"),)), at(1, 15),
     [("api", {}, "01-01", None, None, ((D(5), D(100)), (D(2), None)))]),
    ("a specifier on a pricing group value adds a segment for that value",
     dict(rates=(flat("api", 10),),
          overrides=(multiplier("eu", "0.5", product_id=None,
                                override_specifiers=(OverrideSpecifier(product_id="api", pricing_group_values={"region": "eu"}),)),)),
     at(1, 15),
     [("api", {}, "01-01", None, D(10), None), ("api", {"region": "eu"}, "01-01", None, D(10), D(5))]),
    ("a specifier of an override not in effect adds no segment",
     dict(rates=(flat("api", 10),),
          overrides=(multiplier("eu", "0.5", at(2, 1), product_id=None,
                                override_specifiers=(OverrideSpecifier(product_id="api", pricing_group_values={"region": "eu"}),)),)),
     at(1, 15),
     [("api", {}, "01-01", None, D(10), None)]),
    ("a value the card prices itself is its own rate's segment, not a variant of the default",
     dict(rates=(flat("api", 10), flat("api", 20, pricing_group_values={"region": "eu"})),
          overrides=(multiplier("eu", "0.5", product_id=None,
                                override_specifiers=(OverrideSpecifier(pricing_group_values={"region": "eu"}),)),)),
     at(1, 15),
     [("api", {}, "01-01", None, D(10), None), ("api", {"region": "eu"}, "01-01", None, D(20), D(10))]),
    ("an unentitled rate is not shown",
     dict(rates=(flat("api", 10, entitled=False), flat("storage", 1))), at(1, 15),
     [("storage", {}, "01-01", None, D(1), None)]),
    ("an entitlement override shows it, over the override's time",
     dict(rates=(flat("api", 10, entitled=False),), overrides=(Override("on", at(1, 5), at(1, 25), product_id="api", entitled=True),)),
     at(1, 15),
     [("api", {}, "01-05", "01-25", D(10), None)]),
    ("segments end with the contract",
     dict(rates=(flat("api", 10),), ending_before=at(3, 1)), at(1, 15),
     [("api", {}, "01-01", "03-01", D(10), None)]),
    ("outside the contract there is nothing to pay",
     dict(rates=(flat("api", 10),), ending_before=at(3, 1)), at(3, 1), []),
    ("products sort by name: API calls before Storage",
     dict(rates=(flat("storage", 1), flat("api", 10))), at(1, 15),
     [("api", {}, "01-01", None, D(10), None), ("storage", {}, "01-01", None, D(1), None)]),
]


@pytest.mark.parametrize("terms,instant,expected", [c[1:] for c in CONTRACT_CASES], ids=[c[0] for c in CONTRACT_CASES])
def test_a_contract_rate_schedule_shows_what_the_contract_pays(terms, instant, expected):
    terms = dict(terms)
    rates = terms.pop("rates")
    schedule = contract_rate_schedule(contract(*rates, **terms), PRODUCTS, instant)
    assert [row(p) for p in schedule] == expected


def test_commit_specific_overrides_do_not_change_the_schedule():
    specific = Override("c", at(1, 1), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D("0.5"), commit_specific=True)
    [price] = contract_rate_schedule(contract(flat("api", 10), overrides=(specific,)), PRODUCTS, at(1, 15))
    assert price.override_rate is None and price.pricing.bands[0].price == D(10)


SELECTOR_CASES = [
    ("by product", RateSelector(product_id="storage"), ["storage"]),
    ("by any of the product's tags", RateSelector(product_tags=("disk", "nothing")), ["storage"]),
    ("by exact pricing group values", RateSelector(pricing_group_values={"region": "eu"}), ["api eu"]),
    ("by partial pricing group values", RateSelector(partial_pricing_group_values={"region": "eu"}), ["api eu"]),
    ("by billing frequency", RateSelector(billing_frequency=Frequency.MONTHLY), ["seats"]),
]


@pytest.mark.parametrize("selector,expected", [c[1:] for c in SELECTOR_CASES], ids=[c[0] for c in SELECTOR_CASES])
def test_selectors_choose_the_segments_shown(selector, expected):
    rates = (
        flat("api", 10),
        flat("api", 20, pricing_group_values={"region": "eu"}),
        flat("storage", 1),
        Rate("seats", YEAR_START, RateType.SUBSCRIPTION, price=D(100), billing_frequency=Frequency.MONTHLY),
    )
    schedule = contract_rate_schedule(contract(*rates), PRODUCTS, at(1, 15), [selector])
    assert [" ".join([p.product_id, *(p.pricing_group_values or {}).values()]) for p in schedule] == expected


@pytest.mark.parametrize("quantity", ["1", "99", "100", "250", "1234.5"])
def test_the_schedule_price_times_a_quantity_is_the_invoice_line_total(quantity):
    """Given a tiered rate, an EXPLICIT waterfall of a tiered override and a multiplier from mid-month,
    when usage lands inside the override's time, then the schedule's bands price it to the invoice's total."""
    overrides = (
        Override("t", at(1, 10), type=OverrideType.TIERED, product_id="api", priority=D(1),
                 tiers=(OverrideTier(D("0.5"), D(100)),)),
        Override("m", at(1, 10), type=OverrideType.MULTIPLIER, product_id="api", priority=D(2), multiplier=D("0.9")),
    )
    terms = contract(tiered("api", [("0.3", 200), ("0.1",)]), overrides=overrides,
                     multiplier_override_prioritization=MultiplierPrioritization.EXPLICIT)
    [price] = contract_rate_schedule(terms, catalog(product("api", name="API calls")), at(1, 15))
    assert (price.starting_at, price.ending_before) == (at(1, 10), None)
    line = invoice(terms, catalog(product("api", name="API calls")), FakeUsage().add(at(1, 12), quantity)).line_items[0]
    assert line.total == price.pricing.credit_type.round(graduated_charge(price.pricing.bands, D(0), D(quantity)).precise_total)
    # by hand for 250: 100 at 0.15, 100 at 0.27, 50 at 0.09 = 15 + 27 + 4.5
    if quantity == "250":
        assert line.total == D("46.50")


CARD_CASES = [
    ("a window catches the rates it overlaps", at(1, 15), at(2, 15), None, ["api 01-01", "api 02-01"]),
    ("a rate ending where the window starts is not in it", at(2, 1), None, None, ["api 02-01"]),
    ("without an end, every later rate", at(1, 15), None, None, ["api 01-01", "api 02-01"]),
    ("a window before a rate starts does not show it", at(1, 15), at(2, 1), None, ["api 01-01"]),
    ("a selector keeps what it matches", at(1, 1), None, RateSelector(product_id="storage"), ["storage 2025-01-01"]),
]


@pytest.mark.parametrize("start,end,selector,expected", [c[1:] for c in CARD_CASES], ids=[c[0] for c in CARD_CASES])
def test_a_rate_card_schedule_lists_the_rates_over_a_window(start, end, selector, expected):
    rates = (flat("api", 10, start=at(1, 1), end=at(2, 1)), flat("api", 12, start=at(2, 1)), flat("storage", 1))
    found = rates_overlapping(rates, PRODUCTS, start, end, [selector] if selector else [])
    shown = [f"{r.product_id} {r.starting_at:%m-%d}" if r.starting_at.year == 2026 else f"{r.product_id} {r.starting_at:%Y-%m-%d}"
             for r in found]
    if selector is None:
        shown = [s for s in shown if s.startswith("api")]
    assert shown == expected
