"""Customer hierarchies, the pure rules (billing/hierarchy.py): a grant's child access, which child
contracts it serves, where a child may link, and that a parent's grant pays for a child's charges
in the burn-down only when its child access says so."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.balances import AccessSegment, Grant, GrantKind, burn_down
from tally.billing.balances.eligibility import Charge
from tally.billing.errors import InvalidInput
from tally.billing.hierarchy import (
    check_child_access, check_child_link, check_parent_customer, child_access_document, served_children,
)

UTC = timezone.utc
OCT, NOV = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize("value, stored", [
    ({"child_access": {"type": "ALL"}}, {"child_access": {"type": "ALL"}}),
    ({"child_access": {"type": "NONE"}}, {"child_access": {"type": "NONE"}}),
    ({"child_access": {"type": "CONTRACT_IDS", "contract_ids": ["a", "b", "a"]}},
     {"child_access": {"type": "CONTRACT_IDS", "contract_ids": ["a", "b"]}}),
], ids=["all children", "no child", "named children, a repeat kept once"])
def test_child_access_is_stored_normalized(value, stored):
    assert child_access_document(value, "commits[0].hierarchy_configuration") == stored


@pytest.mark.parametrize("value, field", [
    ({}, "commits[0].hierarchy_configuration.child_access"),
    ({"child_access": {"type": "SOME"}}, "commits[0].hierarchy_configuration.child_access.type"),
    ({"child_access": {"type": "CONTRACT_IDS"}}, "commits[0].hierarchy_configuration.child_access.contract_ids"),
    ({"child_access": {"type": "CONTRACT_IDS", "contract_ids": []}}, "commits[0].hierarchy_configuration.child_access.contract_ids"),
    ({"child_access": {"type": "ALL", "contract_ids": ["a"]}}, "commits[0].hierarchy_configuration.child_access.contract_ids"),
], ids=["no child_access", "unknown type", "CONTRACT_IDS without ids", "CONTRACT_IDS with none", "ids with ALL"])
def test_a_malformed_child_access_is_refused_naming_the_field(value, field):
    with pytest.raises(InvalidInput) as refused:
        child_access_document(value, "commits[0].hierarchy_configuration")
    assert refused.value.field == field


@pytest.mark.parametrize("config, served", [
    (None, set()),
    ({"child_access": {"type": "NONE"}}, set()),
    ({"child_access": {"type": "ALL"}}, {"a", "b", "c"}),
    ({"child_access": {"type": "CONTRACT_IDS", "contract_ids": ["a", "b", "elsewhere"]}}, {"a", "b"}),
], ids=["no configuration serves no child", "NONE", "ALL", "CONTRACT_IDS: only children of the contract"])
def test_a_parent_grant_serves_the_children_its_access_names(config, served):
    assert served_children(config, ["a", "b", "c"]) == served


PARENT = {"id": "p1", "customer_id": "parent"}


@pytest.mark.parametrize("parent, child_contracts, parent_contracts, field", [
    (None, [], [], "hierarchy_configuration.parent.contract_id"),
    ({"id": "p1", "customer_id": "child"}, [], [], "hierarchy_configuration.parent.customer_id"),
    (PARENT | {"archived_at": "2026-11-01T00:00:00Z"}, [], [], "hierarchy_configuration.parent.contract_id"),
    (PARENT | {"hierarchy_configuration": {"parent": {"contract_id": "g", "customer_id": "grand"}}}, [], [],
     "hierarchy_configuration.parent.contract_id"),
    (PARENT, [], [{"id": "p2", "hierarchy_configuration": {"parent": {"contract_id": "g", "customer_id": "grand"}}}],
     "hierarchy_configuration.parent.customer_id"),
    (PARENT, [{"id": "c0", "hierarchy_configuration": {"children": [{"contract_id": "x", "customer_id": "y"}]}}], [],
     "customer_id"),
    (PARENT, [{"id": "c0", "hierarchy_configuration": {"parent": {"contract_id": "o", "customer_id": "other"}}}], [],
     "hierarchy_configuration.parent.customer_id"),
], ids=["no such parent", "the child's own customer", "an archived parent", "a parent that is a child (a cycle or depth 2)",
        "a parent customer that is a child", "a child customer that is a parent", "a second parent customer"])
def test_a_child_link_is_refused_naming_the_field(parent, child_contracts, parent_contracts, field):
    with pytest.raises(InvalidInput) as refused:
        check_child_link("child", parent, child_contracts, parent_contracts)
    assert refused.value.field == field


def test_a_child_may_link_to_a_parent_of_the_same_parent_customer_as_its_other_contracts():
    sibling = {"id": "c0", "hierarchy_configuration": {"parent": {"contract_id": "p0", "customer_id": "parent"}}}
    check_child_link("child", PARENT, [sibling], [{"id": "p0"}])  # no refusal
    with pytest.raises(InvalidInput) as refused:
        check_parent_customer([sibling])
    assert refused.value.field == "hierarchy_configuration.parent_behavior"


def _usage(contract_id: str, amount: int) -> Charge:
    return Charge(f"{contract_id}|0", f"inv-{contract_id}", contract_id, "p-calls", (), "USD", OCT, NOV, Decimal(amount))


def test_a_parents_commit_pays_for_the_children_it_serves_and_never_more_than_its_balance():
    # A 1000 commit of the parent's contract, shared with children a and b, not c: a's 300 and b's
    # 400 draw it down to 300; c's 100 stays unpaid; then a's further 500 takes the 300 left.
    commit = Grant("g", GrantKind.PREPAID, "p-setup", "USD", (AccessSegment("s", Decimal(1000), OCT, datetime(2027, 1, 1, tzinfo=UTC)),),
                   contract_id="parent", child_contract_ids=frozenset({"a", "b"}))
    first = [_usage("a", 300), _usage("b", 400), _usage("c", 100)]
    burn = burn_down([commit], first, [], {"p-calls": ()}, NOV)
    drawn = {key: sum(a.amount for a in apps) for key, apps in burn.applications.items()}
    assert drawn == {"a|0": Decimal(300), "b|0": Decimal(400), "c|0": Decimal(0)}
    assert burn.grant_balance("g") == Decimal(300)

    more = Charge("a|1", "inv-later", "a", "p-calls", (), "USD", OCT, NOV, Decimal(500))
    burn = burn_down([commit], [*first, more], [], {"p-calls": ()}, NOV)
    assert sum(a.amount for a in burn.applications["a|1"]) == Decimal(300)
    assert burn.grant_balance("g") == Decimal(0)


def test_a_customer_level_grant_priced_with_its_family_serves_its_own_customers_contracts_only():
    credit = Grant("k", GrantKind.CREDIT, "p-setup", "USD", (AccessSegment("s", Decimal(1000), OCT, datetime(2027, 1, 1, tzinfo=UTC)),),
                   customer_contract_ids=frozenset({"parent"}))
    burn = burn_down([credit], [_usage("a", 300), _usage("parent", 50)], [], {"p-calls": ()}, NOV)
    assert {key for key, apps in burn.applications.items() if apps} == {"parent|0"}
    assert burn.grant_balance("k") == Decimal(950)


def test_child_access_contract_ids_must_name_the_contracts_children():
    contract = {"hierarchy_configuration": {"children": [{"contract_id": "a", "customer_id": "x"}]},
                "commits": [{"hierarchy_configuration": {"child_access": {"type": "CONTRACT_IDS", "contract_ids": ["a"]}}}],
                "recurring_credits": [{"hierarchy_configuration": {"child_access": {"type": "CONTRACT_IDS", "contract_ids": ["a", "b"]}}}]}
    with pytest.raises(InvalidInput) as refused:
        check_child_access(contract)
    assert refused.value.field == "recurring_credits[0].hierarchy_configuration.child_access.contract_ids"
    check_child_access(dict(contract, recurring_credits=[]))  # a, a child: no refusal
