"""Customer hierarchies as a use case (services/hierarchy.py): moto DynamoDB, the fake catalog of the
contracts tests (API calls at 2 until Nov 15), the real cycle close. "Now" is Nov 24 2026 12:00.

Acme Group (the parent, w.customer) has a contract from Oct 1 with a 1000 prepaid commit its
children may draw; three child customers each have a contract naming it. Figures by hand:
October, child A 150 calls x 2 = 300, child B 200 x 2 = 400, child C 50 x 2 = 100."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.documents import DynamoContractStore
from tally.api.contract_models import contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing.errors import InvalidInput
from tally.services.customers import CustomerService
from tally.services.hierarchy import HierarchyService
from tests.service.test_contract_edits import edit, stored
from tests.service.test_contracts_service import FakeCatalog, FakeUsage, _commit, _request
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, _world
from tally.services.contract_edits import ContractEditService

UTC = timezone.utc
OCT_5 = datetime(2026, 10, 5, tzinfo=UTC)
NOV_5 = datetime(2026, 11, 5, tzinfo=UTC)
ALL = {"child_access": {"type": "ALL"}}


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    usages: dict[str, FakeUsage] = {}
    world = _world(dynamo, clock, FakeCatalog(), lambda customer: usages.setdefault(customer.id, FakeUsage([])))
    world.usages = usages
    store = DynamoContractStore(dynamo["billing"], dynamo["client"])
    world.contract_store = store
    world.hierarchy = HierarchyService(world.contracts, store)
    world.edits = ContractEditService(world.contracts, store, world.store, clock, sleep=lambda _: None)
    customers = CustomerService(world.billing, clock)
    world.kids = [customers.create(f"Acme {n}", [f"acme-{n}"], None, {}) for n in ("a", "b", "c")]
    return world


def _create(w, customer_id: str, **changes) -> dict:
    request = _request(customer_id, **(BARE | changes))
    if "hierarchy_configuration" in request:
        return w.hierarchy.create(request, None)
    return w.contracts.create(request)


def _family(w, access=ALL, amount=1000):
    """The parent's contract with its commit, and a child contract for each child customer."""
    commit = _commit(access_schedule={"schedule_items": [
        {"amount": amount, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}]},
        hierarchy_configuration=access)
    parent = _create(w, w.customer.id, commits=[commit], hierarchy_configuration={"parent_behavior": {"invoice_consolidation_type": "NONE"}})
    link = {"parent": {"contract_id": parent["id"], "customer_id": w.customer.id}}
    children = [_create(w, kid.id, hierarchy_configuration=link) for kid in w.kids]
    return parent, children


def _use(w, customer, at: datetime, calls: int) -> None:
    w.usages.setdefault(customer.id, FakeUsage([])).calls.append((at, calls))


def _usage_total(w, customer, starting_at: datetime) -> Decimal:
    (invoice,) = [d.invoice for d in w.invoices.list(customer.id)[0]
                  if d.invoice.type.value == "USAGE" and d.invoice.starting_at == starting_at]
    return invoice.total


def _balance(w) -> Decimal:
    parent = w.contracts.list(w.customer.id)[0]
    return w.balances.burn_down(w.customer.id).grant_balance(parent["commits"][0]["id"])


def test_children_draw_the_parents_commit_when_its_child_access_names_them(w):
    parent, (a, b, c) = _family(w)
    # Only A and B may draw: CONTRACT_IDS through an edit of the commit (the children exist now).
    commit_id = stored(w, parent)["commits"][0]["id"]
    edit(w, parent, update_commits=[{"commit_id": commit_id, "hierarchy_configuration": {
        "child_access": {"type": "CONTRACT_IDS", "contract_ids": [a["id"], b["id"]]}}}])
    kid_a, kid_b, kid_c = w.kids
    _use(w, kid_a, OCT_5, 150)
    _use(w, kid_b, OCT_5, 200)
    _use(w, kid_c, OCT_5, 50)

    # A: 300 - 300 drawn = 0; B: 400 - 400 = 0; C has no access: 100. The commit: 1000 - 700 = 300.
    assert [_usage_total(w, k, OCT) for k in w.kids] == [Decimal(0), Decimal(0), Decimal("100.00")]
    assert _balance(w) == Decimal(300)
    # In November A uses 200 calls x 2 = 400 more: only the 300 left pays, A's draft is 100.
    _use(w, kid_a, NOV_5, 200)
    assert _usage_total(w, kid_a, NOV) == Decimal("100.00")
    assert _balance(w) == Decimal(0)
    # The parent's own invoices carry none of its children's usage (payer SELF, SEPARATE).
    assert _usage_total(w, w.customer, OCT) == Decimal(0)
    history = w.edits.history(w.customer.id, parent["id"])
    assert history[-1]["update_commits"][0]["hierarchy_configuration"]["child_access"]["type"] == "CONTRACT_IDS"


