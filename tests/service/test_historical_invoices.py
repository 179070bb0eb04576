"""`POST /v1/contracts/createHistoricalInvoices` as a use case: a past usage period priced once from
the given quantities and stored FINALIZED, never re-priced, idempotent. moto DynamoDB and the fakes
of the contracts tests; the contract starts Oct 1 2026 and bills monthly, "now" is Nov 24; API calls
(p-calls, metric m-calls) cost 2 until Nov 15."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.api.historical_invoice_models import CreateHistoricalInvoices
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.services.historical_invoices import HistoricalInvoiceService
from tests.service.test_contract_edits import drafts, w  # noqa: F401 - w is the fixture
from tests.service.test_cycle_close import GRACE, NOV, OCT, _contract, _stored_records

UTC = timezone.utc
USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"  # USD (cents)


def october(w, contract: dict, **line) -> dict:  # noqa: F811
    return {"customer_id": w.customer.id, "contract_id": contract["id"], "credit_type_id": USD,
            "inclusive_start_date": "2026-10-01T00:00:00Z", "exclusive_end_date": "2026-11-01T00:00:00Z",
            "issue_date": "2026-11-01T00:00:00Z",
            "usage_line_items": [{"product_id": "p-calls", "inclusive_start_date": "2026-10-01T00:00:00Z",
                                  "exclusive_end_date": "2026-11-01T00:00:00Z", **line}]}


def historical(w, invoices: list[dict], preview: bool = False):  # noqa: F811
    body = CreateHistoricalInvoices.model_validate(exact_json.loads(exact_json.dumps({"invoices": invoices, "preview": preview})))
    return HistoricalInvoiceService(w.contracts, w.store, w.clock).create(body.inputs(), body.preview)


def test_a_historical_invoice_is_stored_finalized_with_its_quantities_and_never_repriced(w):  # noqa: F811
    contract = _contract(w)
    w.usage.calls += [(datetime(2026, 10, 5, tzinfo=UTC), 10)]  # what Tally metered: 10 calls (20)
    subtotals = [{"inclusive_start_date": "2026-10-01T00:00:00Z", "exclusive_end_date": "2026-10-15T00:00:00Z", "quantity": 10},
                 {"inclusive_start_date": "2026-10-15T00:00:00Z", "exclusive_end_date": "2026-11-01T00:00:00Z", "quantity": 15}]

    assert historical(w, [october(w, contract, subtotals_with_quantity=subtotals)], preview=True)[0][0].invoice.total == Decimal("50.00")
    assert _stored_records(w) == []  # a preview writes nothing

    ((record, _),) = historical(w, [october(w, contract, subtotals_with_quantity=subtotals)])
    # The old system's 10 + 15 = 25 calls at 2 = 50, one line for the period as rating makes it.
    assert (record.invoice.status, record.invoice.total) == ("FINALIZED", Decimal("50.00"))
    assert [(l.product_id, l.quantity, l.total) for l in record.invoice.line_items] == [("p-calls", Decimal(25), Decimal("50.00"))]
    # October reads as stored (50), not as Tally's counters would price it (20); cycle close finds it closed.
    assert ("USAGE", OCT, "FINALIZED", Decimal("50.00")) in drafts(w)
    closed = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    assert record.id in closed["invoice_ids"] and record.id not in closed["finalized"]

    # The same request again: the same invoice, nothing written.
    count = len(_stored_records(w))
    ((again, _),) = historical(w, [october(w, contract, subtotals_with_quantity=subtotals)])
    assert again.id == record.id and len(_stored_records(w)) == count
    # Different quantities for a period already finalized: refused.
    with pytest.raises(InvalidInput) as refused:
        historical(w, [october(w, contract, quantity=7)])
    assert refused.value.field == "invoices[0].inclusive_start_date"


@pytest.mark.parametrize("change, field", [
    ({"inclusive_start_date": "2026-11-01T00:00:00Z", "exclusive_end_date": "2026-12-01T00:00:00Z",
      "issue_date": "2026-12-01T00:00:00Z"}, "invoices[0].exclusive_end_date"),  # November has not ended
    ({"inclusive_start_date": "2026-10-02T00:00:00Z"}, "invoices[0].inclusive_start_date"),  # not a billing period
    ({"credit_type_id": "EUR"}, "invoices[0].credit_type_id"),
    ({"contract_id": "nope"}, "invoices[0].contract_id"),
    ({"usage_line_items": [{"product_id": "p-setup", "inclusive_start_date": "2026-10-01T00:00:00Z",
                            "exclusive_end_date": "2026-11-01T00:00:00Z", "quantity": 1}]}, "invoices[0].usage_line_items[0].product_id"),
], ids=["a period not ended", "not one of the contract's periods", "another credit type", "an unknown contract",
        "a product that meters nothing"])
def test_a_bad_historical_invoice_is_refused_naming_the_field_and_writes_nothing(w, change, field):  # noqa: F811
    contract = _contract(w)
    with pytest.raises(InvalidInput) as refused:
        historical(w, [october(w, contract, quantity=3) | change])
    assert refused.value.field == field
    assert _stored_records(w) == []
