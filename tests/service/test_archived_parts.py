"""Archived commits, credits and scheduled charges stay on the contract's answers, with archived_at,
and an archived credit's ledger keeps what finalized invoices drew from it. moto DynamoDB and the
contract edit world (tests/service/test_contract_edits.py): a contract from Oct 1 2026, billed
monthly, API calls at 2 cents; "now" is Nov 24 2026 12:00, when the edit archives.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from tally.api.contract_models import ContractView, contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing.pricing import USD_CENTS, InvoiceType
from tally.services.invoices import invoice_id
from tests.service.test_contract_edits import drafts, edit, stored, w  # noqa: F401 (fixture)
from tests.service.test_cycle_close import GRACE, NOV, OCT, _contract, _stored_records

UTC = timezone.utc
ARCHIVED_AT = "2026-11-24T12:00:00Z"


def _answers(w, contract: dict) -> tuple[dict, dict]:
    """(v1, v2) JSON of the contract with balances and ledgers, as get shows them."""
    document = stored(w, contract)
    figures = w.balances.figures(w.customer.id, with_balances=True)
    view = ContractView(w.clock.now, figures=figures, include_balance=True, include_ledgers=True)
    parsed = w.contracts.contract(document)
    products = w.contracts.products()
    return contract_json(document, parsed, products, view), contract_v2_json(document, parsed, products, view)


def test_an_archived_credit_commit_and_charge_stay_listed_with_archived_at_and_the_credit_keeps_its_finalized_ledger(w):
    contract = _contract(w, credits=[{
        "product_id": "p-setup", "name": "Goodwill", "priority": 1,
        "access_schedule": {"schedule_items": [{"amount": 100, "starting_at": "2026-10-01T00:00:00Z",
                                                "ending_before": "2027-01-01T00:00:00Z"}]},
    }], commits=[{
        "product_id": "p-setup", "type": "PREPAID", "name": "Prepay",
        "access_schedule": {"schedule_items": [{"amount": 300, "starting_at": "2026-12-01T00:00:00Z",
                                                "ending_before": "2027-01-01T00:00:00Z"}]},
        "invoice_schedule": {"schedule_items": [{"timestamp": "2026-12-01T00:00:00Z", "amount": 250}]},
    }], scheduled_charges=[{"product_id": "p-setup", "name": "Training", "schedule": {"schedule_items": [
        {"timestamp": "2026-12-15T00:00:00Z", "amount": 70}]}}])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10), (datetime(2026, 11, 10, tzinfo=UTC), 15)]
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    records = _stored_records(w)
    # October: 10 calls x 2 = 20, all paid by the credit (finalized). November: 15 x 2 = 30, paid too.
    assert ("USAGE", NOV, "DRAFT", Decimal("0.00")) in drafts(w)
    document = stored(w, contract)
    (credit,), (commit,), (charge,) = document["credits"], document["commits"], document["scheduled_charges"]

    edit(w, contract, archive_credits=[{"id": credit["id"]}], archive_commits=[{"id": commit["id"]}],
         archive_scheduled_charges=[{"id": charge["id"]}])

    # Pricing as before this change: the archived credit pays nothing on the draft (30 billed), the
    # commit is not bought, the charge not billed, and October's finalized invoice is untouched.
    assert ("USAGE", NOV, "DRAFT", Decimal("30.00")) in drafts(w)
    assert [d for d in drafts(w) if d[0] == "SCHEDULED" and d[1] >= datetime(2026, 12, 1, tzinfo=UTC)] == []
    assert _stored_records(w) == records

    v1, v2 = _answers(w, contract)
    for terms in (v1["current"], v2):
        (shown_credit,) = terms["credits"]
        (shown_commit,) = terms["commits"]
        (shown_charge,) = terms["scheduled_charges"]
        assert [(p["id"], p["archived_at"]) for p in (shown_credit, shown_commit, shown_charge)] == [
            (credit["id"], ARCHIVED_AT), (commit["id"], ARCHIVED_AT), (charge["id"], ARCHIVED_AT)]
        # Its ledger: 100 granted Oct 1, October's finalized 20 drawn, the 80 left expiring when archived.
        assert [(e["type"], e["amount"], e["timestamp"]) for e in shown_credit["ledger"]] == [
            ("CREDIT_SEGMENT_START", Decimal(100), "2026-10-01T00:00:00Z"),
            ("CREDIT_AUTOMATED_INVOICE_DEDUCTION", Decimal(-20), "2026-10-01T00:00:00Z"),  # the line starts Oct 1
            ("CREDIT_EXPIRATION", Decimal(-80), ARCHIVED_AT),
        ]
        assert shown_credit["ledger"][1]["invoice_id"] == invoice_id(contract["id"], OCT, USD_CENTS, InvoiceType.USAGE)
        assert shown_credit["balance"] == 0
        # The commit was archived before its access started: nothing granted, nothing drawn.
        assert (shown_commit["ledger"], shown_commit["balance"]) == ([], 0)
    assert v1["initial"]["credits"][0]["archived_at"] == ARCHIVED_AT