def test_finalized_child_invoices_keep_their_draws_and_racing_children_never_overdraw(w):
    # A 500 commit, A and B both served. Finalization order decides nothing twice: whichever child's
    # usage invoice sorts first in the burn-down is F, the other S.
    parent, (a, b, _) = _family(w, amount=500)
    kid_a, kid_b, _ = w.kids
    first_a = w.invoices.due_periods(kid_a.id)[1][0].usage_slot < w.invoices.due_periods(kid_b.id)[1][0].usage_slot
    (f, f_contract), (s, s_contract) = ((kid_a, a), (kid_b, b)) if first_a else ((kid_b, b), (kid_a, a))
    _use(w, f, OCT_5, 50)    # 100 so far; a late event brings it to 300
    _use(w, s, OCT_5, 200)   # 400
    as_of = NOV + GRACE

    # S prices October first (F 100, S 400 of the 500). Before S writes, F's late 100 calls arrive
    # and F finalizes: F draws 300 (S was a draft). S's write must then fail and price again on top
    # of F's frozen 300: S draws 200, its invoice is 400 - 200 = 200. Without the family check S
    # would keep 400 and the commit would pay 700 of 500.
    original = w.store.create
    raced = []

    def racing(customer_id, written, records, **more):
        if customer_id == s.id and not raced:
            raced.append(True)
            _use(w, f, OCT_5, 100)
            w.service.finalize(f.id, f_contract["id"], OCT, as_of)
        return original(customer_id, written, records, **more)

    w.store.create = racing
    w.service.finalize(s.id, s_contract["id"], OCT, as_of)
    assert raced

    assert (_usage_total(w, f, OCT), _usage_total(w, s, OCT)) == (Decimal(0), Decimal("200.00"))
    assert _balance(w) == Decimal(0)
    # Finalized invoices never change: more usage for S later changes nothing finalized.
    _use(w, s, OCT_5, 100)
    assert (_usage_total(w, f, OCT), _usage_total(w, s, OCT)) == (Decimal(0), Decimal("200.00"))


def test_v1_and_v2_show_both_sides_of_the_hierarchy_and_the_commits_child_access(w):
    parent, (a, _, _) = _family(w)
    products = w.contracts.products()
    doc = stored(w, parent)
    shown = contract_json(doc, w.contracts.contract(doc), products)["current"]["hierarchy_configuration"]
    children = [{"contract_id": w.contracts.list(k.id)[0]["id"], "customer_id": k.id} for k in w.kids]
    assert shown == {"children": children, "parent_behavior": {"invoice_consolidation_type": "NONE"}}
    child = w.contracts.get(w.kids[0].id, a["id"])
    v2 = contract_v2_json(child, w.contracts.contract(child), products)
    assert v2["hierarchy_configuration"] == {"parent": {"contract_id": parent["id"], "customer_id": w.customer.id},
                                             "payer": "SELF", "usage_statement_behavior": "SEPARATE"}
    commit = contract_v2_json(doc, w.contracts.contract(doc), products)["commits"][0]
    assert commit["hierarchy_configuration"] == ALL


