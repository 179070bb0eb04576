"""A usage filter that changes over time: each stretch of the contract bills the usage its filter
admits then (none before the first filter starts), and concurrent contracts must be disjoint at
every instant."""

from __future__ import annotations

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import build_draft_invoices
from tally.billing.pricing.usage_filters import ContractWindow, UsageFilter, validate_concurrent_contracts
from tests.unit.pricing.builders import JAN, D, FakeUsage, at, catalog, contract, flat, product

API = product("api", name="API calls", presentation_group_key=("region",))


def usage() -> FakeUsage:
    events = FakeUsage()
    for d in (5, 15, 25):  # each day: 1 eu, 10 us, 100 apac
        events.add(at(1, d), 1, region="eu").add(at(1, d), 10, region="us").add(at(1, d), 100, region="apac")
    return events


def billed(initial, updates=()) -> list[tuple]:
    terms = contract(flat("api", 1), usage_filter=initial, usage_filter_updates=tuple(updates))
    [draft] = build_draft_invoices(terms, catalog(API), JAN, usage())
    return [(l.presentation_group_values["region"], l.quantity) for l in draft.line_items]


CASES = [
    ("a filter from the start bills its values all month", UsageFilter("region", ("eu",)), [], [("eu", D(3))]),
    ("a filter from mid-month bills everything before it", UsageFilter("region", ("eu",), at(1, 10)), [],
     [("apac", D(100)), ("eu", D(3)), ("us", D(10))]),
    ("an update changes the values from its start", UsageFilter("region", ("eu",)), [UsageFilter("region", ("us",), at(1, 20))],
     [("eu", D(2)), ("us", D(10))]),
    ("two updates: each stretch its own values", UsageFilter("region", ("eu",)),
     [UsageFilter("region", ("us",), at(1, 10)), UsageFilter("region", ("eu", "apac"), at(1, 20))],
     [("apac", D(100)), ("eu", D(2)), ("us", D(10))]),
]


@pytest.mark.parametrize("initial,updates,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_stretch_bills_what_its_filter_admits(initial, updates, expected):
    assert billed(initial, updates) == expected


@pytest.mark.parametrize(
    "initial,updates,field",
    [
        (UsageFilter("region", ("eu",), at(1, 10, hour=0, minute=30)), [], "usage_filter.starting_at"),
        (UsageFilter("region", ("eu",)), [UsageFilter("region", ("us",), at(1, 1))], "usage_filter.updates[0].starting_at"),
        (UsageFilter("region", ("eu",)), [UsageFilter("region", ("us",))], "usage_filter.updates[0].starting_at"),
        (UsageFilter("region", ("eu",), at(2, 1)), [], "usage_filter.starting_at"),
    ],
    ids=["a start off the hour", "an update at the filter's own start", "an update without a start",
         "a filter starting after the contract ends"],
)
def test_malformed_filter_schedules_are_refused(initial, updates, field):
    terms = contract(flat("api", 1), usage_filter=initial, usage_filter_updates=tuple(updates), ending_before=at(2, 1))
    with pytest.raises(InvalidInput) as raised:
        build_draft_invoices(terms, catalog(API), JAN, usage())
    assert raised.value.field == field


EU, US = UsageFilter("region", ("eu",)), UsageFilter("region", ("us",))


@pytest.mark.parametrize(
    "new,existing,field",
    [
        (ContractWindow("b", at(1, 1), None, UsageFilter("region", ("us",), at(1, 15))),
         [ContractWindow("a", at(1, 1), None, EU)], "usage_filter"),
        (ContractWindow("b", at(1, 1), None, US, (UsageFilter("region", ("eu",), at(1, 20)),)),
         [ContractWindow("a", at(1, 1), None, EU)], "usage_filter.group_values"),
        (ContractWindow("b", at(1, 1), None, US),
         [ContractWindow("a", at(1, 1), None, EU, (UsageFilter("region", ("us", "eu"), at(3, 1)),))], "usage_filter.group_values"),
    ],
    ids=["unfiltered until its filter starts while another bills", "an update moving onto the other's values",
         "the other's later update taking this one's values"],
)
def test_concurrent_contracts_must_be_disjoint_at_every_instant(new, existing, field):
    with pytest.raises(InvalidInput) as raised:
        validate_concurrent_contracts(new, existing)
    assert raised.value.field == field


def test_contracts_swapping_values_at_the_same_instant_are_disjoint():
    a = ContractWindow("a", at(1, 1), None, EU, (UsageFilter("region", ("us",), at(2, 1)),))
    b = ContractWindow("b", at(1, 1), None, US, (UsageFilter("region", ("eu",), at(2, 1)),))
    validate_concurrent_contracts(b, [a])
