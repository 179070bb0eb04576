"""TIERED_PERCENTAGE: a composite product charges graduated fractions of the spend it covers, the
tiers counting the period's spend from its start, across price changes. Totals worked by hand."""

from __future__ import annotations

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import ProductType, Rate, RateType, Tier, price_tiered_percentage, validate_rates
from tests.unit.pricing.builders import D, FakeUsage, at, catalog, contract, flat, invoice, product, summary

API = product("api", name="API calls", tags=("billable",))
SUPPORT = product("support", ProductType.COMPOSITE, name="Support", composite_tags=("billable",))


def tiered_percentage(tiers, start=at(1, 1, year=2025), end=None):
    """tiers: [(fraction, size), ..., (fraction,)]; sizes are amounts of spend."""
    return Rate("support", start, RateType.TIERED_PERCENTAGE, ending_before=end,
                tiers=tuple(Tier(D(t[0]), D(t[1]) if len(t) > 1 else None) for t in tiers))


PRICER_CASES = [
    ("spend inside the first tier pays its fraction", "500", "0", "50.0"),
    ("spend across two tiers pays each tier's fraction on its part", "1500", "0", "125.00"),  # 1000×0.1 + 500×0.05
    ("spend that starts past the first tier pays only the second", "200", "1000", "10.00"),
    ("spend that starts inside the first tier crosses into the second", "400", "800", "30.0"),  # 200×0.1 + 200×0.05
    ("negative spend (a correction) gives back at the tier it falls in", "-100", "1100", "-5.00"),
]


@pytest.mark.parametrize("spend,position,expected", [c[1:] for c in PRICER_CASES], ids=[c[0] for c in PRICER_CASES])
def test_the_tiered_percentage_pricer(spend, position, expected):
    tiers = (Tier(D("0.1"), D(1000)), Tier(D("0.05")))
    assert price_tiered_percentage(tiers, D(spend), D(position)).precise_total == D(expected)


def test_a_composite_line_graduates_over_the_period_spend_across_a_rate_change():
    """Given 10% of the first $10 of spend then 5%, with the usage price changing mid-month,
    when $8 is spent before the change and $6 after, then support costs 10%×8 + (10%×2 + 5%×4)."""
    rates = (
        flat("api", 1, end=at(1, 15)),
        flat("api", 2, start=at(1, 15)),
        tiered_percentage([("0.1", 1000), ("0.05",)]),
    )
    usage = FakeUsage().add(at(1, 2), 800).add(at(1, 20), 300)
    draft = invoice(contract(*rates), catalog(API, SUPPORT), usage)
    assert summary(draft) == [
        ("api", "01-01T00", D(800), D("800.00")),
        ("api", "01-15T00", D(300), D("600.00")),
        ("support", "01-01T00", D("1400.00"), D("120.00")),  # 1000 × 0.1 + 400 × 0.05 (cents)
    ]
    assert draft.total == D("1520.00")


def test_the_composite_segments_of_one_period_share_the_position_in_the_tiers():
    """Two segments of the composite (its rate changes on Jan 15) graduate from the period's spend."""
    rates = (
        flat("api", 1),
        tiered_percentage([("0.1", 1000), ("0.05",)], end=at(1, 15)),
        tiered_percentage([("0.2", 1000), ("0.1",)], start=at(1, 15)),
    )
    usage = FakeUsage().add(at(1, 2), 800).add(at(1, 20), 600)
    draft = invoice(contract(*rates), catalog(API, SUPPORT), usage)
    support = [(l.starting_at.day, l.total) for l in draft.line_items if l.product_id == "support"]
    # 800 at 10% = 80; then 600 from position 800 on the new tiers: 200 at 20% + 400 at 10% = 80
    assert support == [(1, D("80.00")), (15, D("80.00"))]


@pytest.mark.parametrize(
    "rate,field",
    [
        (tiered_percentage([("1.5",)]), "rates[0].tiers[0].price"),
        (Rate("support", at(1, 1), RateType.TIERED_PERCENTAGE, price=D("0.1")), "rates[0].price"),
        (tiered_percentage([("0.1", 100), ("0.2", 100)]), "rates[0].tiers[1].size"),
    ],
    ids=["a fraction above one", "a single price instead of tiers", "a last tier with a size"],
)
def test_a_tiered_percentage_rate_is_refused_when_malformed(rate, field):
    with pytest.raises(InvalidInput) as raised:
        validate_rates((rate,))
    assert raised.value.field == field
