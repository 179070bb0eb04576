"""A finalized invoice, a late event, void and regenerate, through Metronome's official SDK on the
local stack.

Finalization is the cycle close workflow's job. This test closes its own customer's period by
calling the cycle close service in the stack's process (the local stack runs in the test process),
so it finalizes nothing of the other tests sharing the stack. Amounts are cents, exact in binary.
"""

from __future__ import annotations

from datetime import datetime, timezone

import metronome
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event, usage_value

pytestmark = pytest.mark.system


def _segment(amount, start, end):
    return {"schedule_items": [{"amount": amount, "starting_at": rfc3339(start), "ending_before": rfc3339(end)}]}


def test_a_finalized_invoice_ignores_late_events_and_is_corrected_by_void_and_regenerate(sdk, settle, api, local_stack):
    from tally import wiring

    tag = unique("corrections")
    # Weekly periods anchored at the contract start, 9 days ago: the first week ended 2 days ago,
    # so its end plus the 24 h grace has passed.
    start = current_hour() - 9 * DAY
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    grant_product = sdk.v1.contracts.products.create(name=f"{tag} credit", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY)
    )
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract_id = sdk.v1.contracts.create(
        customer_id=customer,
        rate_card_id=card,
        starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "WEEKLY", "day": "CONTRACT_START"},
    ).data.id
    credit_id = sdk.v1.customers.credits.create(
        customer_id=customer, product_id=grant_product, priority=1, name="Welcome credit",
        access_schedule=_segment(100, start, start + 30 * DAY),
    ).data.id

    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(6)])
    settle()

    def net_balance(mode="FINALIZED_AND_DRAFT"):
        return sdk.v1.contracts.get_net_balance(customer_id=customer, invoice_inclusion_mode=mode).data.balance

    # Cycle close for the first week: 6 calls × 10 = 60 cents, all paid by the credit.
    closed = wiring.cycle_close_service().finalize(customer, contract_id, start, datetime.now(timezone.utc))
    (first_week,) = closed["finalized"]
    assert closed["invoice_ids"] == [first_week]
    assert wiring.cycle_close_service().finalize(customer, contract_id, start, datetime.now(timezone.utc)) == {
        "invoice_ids": [first_week], "finalized": []}
    invoice = sdk.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=first_week).data
    assert (invoice.status, invoice.subtotal, invoice.total) == ("FINALIZED", 60, 0)
    assert [i.id for i in sdk.v1.customers.invoices.list(customer_id=customer, status="FINALIZED").data] == [first_week]
    assert net_balance() == net_balance("FINALIZED") == 40  # a finalized drawdown is not pending

    # A late event in the first week counts in usage and changes no finalized invoice.
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-late{n}", tag, tag, start + 2 * HOUR) for n in range(2)])
    settle()
    assert usage_value(sdk, customer, metric, start, start + 7 * DAY) == 8
    assert sdk.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=first_week).data == invoice

    # A draft cannot be voided; an unknown invoice is not found.
    draft = sdk.v1.customers.invoices.list(customer_id=customer, status="DRAFT").data[0]
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.invoices.void(id=draft.id)
    assert refused.value.body["field"] == "id"
    with pytest.raises(metronome.NotFoundError):
        sdk.v1.invoices.void(id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(metronome.BadRequestError) as refused:
        sdk.v1.invoices.regenerate(id=first_week)  # not voided yet
    assert refused.value.body["field"] == "id"
    for body in ({}, {"id": "not-an-invoice"}, {"id": first_week, "extra": 1}):
        response = api.post("/v1/invoices/void", json=body)
        assert (response.status_code, response.json().get("field")) == (400, "extra" if "extra" in body else "id")

    # Void: the drawdown is given back, and the ledger shows it canceled.
    assert sdk.v1.invoices.void(id=first_week).data.id == first_week
    assert sdk.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=first_week).data.status == "VOID"
    assert net_balance() == 100
    (credit,) = sdk.v1.contracts.list_balances(customer_id=customer, include_ledgers=True).data
    assert credit.id == credit_id
    assert [(e.type, e.amount) for e in credit.ledger] == [
        ("CREDIT_SEGMENT_START", 100), ("CREDIT_CANCELED", 60), ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", -60)]

    # Regenerate: the week recomputed from current data (8 calls), a new finalized invoice.
    regenerated = sdk.v1.invoices.regenerate(id=first_week).data.id
    assert regenerated != first_week
    assert sdk.v1.invoices.regenerate(id=first_week).data.id == regenerated  # twice: the same invoice
    corrected = sdk.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=regenerated).data
    assert (corrected.status, corrected.subtotal, corrected.total) == ("FINALIZED", 80, 0)
    assert corrected.regenerated_from_invoice_id == first_week
    assert net_balance() == 20
    statuses = [(i.id, i.status) for i in sdk.v1.customers.invoices.list(customer_id=customer).data]
    assert statuses[:2] == [(regenerated, "FINALIZED"), (first_week, "VOID")] and statuses[2][1] == "DRAFT"
