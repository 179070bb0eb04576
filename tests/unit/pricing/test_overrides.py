"""Overrides: each type, their targeting, and the precedence between them."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.billing.pricing import (
    MultiplierPrioritization,
    Override,
    OverrideSpecifier,
    OverrideTier,
    ProductType,
    OverrideType,
    OverwriteRate,
    PriceBook,
    RateTimeline,
    RateType,
    Tier,
)
from tally.billing.pricing.periods import Frequency
from tests.unit.pricing.builders import D, at, flat, product, tiered

API = product("api", tags=("billable", "ai"), pricing_group_key=("region",))
LIST = flat("api", 10)
EXPLICIT = MultiplierPrioritization.EXPLICIT
LOWEST = MultiplierPrioritization.LOWEST_MULTIPLIER
JAN_10 = at(1, 10)


def multiplier(id, value, priority=None, **kw):
    kw.setdefault("product_id", "api")
    return Override(id, at(1, 1), type=OverrideType.MULTIPLIER, multiplier=D(value),
                    priority=None if priority is None else D(priority), **kw)


def overwrite(id, price=None, tiers=(), priority=None):
    rate_type = RateType.TIERED if tiers else RateType.FLAT
    new = OverwriteRate(rate_type, price=None if price is None else D(price),
                        tiers=tuple(Tier(D(p), D(s) if s else None) for p, s in tiers))
    return Override(id, at(1, 1), type=OverrideType.OVERWRITE, product_id="api", overwrite_rate=new,
                    priority=None if priority is None else D(priority))


def tiered_override(id, tiers, priority):
    return Override(id, at(1, 1), type=OverrideType.TIERED, product_id="api", priority=D(priority),
                    tiers=tuple(OverrideTier(D(m), D(s) if s else None) for m, s in tiers))


CASES = [
    ("no override: the list price", [], LOWEST, [(0, None, 10)], ()),
    ("a multiplier scales the list price", [multiplier("m", "0.8")], LOWEST, [(0, None, 8)], ("m",)),
    ("an overwrite replaces the list price", [overwrite("w", 7)], LOWEST, [(0, None, 7)], ("w",)),
    ("an overwrite takes precedence over a multiplier",
     [multiplier("m", "0.5"), overwrite("w", 7)], LOWEST, [(0, None, 7)], ("w",)),
    ("an overwrite takes precedence over a multiplier under explicit prioritization too",
     [multiplier("m", "0.5", priority=1), overwrite("w", 7, priority=5)], EXPLICIT, [(0, None, 7)], ("w",)),
    ("of two overwrites the lowest priority value wins",
     [overwrite("w1", 7, priority=2), overwrite("w2", 6, priority=1)], LOWEST, [(0, None, 6)], ("w2",)),
    ("an overwrite with tiers turns a flat price into tiers",
     [overwrite("w", tiers=[(10, 10), (1, None)])], LOWEST, [(0, 10, 10), (10, None, 1)], ("w",)),
    ("lowest multiplier: the greatest discount wins",
     [multiplier("a", "0.9"), multiplier("b", "0.8")], LOWEST, [(0, None, 8)], ("b",)),
    ("explicit: the lowest priority value wins even with a smaller discount",
     [multiplier("a", "0.9", priority=1), multiplier("b", "0.8", priority=2)], EXPLICIT, [(0, None, 9)], ("a",)),
    ("a tiered override discounts only its first units, then list price",
     [tiered_override("t", [("0.5", 100)], priority=1)], EXPLICIT, [(0, 100, 5), (100, None, 10)], ("t",)),
    ("a tiered override falls through to the next multiplier by priority",
     [tiered_override("t", [("0.5", 100)], priority=1), multiplier("m", "0.9", priority=2)], EXPLICIT,
     [(0, 100, 5), (100, None, 9)], ("t", "m")),
    ("a multiplier with a lower priority value shadows a tiered override",
     [multiplier("m", "0.9", priority=1), tiered_override("t", [("0.5", 100)], priority=2)], EXPLICIT,
     [(0, None, 9)], ("m",)),
    ("a tiered override with an open last tier covers everything",
     [tiered_override("t", [("0.5", 100), ("0.8", None)], priority=1)], EXPLICIT, [(0, 100, 5), (100, None, 8)], ("t",)),
    ("a multiplier of one leaves the price as it is", [multiplier("m", 1)], LOWEST, [(0, None, 10)], ("m",)),
    ("a multiplier on tags applies to a product carrying any of them",
     [multiplier("m", "0.5", product_id=None, applicable_product_tags=("ai", "storage"))], LOWEST, [(0, None, 5)], ("m",)),
    ("a multiplier on other tags does not apply",
     [multiplier("m", "0.5", product_id=None, applicable_product_tags=("storage",))], LOWEST, [(0, None, 10)], ()),
    ("a specifier needs all of its product tags",
     [multiplier("m", "0.5", product_id=None,
                 override_specifiers=(OverrideSpecifier(product_tags=("ai", "storage")),))], LOWEST, [(0, None, 10)], ()),
    ("a specifier on pricing group values applies to those values",
     [multiplier("m", "0.5", product_id=None,
                 override_specifiers=(OverrideSpecifier(pricing_group_values={"region": "eu"}),))], LOWEST,
     [(0, None, 5)], ("m",)),
    ("a specifier on other pricing group values does not apply",
     [multiplier("m", "0.5", product_id=None,
                 override_specifiers=(OverrideSpecifier(pricing_group_values={"region": "us"}),))], LOWEST,
     [(0, None, 10)], ()),
    ("an override that has ended does not apply",
     [Override("m", at(1, 1), at(1, 10), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D("0.5"))], LOWEST,
     [(0, None, 10)], ()),
]


@pytest.mark.parametrize("overrides,prioritization,bands,applied", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_override_precedence(overrides, prioritization, bands, applied):
    book = PriceBook(RateTimeline((LIST,)), tuple(overrides), prioritization)
    pricing = book.pricing("api", API.at(JAN_10), JAN_10, {"region": "eu"})
    assert [(b.start, b.end, b.price) for b in pricing.bands] == [
        (D(s), None if e is None else D(e), D(p)) for s, e, p in bands
    ]
    assert pricing.override_ids == applied
    assert pricing.list_rate == LIST


def test_a_tiered_override_cuts_a_tiered_rate_at_both_sets_of_boundaries():
    book = PriceBook(RateTimeline((tiered("api", [(10, 50), (6,)]),)),
                     (tiered_override("t", [("0.5", 100)], priority=1),), EXPLICIT)
    bands = book.pricing("api", API.at(JAN_10), JAN_10).bands
    assert [(b.start, b.end, b.price) for b in bands] == [(0, 50, 5), (50, 100, 3), (100, None, 6)]


@pytest.mark.parametrize(
    "rate_entitled,overrides,entitled",
    [
        (False, [], False),
        (False, [Override("e", at(1, 1), product_id="api", entitled=True)], True),
        (True, [Override("e", at(1, 1), product_id="api", entitled=False)], False),
        (False, [Override("a", at(1, 1), product_id="api", entitled=True, priority=D(2)),
                 Override("b", at(1, 1), product_id="api", entitled=False, priority=D(1))], False),
        (False, [Override("e", at(1, 11), product_id="api", entitled=True)], False),
    ],
    ids=[
        "a product not entitled on the card stays off",
        "an entitlement override switches it on",
        "an entitlement override switches an entitled product off",
        "of two entitlement overrides the lowest priority value decides",
        "an entitlement override not yet started changes nothing",
    ],
)
def test_entitlement(rate_entitled, overrides, entitled):
    book = PriceBook(RateTimeline((flat("api", 10, entitled=rate_entitled),)), tuple(overrides))
    pricing = book.pricing("api", API.at(JAN_10), JAN_10)
    assert pricing.entitled is entitled
    assert not pricing.overridden  # entitlement alone does not change the price


@settings(max_examples=200, deadline=None)
@given(
    tiers=st.lists(st.tuples(st.decimals(0, 1000, places=3), st.decimals(1, 1000, places=2)), max_size=3),
    last=st.decimals(0, 1000, places=3),
)
def test_a_multiplier_of_one_changes_no_price(tiers, last):
    rate = tiered("api", [*tiers, (last,)])
    plain = PriceBook(RateTimeline((rate,))).pricing("api", API.at(JAN_10), JAN_10)
    for prioritization, override in ((LOWEST, multiplier("m", 1)), (EXPLICIT, multiplier("m", 1, priority=1))):
        scaled = PriceBook(RateTimeline((rate,)), (override,), prioritization).pricing("api", API.at(JAN_10), JAN_10)
        assert [(b.start, b.end, b.price) for b in scaled.bands] == [
            (b.start, b.end, b.price) for b in _merged(plain.bands)
        ]


def _merged(bands):
    """Equal neighbouring tiers collapse once a multiplier is applied; the price per unit is the same."""
    out = []
    for band in bands:
        if out and out[-1].price == band.price:
            out[-1] = type(band)(out[-1].start, band.end, band.price)
        else:
            out.append(band)
    return out


# --- pricing classes: group values that cannot be told apart share one price ------------------------

SPLIT = product("api", tags=("ai",), pricing_group_key=("region", "tier"), presentation_group_key=("project",))
REGIONS, TIERS, PROJECTS = ["us", "eu", "ap", None], ["gold", "free", None], ["p1", "p2", None]


def specifier_override(id, pricing=None, presentation=None, value="0.5", start=at(1, 1)):
    return Override(id, start, type=OverrideType.MULTIPLIER, multiplier=D(value), override_specifiers=(
        OverrideSpecifier(pricing_group_values=pricing, presentation_group_values=presentation),))


SPLIT_BOOK = PriceBook(
    RateTimeline((flat("api", 10), flat("api", 20, pricing_group_values={"region": "us"}),
                  flat("api", 30, pricing_group_values={"region": "us", "tier": "gold"}, end=at(1, 20)))),
    (specifier_override("eu", pricing={"region": "eu"}, start=at(1, 15)),
     specifier_override("p1", presentation={"project": "p1"}, value="0.9")),
)

CLASS_CASES = [
    ("values nothing names share a class", ({"region": "ap", "tier": "free"}, {"project": "p2"}),
     ({"region": None, "tier": None}, {"project": None}), True),
    ("a value with its own rate is a class of its own", ({"region": "us", "tier": None}, {}),
     ({"region": "ap", "tier": None}, {}), False),
    ("a value of a more specific rate is a class of its own", ({"region": "us", "tier": "gold"}, {}),
     ({"region": "us", "tier": None}, {}), False),
    ("a pricing group value an override specifier names is a class of its own", ({"region": "eu", "tier": None}, {}),
     ({"region": "ap", "tier": None}, {}), False),
    ("a presentation group value an override specifier names is a class of its own",
     ({"region": "ap", "tier": None}, {"project": "p1"}), ({"region": "ap", "tier": None}, {"project": "p2"}), False),
]


@pytest.mark.parametrize("first,second,shared", [c[1:] for c in CLASS_CASES], ids=[c[0] for c in CLASS_CASES])
def test_pricing_classes(first, second, shared):
    assert (SPLIT_BOOK.pricing_class("api", *first) == SPLIT_BOOK.pricing_class("api", *second)) is shared


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REGIONS), st.sampled_from(TIERS), st.sampled_from(PROJECTS)),
                min_size=2, max_size=2),
       st.sampled_from([at(1, 1), at(1, 15), at(1, 19), at(1, 20), at(1, 31)]))
def test_group_values_of_one_pricing_class_get_the_same_price_at_every_instant(combos, instant):
    (r1, t1, p1), (r2, t2, p2) = combos
    first, second = ({"region": r1, "tier": t1}, {"project": p1}), ({"region": r2, "tier": t2}, {"project": p2})
    if SPLIT_BOOK.pricing_class("api", *first) == SPLIT_BOOK.pricing_class("api", *second):
        version = SPLIT.at(instant)
        price = SPLIT_BOOK.pricing("api", version, instant, *first)
        assert price == SPLIT_BOOK.pricing("api", version, instant, *second)


def test_a_product_prices_all_values_alike_until_a_rate_or_specifier_names_one():
    specified = PriceBook(RateTimeline((flat("api", 10),)), (specifier_override("eu", pricing={"region": "eu"}),))
    assert not specified.prices_all_values_alike("api")
    assert PriceBook(RateTimeline((flat("api", 10),)), ()).prices_all_values_alike("api")
    assert not PriceBook(RateTimeline((flat("api", 10), flat("api", 20, pricing_group_values={"region": "us"}))),
                         ()).prices_all_values_alike("api")
    assert not SPLIT_BOOK.prices_all_values_alike("api")


def test_a_specifier_with_a_billing_frequency_overrides_only_the_rate_billed_so():
    """Seats priced 1000 a month and 2700 a quarter; a 0.5 multiplier limited to QUARTERLY rates
    makes the quarterly price 1350 and leaves the monthly one at 1000."""
    seats = product("seats", ProductType.SUBSCRIPTION)
    rates = (flat("seats", 1000, billing_frequency=Frequency.MONTHLY), flat("seats", 2700, billing_frequency=Frequency.QUARTERLY))
    half = Override("q", at(1, 1), type=OverrideType.MULTIPLIER, multiplier=D("0.5"),
                    override_specifiers=(OverrideSpecifier(product_id="seats", billing_frequency=Frequency.QUARTERLY),))
    book = PriceBook(RateTimeline(rates), (half,))
    version = seats.at(JAN_10)

    monthly = book.pricing("seats", version, JAN_10, billing_frequency=Frequency.MONTHLY)
    quarterly = book.pricing("seats", version, JAN_10, billing_frequency=Frequency.QUARTERLY)

    assert ([b.price for b in monthly.bands], monthly.override_ids) == ([D(1000)], ())
    assert ([b.price for b in quarterly.bands], quarterly.override_ids) == ([D(1350)], ("q",))
