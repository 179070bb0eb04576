"""Consolidated invoices of a customer hierarchy (billing/consolidation.py, services/consolidation.py):
moto DynamoDB, the fake catalog of the contracts tests (API calls at 2), the real cycle close.
"Now" is Nov 24 2026 12:00 (the world of tests/service/test_hierarchy.py).

Acme Group (the parent) has a contract from Oct 1 with parent_behavior CONCATENATE. Children A and B
have payer PARENT and usage_statement_behavior CONSOLIDATE; child C keeps the defaults (SELF,
SEPARATE). October by hand: the parent 10 calls x 2 = 20, A 150 x 2 = 300, B 200 x 2 = 400,
C 50 x 2 = 100. The parent's consolidated October invoice: 20 + 300 + 400 = 720 (C's 100 is not
on it)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tests.service.test_cycle_close import GRACE, NOV, OCT
from tests.service.test_hierarchy import OCT_5, _create, _use, w  # noqa: F401 - w is the fixture

CONCATENATE = {"parent_behavior": {"invoice_consolidation_type": "CONCATENATE"}}
CONSOLIDATED = "USAGE_CONSOLIDATED"


def _consolidating_family(w):
    parent = _create(w, w.customer.id, hierarchy_configuration=CONCATENATE)
    link = {"parent": {"contract_id": parent["id"], "customer_id": w.customer.id}}
    consolidate = link | {"payer": "PARENT", "usage_statement_behavior": "CONSOLIDATE"}
    kid_a, kid_b, kid_c = w.kids
    children = [_create(w, kid_a.id, hierarchy_configuration=consolidate),
                _create(w, kid_b.id, hierarchy_configuration=consolidate),
                _create(w, kid_c.id, hierarchy_configuration=link)]
    _use(w, w.customer, OCT_5, 10)
    _use(w, kid_a, OCT_5, 150)
    _use(w, kid_b, OCT_5, 200)
    _use(w, kid_c, OCT_5, 50)
    return parent, children


def _october(w, customer, type_="USAGE"):
    (draft,) = [d for d in w.invoices.list(customer.id)[0]
                if d.invoice.type.value == type_ and d.invoice.starting_at == OCT and d.invoice.status != "VOID"]
    return draft


def test_the_parents_consolidated_draft_holds_its_own_and_consolidating_childrens_usage_lines(w):
    parent, (a, b, c) = _consolidating_family(w)
    kid_a, kid_b, kid_c = w.kids
    own, usage_a, usage_b, usage_c = (_october(w, k) for k in (w.customer, kid_a, kid_b, kid_c))
    assert [i.invoice.total for i in (own, usage_a, usage_b, usage_c)] == [Decimal(20), Decimal(300), Decimal(400), Decimal(100)]

    consolidated = _october(w, w.customer, CONSOLIDATED).invoice
    assert consolidated.status == "DRAFT"
    assert consolidated.total == consolidated.subtotal == Decimal(720)  # 20 + 300 + 400, not C's 100
    assert consolidated.payer == (parent["id"], w.customer.id)
    assert consolidated.constituent_invoices == (
        (parent["id"], w.customer.id, own.id), (a["id"], kid_a.id, usage_a.id), (b["id"], kid_b.id, usage_b.id))
    # Every line of each constituent, in order, with its origin; nothing else.
    by_origin = [(line.origin.invoice_id, line.total) for line in consolidated.line_items]
    expected = [(i.id, line.total) for i in (own, usage_a, usage_b) for line in i.invoice.line_items]
    assert by_origin == expected
    assert {line.origin.customer_id for line in consolidated.line_items} == {w.customer.id, kid_a.id, kid_b.id}
    # Its id is readable on the parent (draft priced on get) and not on a child.
    assert w.invoices.get(w.customer.id, _october(w, w.customer, CONSOLIDATED).id).invoice.total == Decimal(720)

    # The constituents stay readable; what the consolidated invoice bills is not billable twice.
    assert (usage_a.invoice.payer, usage_a.invoice.billable) == ((parent["id"], w.customer.id), False)
    assert (own.invoice.payer, own.invoice.billable) == (None, False)
    assert (usage_c.invoice.payer, usage_c.invoice.billable) == (None, True)
    assert [d.invoice.type.value for d in w.invoices.list(kid_a.id)[0]].count(CONSOLIDATED) == 0


def test_the_consolidated_invoice_is_stored_once_when_every_constituent_is_finalized(w):
    parent, (a, b, _) = _consolidating_family(w)
    kid_a, kid_b, _ = w.kids
    as_of = NOV + GRACE
    # The parent finalizes first: its children's October invoices are drafts, nothing consolidated yet.
    first = w.service.finalize(w.customer.id, parent["id"], OCT, as_of)
    assert len(first["finalized"]) == 1
    assert _october(w, w.customer, CONSOLIDATED).invoice.status == "DRAFT"
    w.service.finalize(kid_a.id, a["id"], OCT, as_of)
    w.service.finalize(kid_b.id, b["id"], OCT, as_of)

    # The next run finds the parent's October again, and stores the consolidated invoice alone.
    due = [(i["customer_id"], i["contract_id"], i["kind"]) for i in w.service.find_due(as_of, GRACE).periods
           if i["period_start"] == "2026-10-01T00:00:00Z"]
    assert (w.customer.id, parent["id"], "USAGE") in due
    second = w.service.finalize(w.customer.id, parent["id"], OCT, as_of)
    consolidated = _october(w, w.customer, CONSOLIDATED)
    assert second["finalized"] == [consolidated.id]
    assert consolidated.invoice.status == "FINALIZED" and consolidated.invoice.total == Decimal(720)
    assert w.store.get(consolidated.id).invoice.constituent_invoices[1] == (a["id"], kid_a.id, _october(w, kid_a).id)
    # Exactly once: again finalizes nothing, and no run lists the period any more.
    assert w.service.finalize(w.customer.id, parent["id"], OCT, as_of)["finalized"] == []
    assert not [i for i in w.service.find_due(as_of, GRACE).periods
                if i["period_start"] == "2026-10-01T00:00:00Z" and i["customer_id"] == w.customer.id]

    # Finalized, it never changes: voiding child A's invoice leaves it as stored.
    before = w.store.get(consolidated.id).invoice
    w.service.void(_october(w, kid_a).id)
    after = w.invoices.get(w.customer.id, consolidated.id).invoice
    assert after == before and after.total == Decimal(720)


def test_children_finalized_first_make_the_parents_close_store_it_in_the_same_write(w):
    parent, (a, b, _) = _consolidating_family(w)
    kid_a, kid_b, _ = w.kids
    as_of = NOV + GRACE
    w.service.finalize(kid_a.id, a["id"], OCT, as_of)
    w.service.finalize(kid_b.id, b["id"], OCT, as_of)
    closed = w.service.finalize(w.customer.id, parent["id"], OCT, as_of)
    consolidated = _october(w, w.customer, CONSOLIDATED)
    assert closed["finalized"] == [_october(w, w.customer).id, consolidated.id]
    assert consolidated.invoice.status == "FINALIZED" and consolidated.invoice.total == Decimal(720)


def test_consolidate_needs_a_concatenating_parent(w):
    parent = _create(w, w.customer.id, hierarchy_configuration={"parent_behavior": {"invoice_consolidation_type": "NONE"}})
    link = {"parent": {"contract_id": parent["id"], "customer_id": w.customer.id},
            "payer": "PARENT", "usage_statement_behavior": "CONSOLIDATE"}
    with pytest.raises(InvalidInput) as refused:
        _create(w, w.kids[0].id, hierarchy_configuration=link)
    assert refused.value.field == "hierarchy_configuration.usage_statement_behavior"
    assert w.contracts.list(w.kids[0].id) == []
    # payer PARENT alone (SEPARATE) is accepted: the child's invoices name the parent as payer.
    child = _create(w, w.kids[0].id, hierarchy_configuration={"parent": link["parent"], "payer": "PARENT"})
    _use(w, w.kids[0], OCT_5, 150)
    usage = _october(w, w.kids[0]).invoice
    assert (usage.payer, usage.billable, usage.total) == ((parent["id"], w.customer.id), True, Decimal(300))
    assert child["hierarchy_configuration"]["payer"] == "PARENT"
    # Finalized, it is delivered to the parent's provider customer, not the child's.
    w.service.finalize(w.kids[0].id, child["id"], OCT, NOV + GRACE)
    delivery, providers = _delivery(w)
    delivery.deliver(_october(w, w.kids[0]).id)
    assert providers.asked == [(w.customer.id, None)]


class _Providers:
    """Records which customer delivery looks up; no Stripe customer configured for anyone."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def stripe_target(self, customer_id, configuration_id=None):
        self.asked.append((customer_id, configuration_id))
        return None


