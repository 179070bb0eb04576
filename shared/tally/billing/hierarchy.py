"""Customer hierarchies: a child contract names one parent contract of another customer, and a
parent's commits and credits may pay for its children's usage.

Shape (metronome-sdk types/shared/hierarchy_configuration.py, commit_hierarchy_configuration.py):
- a child contract stores {parent: {contract_id, customer_id}, payer, usage_statement_behavior};
- a parent contract stores parent_behavior and lists its children, {contract_id, customer_id};
- a commit or credit of a parent contract stores {child_access: {type: ALL | NONE | CONTRACT_IDS}}.

Families are stars, so that a family is found in two reads and a burn-down never chains: a
customer with a child contract has no child contracts of its own naming it (a parent is never a
child), all of a customer's child contracts name contracts of one parent customer, and a parent is
another customer. A commit or credit without `hierarchy_configuration` serves its own contract only
(as NONE); ALL serves every child contract of its contract, CONTRACT_IDS those of them it names.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from tally.billing.errors import InvalidInput

CHILD_ACCESS_TYPES = ("ALL", "NONE", "CONTRACT_IDS")
# Metronome's documented defaults for a child: it pays its own invoices, kept apart from the parent's.
DEFAULT_PAYER = "SELF"
DEFAULT_STATEMENT_BEHAVIOR = "SEPARATE"


def child_access_document(value: Mapping | None, field: str) -> dict | None:
    """A grant's hierarchy_configuration, validated and normalized (None: not given)."""
    if value is None:
        return None
    access = value.get("child_access") if isinstance(value, Mapping) else None
    if not isinstance(access, Mapping):
        raise InvalidInput(f"{field}.child_access", "is required: {type: ALL | NONE | CONTRACT_IDS}")
    kind = access.get("type")
    if kind not in CHILD_ACCESS_TYPES:
        raise InvalidInput(f"{field}.child_access.type", "must be ALL, NONE or CONTRACT_IDS")
    ids = access.get("contract_ids")
    if kind != "CONTRACT_IDS":
        if ids is not None:
            raise InvalidInput(f"{field}.child_access.contract_ids", f"is only given with type CONTRACT_IDS, not {kind}")
        return {"child_access": {"type": kind}}
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise InvalidInput(f"{field}.child_access.contract_ids", "must list one or more contract ids")
    return {"child_access": {"type": kind, "contract_ids": list(dict.fromkeys(ids))}}


def served_children(config: Mapping | None, children: Iterable[str]) -> frozenset[str]:
    """The child contracts a parent's grant with `config` pays for, among its contract's `children`."""
    if not config:
        return frozenset()
    access = config["child_access"]
    if access["type"] == "ALL":
        return frozenset(children)
    if access["type"] == "CONTRACT_IDS":
        return frozenset(children) & frozenset(access["contract_ids"])
    return frozenset()


def parent_of(contract: Mapping) -> Mapping | None:
    """{contract_id, customer_id} of a child contract's parent, else None."""
    config = contract.get("hierarchy_configuration") or {}
    return config.get("parent")


def children_of(contract: Mapping) -> list[dict]:
    """A parent contract's children, {contract_id, customer_id}, in the order they joined."""
    return list((contract.get("hierarchy_configuration") or {}).get("children") or ())


def check_child_link(
    child_customer_id: str,
    parent: Mapping | None,
    child_customer_contracts: Iterable[Mapping],
    parent_customer_contracts: Iterable[Mapping],
) -> None:
    """Refusals of a new child contract of `child_customer_id` naming `parent` (a stored contract,
    None when it does not exist), given both customers' contracts. Field names are the request's."""
    field = "hierarchy_configuration.parent"
    if parent is None:
        raise InvalidInput(f"{field}.contract_id", "names no contract of that customer")
    if parent["customer_id"] == child_customer_id:
        raise InvalidInput(f"{field}.customer_id", "must be another customer: a contract cannot be its own customer's child")
    if parent.get("archived_at"):
        raise InvalidInput(f"{field}.contract_id", "names an archived contract")
    if parent_of(parent) is not None:
        raise InvalidInput(f"{field}.contract_id", "names a child contract; a child cannot be a parent (one level)")
    if any(parent_of(c) is not None for c in parent_customer_contracts):
        raise InvalidInput(f"{field}.customer_id", "names a customer that is itself a child; a hierarchy has one level")
    for contract in child_customer_contracts:
        if contract.get("archived_at"):
            continue
        if children_of(contract):
            raise InvalidInput("customer_id", "has contracts with children; a parent cannot also be a child")
        other = parent_of(contract)
        if other is not None and other["customer_id"] != parent["customer_id"]:
            raise InvalidInput(
                f"{field}.customer_id", f"differs from the parent of the customer's other child contracts ({other['customer_id']})"
            )


def check_parent_customer(customer_contracts: Iterable[Mapping]) -> None:
    """A contract with parent_behavior (a parent-to-be) cannot belong to a customer that is a child."""
    if any(parent_of(c) is not None and not c.get("archived_at") for c in customer_contracts):
        raise InvalidInput("hierarchy_configuration.parent_behavior", "the customer is a child; a hierarchy has one level")


def check_child_access(contract: Mapping) -> None:
    """A contract's commits and credits (recurring ones too) name only its own child contracts in
    child_access CONTRACT_IDS: a child links after its parent exists, so CONTRACT_IDS is set by an
    edit once the children are there; ALL covers children yet to come."""
    children = {c["contract_id"] for c in children_of(contract)}
    for kind in ("commits", "credits", "recurring_commits", "recurring_credits"):
        for index, grant in enumerate(contract.get(kind) or ()):
            access = (grant.get("hierarchy_configuration") or {}).get("child_access") or {}
            unknown = [i for i in access.get("contract_ids") or () if i not in children]
            if unknown:
                raise InvalidInput(
                    f"{kind}[{index}].hierarchy_configuration.child_access.contract_ids",
                    f"names {unknown[0]}, which is not a child contract of this contract",
                )
