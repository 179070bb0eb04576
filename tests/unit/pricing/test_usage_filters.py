"""Usage filters route a customer's usage between concurrent contracts, never billing it twice."""

from __future__ import annotations

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.pricing import build_draft_invoices
from tally.billing.pricing.usage_filters import ContractWindow, UsageFilter, validate_concurrent_contracts
from tests.unit.pricing.builders import JAN, D, FakeUsage, at, catalog, contract, flat, product

API = product("api", name="API calls", presentation_group_key=("region",))
EU, US = UsageFilter("region", ("eu",)), UsageFilter("region", ("us", "apac"))


def usage() -> FakeUsage:
    return (
        FakeUsage()
        .add(at(1, 2), 10, region="eu")
        .add(at(1, 3), 20, region="us")
        .add(at(1, 4), 40, region="apac")
        .add(at(1, 5), 80)  # no region: only an unfiltered contract bills it
    )


@pytest.mark.parametrize(
    "usage_filter,expected",
    [
        (None, [(None, 80), ("apac", 40), ("eu", 10), ("us", 20)]),
        (EU, [("eu", 10)]),
        (US, [("apac", 40), ("us", 20)]),
        (UsageFilter("region", ("mars",)), []),
    ],
    ids=["without a filter the contract bills all usage", "a filter on one value bills that value only",
         "a filter on two values bills both", "a filter matching nothing bills nothing"],
)
def test_a_usage_filter_limits_the_usage_a_contract_bills(usage_filter, expected):
    [draft] = build_draft_invoices(contract(flat("api", 1), usage_filter=usage_filter), catalog(API), JAN, usage())
    assert [(l.presentation_group_values["region"], l.quantity) for l in draft.line_items] == [(r, D(q)) for r, q in expected]


def test_a_filter_on_a_key_the_product_does_not_group_by_still_splits_its_usage():
    plain = product("api", name="API calls")
    [draft] = build_draft_invoices(contract(flat("api", 1), usage_filter=US), catalog(plain), JAN, usage())
    assert [(l.quantity, l.total) for l in draft.line_items] == [(D(60), D("60.00"))]


def window(id, start, end=None, usage_filter=None):
    return ContractWindow(id, start, end, usage_filter)


@pytest.mark.parametrize(
    "new,existing,field",
    [
        (window("b", at(1, 1)), [window("a", at(1, 1))], "usage_filter"),
        (window("b", at(1, 15), usage_filter=EU), [window("a", at(1, 1))], "usage_filter"),
        (window("b", at(1, 1), usage_filter=EU), [window("a", at(1, 1), usage_filter=UsageFilter("plan", ("x",)))],
         "usage_filter.group_key"),
        (window("b", at(1, 1), usage_filter=UsageFilter("region", ("eu", "us"))), [window("a", at(1, 1), usage_filter=US)],
         "usage_filter.group_values"),
    ],
    ids=["two unfiltered contracts at once are refused", "an unfiltered and a filtered contract at once are refused",
         "concurrent filters on different keys are refused", "concurrent filters sharing a value are refused"],
)
def test_concurrent_contracts_that_would_bill_usage_twice_are_refused(new, existing, field):
    with pytest.raises(InvalidInput) as raised:
        validate_concurrent_contracts(new, existing)
    assert raised.value.field == field


@pytest.mark.parametrize(
    "new,existing",
    [
        (window("b", at(2, 1)), [window("a", at(1, 1), at(2, 1))]),
        (window("b", at(1, 1), usage_filter=EU), [window("a", at(1, 1), usage_filter=US)]),
        (window("a", at(1, 1)), [window("a", at(1, 1))]),
    ],
    ids=["back-to-back unfiltered contracts are fine", "disjoint filters on one key are fine",
         "a contract does not clash with itself"],
)
def test_contracts_that_cannot_bill_usage_twice_are_accepted(new, existing):
    validate_concurrent_contracts(new, existing)