@pytest.mark.parametrize("link, field", [
    ({"contract_id": "nope"}, "hierarchy_configuration.parent.contract_id"),
    ({"customer_id": "self"}, "hierarchy_configuration.parent.customer_id"),
    ({"child": True}, "hierarchy_configuration.parent.contract_id"),
], ids=["an unknown parent contract", "the child's own customer", "a parent that is itself a child"])
def test_a_bad_link_is_refused_naming_the_field_and_writes_nothing(w, link, field):
    parent, children = _family(w)
    before = stored(w, parent)
    kid = CustomerService(w.billing, w.clock).create("Acme d", ["acme-d"], None, {})  # no contract yet
    target = {"contract_id": parent["id"], "customer_id": w.customer.id}
    if link.get("contract_id"):
        target["contract_id"] = link["contract_id"]
    if link.get("customer_id"):
        target["customer_id"], kid = w.customer.id, w.customer
    if link.get("child"):
        target = {"contract_id": children[1]["id"], "customer_id": w.kids[1].id}
    with pytest.raises(InvalidInput) as refused:
        _create(w, kid.id, hierarchy_configuration={"parent": target})
    assert refused.value.field == field
    assert stored(w, parent) == before
    assert len(w.contracts.list(kid.id)) == (1 if kid is w.customer else 0)  # no new contract


@pytest.mark.parametrize("config, field", [
    ({"usage_statement_behavior": "CONSOLIDATE"}, "hierarchy_configuration.usage_statement_behavior"),
    ({"usage_statement_behavior": "CONSOLIDATE", "payer": "SELF"}, "hierarchy_configuration.usage_statement_behavior"),
    ({"payer": "SELF"}, "hierarchy_configuration.payer"),
], ids=["consolidated statements need payer PARENT", "even with SELF said", "a child's setting without a parent"])
def test_settings_not_built_are_refused_naming_the_sub_field(w, config, field):
    parent, _ = _family(w)
    if field != "hierarchy_configuration.payer":
        config = {"parent": {"contract_id": parent["id"], "customer_id": w.customer.id}, **config}
    with pytest.raises(InvalidInput) as refused:
        _request(w.kids[0].id, **(BARE | {"hierarchy_configuration": config}))
    assert refused.value.field == field


def test_an_edit_of_the_parents_commit_keeps_what_finalized_child_invoices_drew(w):
    parent, (a, _, _) = _family(w)
    kid_a = w.kids[0]
    _use(w, kid_a, OCT_5, 150)  # 300, drawn from the parent's commit
    w.service.finalize(kid_a.id, a["id"], OCT, NOV + GRACE)
    before = stored(w, parent)
    segment = before["commits"][0]["access_schedule"][0]["id"]

    # Down to 200 would leave A's finalized 300 short: refused, naming the field, nothing written.
    with pytest.raises(InvalidInput) as refused:
        edit(w, parent, update_commits=[{"commit_id": before["commits"][0]["id"], "access_schedule": {
            "update_schedule_items": [{"id": segment, "amount": 200}]}}])
    assert refused.value.field.startswith("update_commits[0].access_schedule.update_schedule_items[0]")
    assert stored(w, parent) == before and w.edits.history(w.customer.id, parent["id"]) == []
    # Down to 300 keeps it whole: A's finalized invoice still shows 300 - 300 = 0, the balance is 0.
    edit(w, parent, update_commits=[{"commit_id": before["commits"][0]["id"], "access_schedule": {
        "update_schedule_items": [{"id": segment, "amount": 300}]}}])
    assert _usage_total(w, kid_a, OCT) == Decimal(0)
    assert _balance(w) == Decimal(0)


def _lower(w, parent: dict, amount: int) -> None:
    commit = stored(w, parent)["commits"][0]
    edit(w, parent, update_commits=[{"commit_id": commit["id"], "access_schedule": {
        "update_schedule_items": [{"id": commit["access_schedule"][0]["id"], "amount": amount}]}}])


def test_a_child_finalizing_while_the_parents_commit_is_lowered_is_seen_by_the_edit(w):
    parent, (a, _, _) = _family(w)
    kid_a = w.kids[0]
    _use(w, kid_a, OCT_5, 150)  # 300
    original = w.contract_store.commit_edit
    raced = []

    def racing(*args, **more):
        if not raced:  # A's October is finalized after the edit read what children drew (nothing)
            raced.append(w.service.finalize(kid_a.id, a["id"], OCT, NOV + GRACE))
        return original(*args, **more)

    w.contract_store.commit_edit = racing
    # The edit's write fails on A's new record count; its retry sees A's finalized 300 and refuses 200.
    with pytest.raises(InvalidInput) as refused:
        _lower(w, parent, 200)
    assert refused.value.field == "update_commits[0].access_schedule.update_schedule_items[0].amount"
    assert raced and stored(w, parent)["commits"][0]["access_schedule"][0]["amount"] == Decimal(1000)


