"""`scheduled_charges_on_usage_invoices: ALL`: a scheduled charge whose timestamp is a usage
period's ending_before is billed on that USAGE invoice, not on a SCHEDULED invoice of its own.
moto DynamoDB and the fakes of the contracts tests; the contract starts Oct 1 2026 and bills
monthly, "now" is Nov 24; API calls cost 2 until Nov 15."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput

from tally.api.contract_models import ContractView, contract_json
from tally.billing.pricing.invoices import ChargeWindow
from tests.service.test_contract_edits import drafts, stored, w  # noqa: F401 - w is the fixture
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT
from tests.service.test_contracts_service import _commit, _request

UTC = timezone.utc
NOV_12 = datetime(2026, 11, 12, tzinfo=UTC)
CHARGES = [{"product_id": "p-setup", "name": "Fees", "schedule": {"schedule_items": [
    {"timestamp": "2026-10-01T00:00:00Z", "amount": 5000},  # the contract's start: ends no usage period
    {"timestamp": "2026-11-01T00:00:00Z", "amount": 400},  # October's ending_before
    {"timestamp": "2026-11-12T00:00:00Z", "amount": 300},  # mid-November: no usage invoice ends then
]}}]


def create(w, **more) -> dict:  # noqa: F811
    return w.contracts.create(_request(w.customer.id, **(BARE | {"scheduled_charges": CHARGES}), **more))


@pytest.mark.parametrize("consolidated, expected", [
    (False, [("USAGE", OCT, "FINALIZED", Decimal("20.00")), ("SCHEDULED", OCT, "FINALIZED", Decimal("5000.00")),
             ("SCHEDULED", NOV, "DRAFT", Decimal("400.00")), ("SCHEDULED", NOV_12, "DRAFT", Decimal("300.00"))]),
    # October's usage invoice: 10 calls x 2 = 20 and the 400 charged at Nov 1, its end = 420.
    (True, [("USAGE", OCT, "FINALIZED", Decimal("420.00")), ("SCHEDULED", OCT, "FINALIZED", Decimal("5000.00")),
            ("SCHEDULED", NOV_12, "DRAFT", Decimal("300.00"))]),
], ids=["separate invoices by default", "ALL: the charge at October's end on October's usage invoice"])
def test_a_charge_at_a_periods_end_is_billed_on_that_usage_invoice(w, consolidated, expected):  # noqa: F811
    contract = create(w, **({"scheduled_charges_on_usage_invoices": "ALL"} if consolidated else {}))
    w.usage.calls += [(datetime(2026, 10, 5, tzinfo=UTC), 10)]
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)  # stored: never re-priced

    found = [d for d in drafts(w) if d[0] == "SCHEDULED" or d[1] == OCT]
    assert found == expected
    if consolidated:
        document = stored(w, contract)
        body = contract_json(document, w.contracts.contract(document), w.contracts.products())
        assert body["scheduled_charges_on_usage_invoices"] == "ALL"
        assert body["current"]["scheduled_charges_on_usage_invoices"] == "ALL"


@pytest.mark.parametrize("instant, consolidated, first, billed", [
    (OCT, False, True, True), (NOV, False, True, False),
    (OCT, True, True, True), (NOV, True, True, True),
    (OCT, True, False, False),
], ids=["own start", "own end, not consolidated", "the contract's start, consolidated", "own end, consolidated",
        "a later period's start, consolidated (billed by the period before)"])
def test_the_charge_window_of_a_period(instant, consolidated, first, billed):
    window = ChargeWindow(OCT, NOV, consolidated, first)
    assert window.contains(instant) is billed


def test_a_commit_invoiced_at_a_periods_end_is_billed_on_that_usage_invoice_and_linked_to_it(w):  # noqa: F811
    commit = _commit(access_schedule={"schedule_items": [
        {"amount": 1000, "starting_at": "2026-11-01T00:00:00Z", "ending_before": "2027-01-01T00:00:00Z"}]},
        invoice_schedule={"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 600}]})
    contract = w.contracts.create(_request(w.customer.id, **BARE, commits=[commit], scheduled_charges_on_usage_invoices="ALL"))
    w.usage.calls += [(datetime(2026, 10, 5, tzinfo=UTC), 10)]

    # October's usage invoice: 10 calls x 2 = 20 (the commit's access starts Nov 1) + the 600 purchase.
    assert [d for d in drafts(w) if d[1] == OCT or d[0] == "SCHEDULED"] == [("USAGE", OCT, "DRAFT", Decimal("620.00"))]
    document = stored(w, contract)
    body = contract_json(document, w.contracts.contract(document), w.contracts.products(), ContractView(figures=w.balances.figures(w.customer.id, with_balances=False)))
    (item,) = body["current"]["commits"][0]["invoice_schedule"]["schedule_items"]
    (october,) = [d for d in w.invoices.list(w.customer.id)[0] if d.invoice.starting_at == OCT]
    assert item["invoice_id"] == october.id


@pytest.mark.parametrize("consolidated", [False, True], ids=["its own invoice: allowed", "ALL: refused"])
def test_an_edit_adding_a_charge_at_a_finalized_periods_end_is_refused_when_that_usage_invoice_would_bill_it(
    w, consolidated  # noqa: F811
):
    from tests.service.test_contract_edits import edit

    contract = w.contracts.create(_request(w.customer.id, **BARE, **(
        {"scheduled_charges_on_usage_invoices": "ALL"} if consolidated else {})))
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    charge = {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-01T00:00:00Z", "amount": 70}]}}
    if not consolidated:
        edit(w, contract, add_scheduled_charges=[charge])
        assert ("SCHEDULED", NOV, "DRAFT", Decimal("70.00")) in drafts(w)
        return
    with pytest.raises(InvalidInput) as refused:
        edit(w, contract, add_scheduled_charges=[charge])
    assert refused.value.field == "add_scheduled_charges[0].schedule.schedule_items[0].timestamp"
