"""Customer hierarchies as use cases: linking a child contract to its parent, and finding the family
a customer's invoices are priced with (billing/hierarchy.py has the rules).

Linking. A child contract is created in one transaction with its parent contract listing it
(`hierarchy_configuration.children`), conditional on the parent's version: a child is linked once
or not at all, and a finalization of the parent priced before the link fails its write and prices
again (cycle close checks the contract's version).

Pricing together. A parent's commit or credit with child_access pays for its children's usage, so
one balance is drawn by several customers' invoices. The burn-down of any member runs over the
whole family: every member's periods, finalized drawdowns and grants (InvoiceService), so a
parent's balance is never counted twice and every member's read gives the same answer. A member's
finalization is conditional on every other member's finalized-invoice count read before pricing
(cycle close), so two children finalizing at once cannot both spend the same money: the loser
prices again on top of the winner's frozen drawdowns.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Callable

from tally.billing.consolidation import concatenates, consolidates
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.hierarchy import check_child_link, check_parent_customer, children_of, parent_of
from tally.services.contracts import ContractChanged, ContractService
from tally.services.grant_edits import drawn_by_finalized
from tally.services.ports import StoreUnavailable

MAX_ATTEMPTS = 5


def family_members(customer_id: str, contracts_of: Callable[[str], list[dict]]) -> list[str]:
    """The other customers of `customer_id`'s hierarchy (its parent and the parent's children), or
    [] when it is in none. `contracts_of` lists a customer's unarchived contracts."""
    own = contracts_of(customer_id)
    parent_customer = next((p["customer_id"] for c in own if (p := parent_of(c)) is not None), None)
    if parent_customer is None:
        if not any(children_of(c) for c in own):
            return []
        parent_customer, parent_contracts = customer_id, own
    else:
        try:
            parent_contracts = contracts_of(parent_customer)
        except NotFound:
            return []
    members = {parent_customer} | {child["customer_id"] for c in parent_contracts for child in children_of(c)}
    return sorted(members - {customer_id})


def parent_contracts(customer_id: str, contracts_of: Callable[[str], list[dict]]) -> list[dict]:
    """The contracts with children of `customer_id`'s hierarchy ([] when it is in none)."""
    own = contracts_of(customer_id)
    parent_customer = next((p["customer_id"] for c in own if (p := parent_of(c)) is not None), None)
    try:
        contracts = own if parent_customer is None else contracts_of(parent_customer)
    except NotFound:
        return []
    return [c for c in contracts if children_of(c)]


class HierarchyService:
    def __init__(self, contracts: ContractService, store) -> None:
        self._contracts = contracts
        self._store = store  # DynamoContractStore: create_child

    def create(self, request: dict, uniqueness_key: str | None) -> dict:
        """Create a contract with `hierarchy_configuration`: a child linked to its parent, or a
        parent-to-be (parent_behavior alone)."""
        customer_id = request["customer_id"]
        link = request["hierarchy_configuration"].get("parent")
        if link is None:
            check_parent_customer(self._contracts.list(customer_id))
            return self._contracts.create(request, uniqueness_key)
        parent = self._checked_parent(customer_id, link)  # the link's refusals before the contract's own
        if consolidates(request) and not concatenates(parent):
            raise InvalidInput(
                "hierarchy_configuration.usage_statement_behavior",
                "CONSOLIDATE needs a parent contract with parent_behavior.invoice_consolidation_type CONCATENATE",
            )
        document = self._contracts.prepared(request, uniqueness_key)
        for _ in range(MAX_ATTEMPTS):
            parent = self._checked_parent(customer_id, link)
            config = dict(parent.get("hierarchy_configuration") or {})
            config["children"] = [*children_of(parent), {"contract_id": document["id"], "customer_id": customer_id}]
            try:
                self._store.create_child(document, uniqueness_key, dict(parent, hierarchy_configuration=config))
            except ContractChanged:
                continue
            return document
        raise Conflict("the parent contract kept changing; retry")

    def _checked_parent(self, customer_id: str, link: dict) -> dict:
        """The parent contract `link` names, read now, once the link passes every rule."""
        try:
            parent: dict | None = self._contracts.get(link["customer_id"], link["contract_id"])
        except NotFound:
            parent = None
        siblings = self._contracts.list(customer_id)
        parents = [] if parent is None else self._contracts.list(parent["customer_id"])
        check_child_link(customer_id, parent, siblings, parents)
        assert parent is not None
        return parent




def children_finalized(contract: dict, invoices, sleep: Callable[[float], None]) -> tuple[tuple[tuple[str, int], ...], dict]:
    """(each child customer's record count, what its finalized invoices drew from `contract`'s
    grants by access segment, in grant_edits.drawn_by_finalized's shape), so an edit of a parent's
    commit or credit keeps every child's finalized drawdown whole, conditional on those counts.
    Counts are read before records, and records until the index holds that many. `invoices`: the
    invoice store. No reads for a contract without children."""
    children = children_of(contract)
    child_contracts = {c["contract_id"] for c in children}
    counts, records = [], []
    for customer_id in sorted({c["customer_id"] for c in children}):
        for attempt in range(MAX_ATTEMPTS):
            written = invoices.records_written(customer_id)
            listed = invoices.list_for_customer(customer_id)
            if len(listed) >= written:
                break
            sleep(0.05 * 2**attempt)
        else:
            raise StoreUnavailable(f"the invoice index of customer {customer_id} lags behind; retry")
        counts.append((customer_id, written))
        records += [r for r in listed if r.contract_id in child_contracts]
    # Children draw from their own grants too; only this contract's segments matter here (and their
    # rollover segments, "<segment id>:rollover").
    own = {s["id"] for g in (contract.get("commits") or []) + (contract.get("credits") or []) for s in g["access_schedule"]}
    drawn = {k: v for k, v in drawn_by_finalized(records, None).items() if k.split(":")[0] in own}
    return tuple(counts), drawn


def merged_drawn(*parts: dict) -> dict[str, tuple[Decimal, datetime, datetime]]:
    """Finalized drawdowns by segment, added up: (total, first instant, last instant)."""
    merged: dict[str, tuple[Decimal, datetime, datetime]] = {}
    for part in parts:
        for segment_id, (total, first, last) in part.items():
            before = merged.get(segment_id)
            merged[segment_id] = (total, first, last) if before is None else (
                before[0] + total, min(before[1], first), max(before[2], last))
    return merged
