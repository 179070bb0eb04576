"""The rate timeline: which rate is in effect when, and where a period is cut."""

import pytest

from tally.billing.pricing import Frequency, Rate, RateTimeline, RateType, split_at
from tests.unit.pricing.builders import D, at, flat

CARD = RateTimeline((
    flat("api", 10, end=at(1, 15, 12)),
    flat("api", 12, start=at(1, 15, 12)),
    flat("api", 20, pricing_group_values={"region": "us-east"}),
    flat("api", 25, pricing_group_values={"region": "us-east", "tier": "gold"}),
    Rate("seats", at(1, 1), RateType.SUBSCRIPTION, price=D(1000), billing_frequency=Frequency.MONTHLY),
    Rate("seats", at(1, 1), RateType.SUBSCRIPTION, price=D(10000), billing_frequency=Frequency.ANNUAL),
))


@pytest.mark.parametrize(
    "values,when,price",
    [
        ({}, at(1, 15, 11), 10),
        ({}, at(1, 15, 12), 12),
        ({"region": "eu"}, at(1, 20), 12),
        ({"region": "us-east"}, at(1, 20), 20),
        ({"region": "us-east", "tier": "gold"}, at(1, 20), 25),
        ({"region": None}, at(1, 20), 12),
    ],
    ids=[
        "the old price until the hour of the change",
        "the new price from the hour of the change (starting_at is inclusive)",
        "group values without their own rate use the product's default rate",
        "group values with their own rate use it",
        "the most specific rate wins",
        "usage without the group value uses the default rate",
    ],
)
def test_rate_in_effect(values, when, price):
    assert CARD.rate_for("api", values, when).price == price


def test_subscription_rates_are_chosen_by_billing_frequency():
    assert CARD.rate_for("seats", {}, at(2, 1), Frequency.ANNUAL).price == 10000
    assert CARD.rate_for("seats", {}, at(2, 1), Frequency.MONTHLY).price == 1000


def test_rates_in_effect_at_an_instant_list_every_group_and_frequency():
    assert sorted(r.price for r in CARD.in_effect(at(1, 20))) == [12, 20, 25, 1000, 10000]
    assert CARD.rate_for("api", {}, at(1, 1, year=2024)) is None


def test_a_period_is_split_at_every_boundary_inside_it_and_only_there():
    cuts = CARD.boundaries("api") | {at(3, 1)}
    assert split_at(at(1, 1), at(2, 1), cuts) == [(at(1, 1), at(1, 15, 12)), (at(1, 15, 12), at(2, 1))]
