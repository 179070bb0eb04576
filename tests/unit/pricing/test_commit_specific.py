"""Commit-specific overrides: the price a commit or credit pays for usage, where the list price stays
as it is for everything else. Lines carry each payer's price; burn-down spends it (see
tests/unit/balances/test_commit_specific_draws.py)."""

from __future__ import annotations

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import (
    MultiplierPrioritization,
    Override,
    OverrideSpecifier,
    OverrideType,
    OverwriteRate,
    RateType,
    validate_overrides,
)
from tally.billing.pricing.lines import CommitPrice
from tally.billing.pricing.overrides import OverrideTarget
from tally.billing.pricing.periods import Frequency
from tests.unit.pricing.builders import D, FakeUsage, at, catalog, contract, flat, invoice, product

API = product("api", name="API calls", pricing_group_key=("region",))
LOWEST = MultiplierPrioritization.LOWEST_MULTIPLIER


def specific(id, value, commits=(), target=OverrideTarget.LIST_RATE, start=at(1, 1), end=None, **spec):
    spec.setdefault("product_id", "api")
    return Override(
        id, start, end, type=OverrideType.MULTIPLIER, multiplier=D(value), commit_specific=True, target=target,
        override_specifiers=(OverrideSpecifier(commit_ids=tuple(commits), **spec),),
    )


def prices(*overrides, rate=None, quantity="100", when=at(1, 15), region=None):
    usage = FakeUsage().add(when, quantity, **({"region": region} if region else {}))
    terms = contract(rate or flat("api", 10), overrides=overrides)
    lines = invoice(terms, catalog(API), usage).line_items
    return [(l.total, l.commit_prices) for l in lines]


LIST, COMMIT = "LIST_RATE", "COMMIT_RATE"
CASES = [
    ("without commit-specific overrides, a line has no commit prices", [], {}, [(D("1000.00"), ())]),
    ("a commit-specific multiplier for any commit prices what any commit pays; the list total is unchanged",
     [specific("a", "0.5")], {}, [(D("1000.00"), (CommitPrice(None, LIST, D("500.00")),))]),
    ("one naming a commit prices that commit's draws only",
     [specific("a", "0.5", commits=["c1"])], {}, [(D("1000.00"), (CommitPrice("c1", LIST, D("500.00")),))]),
    ("a named commit also gets what applies to any commit, combined as overrides combine",
     [specific("any", "0.8"), specific("named", "0.5", commits=["c1"])], {},
     [(D("1000.00"), (CommitPrice(None, LIST, D("800.00")), CommitPrice("c1", LIST, D("500.00"))))]),
    ("a COMMIT_RATE target scales the rate's commit price",
     [specific("a", "0.5", target=OverrideTarget.COMMIT_RATE)], {"rate": flat("api", 10, commit_price=D(6))},
     [(D("1000.00"), (CommitPrice(None, COMMIT, D("300.00")),))]),
    ("a COMMIT_RATE target without a commit price scales the list price",
     [specific("a", "0.5", target=OverrideTarget.COMMIT_RATE)], {},
     [(D("1000.00"), (CommitPrice(None, COMMIT, D("500.00")),))]),
    ("one on other pricing group values leaves the line alone",
     [specific("a", "0.5", pricing_group_values={"region": "eu"})], {"region": "us"}, [(D("1000.00"), ())]),
    ("one on the line's pricing group values prices it",
     [specific("a", "0.5", pricing_group_values={"region": "eu"})], {"region": "eu"},
     [(D("1000.00"), (CommitPrice(None, LIST, D("500.00")),))]),
    ("an overwrite for a commit replaces the price it pays",
     [Override("w", at(1, 1), type=OverrideType.OVERWRITE, product_id="api", commit_specific=True,
               overwrite_rate=OverwriteRate(RateType.FLAT, price=D(3)))], {},
     [(D("1000.00"), (CommitPrice(None, LIST, D("300.00")),))]),
    ("one naming a recurring commit prices the draws of the commits it makes (a payer like a commit)",
     [specific("a", "0.5", commits=["rc1"])], {}, [(D("1000.00"), (CommitPrice("rc1", LIST, D("500.00")),))]),
    ("one limited to a billing frequency leaves usage rates (which have none) alone",
     [specific("a", "0.5", billing_frequency=Frequency.MONTHLY)], {}, [(D("1000.00"), ())]),
    ("one that has ended leaves later usage alone",
     [specific("a", "0.5", end=at(1, 10))], {}, [(D("1000.00"), ())]),
]


@pytest.mark.parametrize("overrides,kw,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_commit_specific_overrides_price_what_commits_pay(overrides, kw, expected):
    assert prices(*overrides, **kw) == expected


def test_a_line_is_cut_where_a_commit_specific_override_starts():
    """Given one starting Jan 10, usage on Jan 5 and Jan 15 lands on two lines, the later one carrying it."""
    usage = FakeUsage().add(at(1, 5), 10).add(at(1, 15), 10)
    terms = contract(flat("api", 10), overrides=(specific("a", "0.5", start=at(1, 10)),))
    lines = invoice(terms, catalog(API), usage).line_items
    assert [(l.starting_at.day, l.total, l.commit_prices) for l in lines] == [
        (1, D("100.00"), ()),
        (10, D("100.00"), (CommitPrice(None, LIST, D("50.00")),)),
    ]


@pytest.mark.parametrize(
    "override,field",
    [
        (Override("x", at(1, 1), type=OverrideType.MULTIPLIER, multiplier=D(1),
                  override_specifiers=(OverrideSpecifier(product_id="api", commit_ids=("c1",)),)),
         "overrides[0].override_specifiers[0].commit_ids"),
        (Override("x", at(1, 1), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D(1), target=OverrideTarget.COMMIT_RATE),
         "overrides[0].target"),
        (Override("x", at(1, 1), product_id="api", entitled=True, commit_specific=True), "overrides[0].type"),
    ],
    ids=["commit ids on an override for everyone", "a COMMIT_RATE target on an override for everyone",
         "a commit-specific entitlement"],
)
def test_malformed_commit_specific_overrides_are_refused(override, field):
    with pytest.raises(InvalidInput) as raised:
        validate_overrides((override,), LOWEST)
    assert raised.value.field == field
