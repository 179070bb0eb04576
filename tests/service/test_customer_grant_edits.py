"""Customer-level commits and credits edited through commits/edit and credits/edit (moto DynamoDB,
the contracts tests' fake catalog and usage). The contract bills calls at 2 from Oct 1 2026; a
customer-level credit of 100 pays for them; "now" is Nov 24 2026 12:00."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.documents import DynamoDocumentStore
from tally.api.balance_models import CustomerCreditCreate, customer_grant_document
from tally.api.grant_edit_models import CreditEdit
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.services.customer_grant_edits import CustomerGrantEditService
from tally.services.grant_edits import edit_grant
from tests.service.test_contract_edits import w  # noqa: F401 - the fixture
from tests.service.test_cycle_close import GRACE, NOV, OCT, _contract

UTC = timezone.utc


def _grants(w) -> DynamoDocumentStore:
    return DynamoDocumentStore(w.dynamo["billing"], "grant", "created_at", w.dynamo["client"])


def _credit(w, amount: int = 100) -> dict:
    request = CustomerCreditCreate.model_validate({
        "customer_id": w.customer.id, "product_id": "p-setup", "priority": 1,
        "access_schedule": {"schedule_items": [{"amount": amount, "starting_at": "2026-10-01T00:00:00Z",
                                                "ending_before": "2027-01-01T00:00:00Z"}]},
    })
    return w.balances.create_customer_grant(customer_grant_document(request, w.clock.now))


def _edit(w, service, body: dict) -> dict:
    parsed = CreditEdit.model_validate(exact_json.loads(exact_json.dumps({"customer_id": w.customer.id, **body})))
    return edit_grant(w.edits, w.contracts, w.customer.id, "credits", parsed.to_update(), "key-1", service)


def _usage_totals(w) -> list[tuple]:
    return [(d.invoice.starting_at, d.invoice.status, d.invoice.total)
            for d in w.invoices.list(w.customer.id)[0] if d.invoice.type.value == "USAGE"]


def test_a_customer_level_credit_is_edited_and_what_finalized_invoices_drew_stays(w):
    contract = _contract(w)
    credit = _credit(w)
    segment_id = credit["access_schedule"][0]["id"]
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30), (datetime(2026, 11, 10, tzinfo=UTC), 100)]
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)  # October: 30 x 2 = 60, all paid by the credit
    service = CustomerGrantEditService(_grants(w), w.store, w.contracts)
    # November: 100 x 2 = 200, the 40 left pays part of it.
    assert _usage_totals(w) == [(OCT, "FINALIZED", Decimal("0.00")), (NOV, "DRAFT", Decimal("160.00"))]

    refused = [
        ({"update_schedule_items": [{"id": segment_id, "amount": 50}]}, "access_schedule.update_schedule_items[0].amount"),
        ({"update_schedule_items": [{"id": segment_id, "starting_at": "2026-10-15T00:00:00Z"}]},
         "access_schedule.update_schedule_items[0].starting_at"),
        ({"remove_schedule_items": [{"id": segment_id}]}, "access_schedule.remove_schedule_items[0].id"),
    ]
    for access, field in refused:
        with pytest.raises(InvalidInput) as error:
            _edit(w, service, {"credit_id": credit["id"], "access_schedule": access})
        assert error.value.field == field
    assert _grants(w).get(credit["id"])["access_schedule"][0]["amount"] == Decimal(100)  # nothing written
    with pytest.raises(InvalidInput) as error:
        _edit(w, service, {"credit_id": "2b1d0f3e-0000-4000-8000-000000000000", "name": "x"})
    assert error.value.field == "credit_id"

    edited = _edit(w, service, {"credit_id": credit["id"], "name": "Goodwill",
                                "access_schedule": {"update_schedule_items": [{"id": segment_id, "amount": 150}]}})

    assert (edited["name"], edited["access_schedule"][0]["amount"]) == ("Goodwill", Decimal(150))
    # November's draft: 200 - (150 - 60) = 110; October as finalized.
    assert _usage_totals(w) == [(OCT, "FINALIZED", Decimal("0.00")), (NOV, "DRAFT", Decimal("110.00"))]


class RacingGets:
    """The grant store, with each thread's first read held until every thread has read: all edits
    start from the same version."""

    def __init__(self, store, parties: int) -> None:
        self._store = store
        self._barrier = threading.Barrier(parties)
        self._local = threading.local()

    def get(self, document_id):
        document = self._store.get(document_id)
        if not getattr(self._local, "raced", False):
            self._local.raced = True
            self._barrier.wait(timeout=30)
        return document

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_concurrent_edits_of_one_customer_level_credit_keep_every_change(w):
    _contract(w)
    credit = _credit(w)
    parties = 4
    service = CustomerGrantEditService(RacingGets(_grants(w), parties), w.store, w.contracts, sleep=lambda _: None)
    outcomes = []

    def one(n: int) -> None:
        update = CreditEdit.model_validate({
            "customer_id": w.customer.id, "credit_id": credit["id"],
            "access_schedule": {"add_schedule_items": [{"amount": 10 + n, "starting_at": f"2027-0{1 + n}-01T00:00:00Z",
                                                        "ending_before": f"2027-0{2 + n}-01T00:00:00Z"}]},
        }).to_update()
        try:
            outcomes.append(service.edit(w.customer.id, "credits", update))
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    segments = _grants(w).get(credit["id"])["access_schedule"]
    # The first segment and the 4 added (10 + 11 + 12 + 13 = 46 more): none lost.
    assert sorted(s["amount"] for s in segments) == [Decimal(10), Decimal(11), Decimal(12), Decimal(13), Decimal(100)]


def test_an_invoice_finalized_between_an_edits_check_and_its_write_is_seen_by_the_retry(w, monkeypatch):
    """October's 30 calls x 2 = 60 are drawn from the credit by a finalization that lands after the
    edit counted the invoices: the write fails, and the retry refuses lowering the credit to 50."""
    contract = _contract(w)
    credit = _credit(w)
    segment_id = credit["access_schedule"][0]["id"]
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]
    service = CustomerGrantEditService(_grants(w), w.store, w.contracts, sleep=lambda _: None)
    real = service._finalized
    calls = []

    def counted_then_finalized(*args):
        result = real(*args)
        if not calls:
            w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
        calls.append(result)
        return result

    monkeypatch.setattr(service, "_finalized", counted_then_finalized)
    with pytest.raises(InvalidInput) as refused:
        _edit(w, service, {"credit_id": credit["id"], "access_schedule": {"update_schedule_items": [{"id": segment_id, "amount": 50}]}})
    assert refused.value.field == "access_schedule.update_schedule_items[0].amount"
    assert len(calls) == 2
    assert _grants(w).get(credit["id"])["access_schedule"][0]["amount"] == Decimal(100)


def test_an_edit_committed_between_a_close_pricing_and_its_write_is_priced_by_the_close(w, monkeypatch):
    """The other order: the close priced October (30 calls x 2 = 60, all paid by the 100 credit) when
    the credit is lowered to 50. The close's write, conditional on the customer's grant edits,
    fails, and the retry prices the edited credit: 60 - 50 = 10 to pay."""
    contract = _contract(w)
    credit = _credit(w)
    segment_id = credit["access_schedule"][0]["id"]
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 30)]
    service = CustomerGrantEditService(_grants(w), w.store, w.contracts, sleep=lambda _: None)
    real = w.invoices.close_period
    calls = []

    def priced_then_edited(*args, **kwargs):
        close = real(*args, **kwargs)
        if not calls:
            _edit(w, service, {"credit_id": credit["id"], "access_schedule": {"update_schedule_items": [{"id": segment_id, "amount": 50}]}})
        calls.append(close)
        return close

    monkeypatch.setattr(w.invoices, "close_period", priced_then_edited)
    result = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)

    assert len(calls) == 2
    assert [w.store.get(i).invoice.total for i in result["finalized"]] == [Decimal("10.00")]
    assert w.balances.net_balance(w.customer.id, None, include_drafts=True) == Decimal(0)