def test_a_parents_commit_lowered_while_a_child_finalizes_makes_the_child_price_again(w):
    parent, (a, _, _) = _family(w)
    kid_a = w.kids[0]
    _use(w, kid_a, OCT_5, 150)  # 300
    original = w.store.create
    raced = []

    def racing(customer_id, written, records, **more):
        if not raced:  # A priced October with the 1000 commit; the commit goes down to 100 before A writes
            raced.append(True)
            _lower(w, parent, 100)
        return original(customer_id, written, records, **more)

    w.store.create = racing
    w.service.finalize(kid_a.id, a["id"], OCT, NOV + GRACE)
    # A's write fails on the parent contract's version; priced again, the commit pays 100: 300 - 100.
    assert raced and _usage_total(w, kid_a, OCT) == Decimal("200.00")
    assert _balance(w) == Decimal(0)


def test_a_parents_recurring_credit_passes_child_access_down_to_the_credits_it_makes(w):
    # 200 a month from Oct 1, shared with every child: A's October 300 takes October's 200 (draft
    # 100), B's November 50 calls x 2 = 100 takes 100 of November's 200.
    recurring = {"product_id": "p-setup", "access_amount": {"unit_price": 200, "quantity": 1},
                 "commit_duration": {"value": 1, "unit": "PERIODS"}, "starting_at": "2026-10-01T00:00:00Z",
                 "priority": 1, "hierarchy_configuration": ALL}
    parent = _create(w, w.customer.id, recurring_credits=[recurring])
    link = {"parent": {"contract_id": parent["id"], "customer_id": w.customer.id}}
    a, b = (_create(w, kid.id, hierarchy_configuration=link) for kid in w.kids[:2])
    _use(w, w.kids[0], OCT_5, 150)
    _use(w, w.kids[1], NOV_5, 50)
    assert _usage_total(w, w.kids[0], OCT) == Decimal("100.00")
    assert _usage_total(w, w.kids[1], NOV) == Decimal(0)
    doc = stored(w, parent)
    shown = contract_json(doc, w.contracts.contract(doc), w.contracts.products())["current"]
    assert shown["recurring_credits"][0]["hierarchy_configuration"] == ALL
    assert {c["hierarchy_configuration"]["child_access"]["type"] for c in shown["credits"]} == {"ALL"}


def test_a_childs_voided_invoice_gives_the_parents_commit_back_and_its_regenerate_draws_again(w):
    parent, (a, _, _) = _family(w)
    kid_a = w.kids[0]
    _use(w, kid_a, OCT_5, 150)  # 300
    (final,) = w.service.finalize(kid_a.id, a["id"], OCT, NOV + GRACE)["finalized"]
    assert _balance(w) == Decimal(700)
    w.service.void(final)
    assert _balance(w) == Decimal(1000)  # the voided invoice draws nothing
    _use(w, kid_a, OCT_5, 50)  # a correction: 200 calls x 2 = 400, all paid by the commit
    regenerated = w.service.regenerate(final)
    assert w.store.get(regenerated).invoice.total == Decimal(0)
    assert _balance(w) == Decimal(600)


def test_contract_ids_name_only_the_parents_children_and_a_refusal_writes_nothing(w):
    parent, (a, _, _) = _family(w)
    before = stored(w, parent)
    stranger = w.contracts.list(w.customer.id)[0]["id"]  # the parent's own contract is no child of itself
    with pytest.raises(InvalidInput) as refused:
        edit(w, parent, update_commits=[{"commit_id": before["commits"][0]["id"], "hierarchy_configuration": {
            "child_access": {"type": "CONTRACT_IDS", "contract_ids": [a["id"], stranger]}}}])
    assert refused.value.field == "update_commits[0].hierarchy_configuration.child_access.contract_ids"
    assert stored(w, parent) == before
    # At creation a contract has no children yet: CONTRACT_IDS is set by an edit once they exist.
    commit = _commit(hierarchy_configuration={"child_access": {"type": "CONTRACT_IDS", "contract_ids": [a["id"]]}})
    kid = CustomerService(w.billing, w.clock).create("Acme e", ["acme-e"], None, {})
    with pytest.raises(InvalidInput) as refused:
        _create(w, kid.id, commits=[commit])
    assert refused.value.field == "commits[0].hierarchy_configuration.child_access.contract_ids"