def _delivery(w):
    """Delivery with a provider lookup that records whom it asks (no Stripe for anyone)."""
    from tally.services.invoice_delivery import InvoiceDeliveryService

    providers = _Providers()
    contracts = {doc["id"]: doc for k in (w.customer, *w.kids) for doc in w.contracts.list(k.id)}
    never_delivered = type("NoState", (), {"get": staticmethod(lambda _id: None)})()
    return InvoiceDeliveryService(w.store, providers, never_delivered, None, None, None, lambda: "", w.clock, contracts.get), providers


def test_delivery_sends_the_consolidated_invoice_to_the_parent_and_never_a_constituent(w):
    from tally.services.invoice_delivery import NOT_BILLABLE, NOT_CONFIGURED

    parent, (a, b, c) = _consolidating_family(w)
    kid_a, kid_b, kid_c = w.kids
    as_of = NOV + GRACE
    for kid, contract in ((kid_a, a), (kid_b, b), (kid_c, c)):
        w.service.finalize(kid.id, contract["id"], OCT, as_of)
    w.service.finalize(w.customer.id, parent["id"], OCT, as_of)
    delivery, providers = _delivery(w)

    # A's and the parent's own USAGE invoices are on the consolidated one: not delivered, not looked up.
    assert delivery.deliver(_october(w, kid_a).id).outcome == NOT_BILLABLE
    assert delivery.deliver(_october(w, w.customer).id).outcome == NOT_BILLABLE
    assert providers.asked == []
    # The consolidated invoice goes to the parent's provider customer; C (SELF, SEPARATE) to its own.
    assert delivery.deliver(_october(w, w.customer, CONSOLIDATED).id).outcome == NOT_CONFIGURED
    assert delivery.deliver(_october(w, kid_c).id).outcome == NOT_CONFIGURED
    assert providers.asked == [(w.customer.id, None), (kid_c.id, None)]


def test_a_draft_consolidates_the_invoice_regenerated_for_a_voided_child_slot(w):
    parent, (a, _, _) = _consolidating_family(w)
    kid_a = w.kids[0]
    w.service.finalize(kid_a.id, a["id"], OCT, NOV + GRACE)
    voided = _october(w, kid_a).id
    w.service.void(voided)
    regenerated = w.service.regenerate(voided)
    consolidated = _october(w, w.customer, CONSOLIDATED).invoice
    assert consolidated.constituent_invoices[1] == (a["id"], kid_a.id, regenerated) and regenerated != voided
    assert consolidated.total == Decimal(720)  # A's regenerated 300 with the same usage
