"""usage_statement_schedule.invoice_generation_starting_at: a contract migrated from another billing
system bills usage from that billing period on, and the earlier periods are left to
createHistoricalInvoices. moto DynamoDB, the cycle close world: calls at 2 cents, the contract from
Oct 1 2026 billed monthly, "now" Nov 24."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tests.service.test_contract_edits import drafts, w  # noqa: F401 - w is the fixture
from tests.service.test_contracts_service import _contract_count
from tests.service.test_cycle_close import GRACE, NOV, OCT, _contract, _credit
from tests.service.test_historical_invoices import historical, october

UTC = timezone.utc
OCT_15 = datetime(2026, 10, 15, tzinfo=UTC)
FROM_NOV = {"frequency": "MONTHLY", "day": "FIRST_OF_MONTH", "invoice_generation_starting_at": "2026-11-01T00:00:00Z"}
CHARGE = [{"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-10-15T00:00:00Z", "amount": 300}]}}]


def test_usage_invoices_start_at_invoice_generation_starting_at_and_history_fills_the_rest(w):  # noqa: F811
    contract = _contract(w, usage_statement_schedule=FROM_NOV, credits=[_credit(100)], scheduled_charges=CHARGE)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 10), (datetime(2026, 11, 5, tzinfo=UTC), 30)]

    # No October usage invoice, and October's calls draw nothing from the credit: the old system
    # billed them. November: 30 calls x 2 = 60, all paid by the credit (40 left). The Oct 15
    # charge of 300 is a scheduled invoice, billed as always.
    assert drafts(w) == [("SCHEDULED", OCT_15, "DRAFT", Decimal("300.00")), ("USAGE", NOV, "DRAFT", Decimal("0.00"))]
    assert w.balances.net_balance(w.customer.id, None, include_drafts=True) == Decimal(40)
    # Cycle close finds no October usage invoice to finalize, but finalizes the charge.
    result = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    assert [w.store.get(i).invoice.total for i in result["finalized"]] == [Decimal("300.00")]

    # The migration brings October's invoice: 7 calls x 2 = 14, stored as it was billed.
    ((record, _),) = historical(w, [october(w, contract, quantity=7)])
    assert ("USAGE", OCT, "FINALIZED", Decimal("14.00")) in drafts(w)
    assert record.invoice.total == Decimal("14.00")
    assert w.balances.net_balance(w.customer.id, None, include_drafts=True) == Decimal(40)  # unchanged


@pytest.mark.parametrize("instant, rule", [
    ("2026-11-15T00:00:00Z", "must be the start of one of the contract's billing periods"),
    ("2026-09-01T00:00:00Z", "must be within the contract (from its starting_at, before its ending_before)"),
], ids=["mid-period", "before the contract starts"])
def test_a_bad_invoice_generation_start_is_refused_naming_the_field_and_nothing_is_stored(w, instant, rule):  # noqa: F811
    with pytest.raises(InvalidInput) as refused:
        _contract(w, usage_statement_schedule=FROM_NOV | {"invoice_generation_starting_at": instant})
    assert (refused.value.field, refused.value.rule) == ("usage_statement_schedule.invoice_generation_starting_at", rule)
    assert _contract_count(w.dynamo) == 0
