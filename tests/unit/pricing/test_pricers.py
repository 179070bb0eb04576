"""One pricer per rate type, and the graduated-tier arithmetic they share."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tally.billing.pricing import (
    USD_CENTS,
    Band,
    CreditType,
    Tier,
    graduated_charge,
    price_flat,
    price_percentage,
    price_subscription,
    price_tiered,
)
from tally.billing.pricing.money import PRICING_CONTEXT
from tally.billing.pricing.pricers import flat_bands, tier_bands

D = Decimal
THREE_TIERS = [Tier(D(10), D(100)), Tier(D(5), D(900)), Tier(D(1))]  # 0-100 @10, 100-1000 @5, 1000+ @1


@pytest.mark.parametrize(
    "quantity,position,total,tiers",
    [
        (D(50), D(0), D(500), [(0, 50, 10)]),
        (D(100), D(0), D(1000), [(0, 100, 10)]),
        (D(150), D(0), D(1250), [(0, 100, 10), (100, 50, 5)]),
        (D(1500), D(0), D(6000), [(0, 100, 10), (100, 900, 5), (1000, 500, 1)]),
        (D(100), D(950), D(300), [(100, 50, 5), (1000, 50, 1)]),
        (D("0.5"), D("99.75"), D("3.75"), [(0, "0.25", 10), (100, "0.25", 5)]),
        (D(0), D(40), D(0), []),
        (D(-20), D(110), D(-150), [(0, -10, 10), (100, -10, 5)]),
    ],
    ids=[
        "graduated tiers, usage inside the first tier",
        "graduated tiers, usage ends exactly on a tier boundary",
        "graduated tiers, usage spans two tiers",
        "graduated tiers, usage spans three tiers",
        "graduated tiers, usage starting mid-period continues from the cumulative position",
        "graduated tiers, fractional units straddle a boundary",
        "graduated tiers, no usage costs nothing",
        "graduated tiers, a usage correction walks back down through the tiers",
    ],
)
def test_tiered_pricer(quantity, position, total, tiers):
    charge = price_tiered(THREE_TIERS, quantity, position)
    assert charge.precise_total == total
    assert [(t.starting_at, t.quantity, t.price) for t in charge.tiers] == [(D(a), D(q), D(p)) for a, q, p in tiers]
    assert sum((t.subtotal for t in charge.tiers), D(0)) == total
    assert charge.unit_price is None


@pytest.mark.parametrize(
    "pricer,total,unit_price",
    [
        (lambda: price_flat(D("0.25"), D(1234)), D("308.5"), D("0.25")),
        (lambda: price_flat(D(3), D("2.5")), D("7.5"), D(3)),
        (lambda: price_percentage((Band(D(0), None, D("0.1")),), D("343.5")), D("34.35"), D("0.1")),
        (lambda: price_subscription((Band(D(0), None, D(1000)),), D(3), D(1)), D(3000), D(1000)),
        (lambda: price_subscription((Band(D(0), None, D(1000)),), D(3), D(21) / D(31)), D("2032.26"), D(1000)),
    ],
    ids=[
        "flat price of a quarter cent per call",
        "flat price of a fractional quantity",
        "percentage of spend for a composite",
        "subscription for a whole period",
        "subscription prorated for 21 days of 31",
    ],
)
def test_single_price_pricers(pricer, total, unit_price):
    charge = pricer()
    assert USD_CENTS.round(charge.precise_total) == total
    assert charge.unit_price == unit_price
    assert charge.tiers == ()


@pytest.mark.parametrize(
    "amount,rounded",
    [(D("308.505"), D("308.51")), (D("308.504999"), D("308.50")), (D("-0.005"), D("-0.01")), (D(12), D("12.00"))],
    ids=["half a hundredth of a cent rounds up", "just under half rounds down",
         "a negative half rounds away from zero", "whole amounts keep two places"],
)
def test_usd_cents_round_line_totals_half_up_to_a_hundredth_of_a_cent(amount, rounded):
    assert USD_CENTS.round(amount) == rounded
    assert str(USD_CENTS.round(amount)) == str(rounded)


def test_a_credit_type_sets_its_own_precision():
    assert CreditType("cu", "Compute units", precision=0, rounding=ROUND_HALF_UP).round(D("2.5")) == D(3)


prices = st.decimals(min_value=0, max_value=10_000, places=4)
quantities = st.decimals(min_value=0, max_value=1_000_000, places=3)
tier_lists = st.lists(
    st.tuples(prices, st.decimals(min_value="0.001", max_value=100_000, places=3)), min_size=0, max_size=4
).flatmap(lambda sized: prices.map(lambda last: [Tier(p, s) for p, s in sized] + [Tier(last)]))


@settings(max_examples=300, deadline=None)
@given(tiers=tier_lists, a=quantities, b=quantities)
def test_graduated_tiers_are_additive_over_a_split_of_quantity(tiers, a, b):
    whole = price_tiered(tiers, a + b)
    assert price_tiered(tiers, a).precise_total + price_tiered(tiers, b, position=a).precise_total == whole.precise_total


@settings(max_examples=200, deadline=None)
@given(tiers=tier_lists, position=quantities, quantity=quantities)
def test_a_correction_undoes_exactly_what_the_usage_cost(tiers, position, quantity):
    bands = tier_bands(tiers)
    charged = graduated_charge(bands, position, quantity).precise_total
    assert graduated_charge(bands, position + quantity, -quantity).precise_total == -charged


@given(
    price=st.decimals(min_value=0, max_value=1000, places=4),
    position=st.decimals(min_value=0, max_value=10**9, places=30),
    quantity=st.decimals(min_value=Decimal("-1e6"), max_value=Decimal("1e6"), places=30),
)
@example(price=Decimal("3.51"), position=Decimal("72.66666666666666666666666666666666667"),
         quantity=Decimal("3.8333333333333333333333333333333333333"))  # a DIVIDE conversion's 23/6
@example(price=Decimal(0), position=Decimal(5), quantity=Decimal("-24.65"))
def test_a_flat_charge_is_quantity_times_price_wherever_in_the_period_it_starts(price, position, quantity):
    # Not (position + quantity - position) × price: a long position would cost the quantity digits.
    charge = graduated_charge(flat_bands(price), position, quantity)
    assert charge.precise_total == PRICING_CONTEXT.multiply(quantity, price)
    assert not (charge.precise_total.is_zero() and charge.precise_total.is_signed())  # never a -0 total


def _exactly(charge):
    """A charge with every amount as written (Decimal equality ignores exponents)."""
    return (str(charge.quantity), str(charge.precise_total), str(charge.unit_price),
            [(str(t.starting_at), str(t.quantity), str(t.price), str(t.subtotal)) for t in charge.tiers])


band_schedules = tier_lists.map(tier_bands) | st.lists(
    st.tuples(prices, st.decimals(min_value="0.001", max_value=1000, places=3)), min_size=1, max_size=3
).map(lambda sized: tier_bands([Tier(p, s) for p, s in sized]))  # ends in a band with an end
scaled = st.decimals(min_value=0, max_value=10**6, places=30)


@settings(max_examples=400, deadline=None)
@given(bands=band_schedules, position=scaled, quantity=scaled)
@example(bands=tier_bands([Tier(D("1E+2"), D(5))]), position=D(7), quantity=D(1))  # past a closed band's end
@example(bands=tier_bands([Tier(D("1E+2"), D(5)), Tier(D(3))]), position=D(0), quantity=D(2))
def test_the_usual_line_prices_exactly_as_the_general_loop(bands, position, quantity):
    """Usage lines (quantity > 0 from a position >= 0) take a shorter path; amounts, exponents
    included, are those of the general one."""
    from tally.billing.pricing.pricers import _graduated

    if quantity == 0:
        return
    assert _exactly(graduated_charge(bands, position, quantity)) == _exactly(_graduated(bands, position, quantity))


@given(amount=st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**20, max_value=10**20, places=12),
       precision=st.integers(0, 6),
       rounding=st.sampled_from(["ROUND_HALF_UP", "ROUND_HALF_EVEN", "ROUND_DOWN", "ROUND_UP", "ROUND_CEILING", "ROUND_FLOOR"]))
def test_a_credit_type_rounds_as_decimal_quantize_with_its_mode(amount, precision, rounding):
    rounded = CreditType("x", "x", precision, rounding).round(amount)
    expected = amount.quantize(Decimal(1).scaleb(-precision), rounding=rounding, context=PRICING_CONTEXT)
    assert str(rounded) == str(expected)
