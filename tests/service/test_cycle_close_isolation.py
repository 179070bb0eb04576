"""One customer's data never stops another's cycle close (DESIGN.md, hard part 8; issue 14).

Faults come through the store or a fake, as they would in production: a contract stored before
dates were bounded (starting in year 9999, which no longer parses), a catalog that raises for one
rate card, an invoice store that raises for one customer. The world is the cycle close tests' one:
moto DynamoDB, the fake catalog and usage, a fake clock and publisher.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tally.billing import exact_json
from tally.services import cycle_close_tasks
from tally.services.customers import CustomerService
from tally.services.cycle_close import DueCloses
from tally.services.ports import StoreUnavailable
from tests.service.test_close_periods_handlers import FINALIZE_INPUT, SCHEDULED, FakeCycleClose, due
from tests.service.test_contracts_service import FakeCatalog
from tests.service.test_cycle_close import BARE, GRACE, NOV, _contract, _world
from tests.service.test_contracts_service import FakeUsage, _request

UTC = timezone.utc
AS_OF = NOV + GRACE  # October's usage periods are due


class CatalogBrokenFor(FakeCatalog):
    """Raises a plain RuntimeError (no TallyError) for the rate cards named in `broken`."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()

    def rate_card(self, rate_card_id: str):
        if rate_card_id in self.broken:
            raise RuntimeError(f"rate card {rate_card_id} is corrupt")
        return super().rate_card(rate_card_id)


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    usage = FakeUsage([])
    catalog = CatalogBrokenFor()
    world = _world(dynamo, clock, catalog, lambda customer: usage)
    world.catalog = catalog
    world.globex = CustomerService(world.billing, clock).create("Globex", ["globex"], None, {})
    return world


def _legacy_far_future_contract(w, customer_id: str) -> str:
    """A contract as stored before dates were bounded: starting on 9999-12-31 (the issue's finding).
    The store refuses to write one now, so the item is edited in the table itself."""
    created = w.contracts.create(  # first stored for a window the customer's other contract does not bill
        _request(customer_id, **BARE, starting_at="2025-01-01T00:00:00Z", ending_before="2026-01-01T00:00:00Z")
    )
    key = {"pk": {"S": f"contract#{created['id']}"}, "sk": {"S": "#"}}
    client, table = w.dynamo["client"], w.dynamo["billing"]
    document = exact_json.loads(client.get_item(TableName=table, Key=key)["Item"]["document"]["S"])
    document["starting_at"] = "9999-12-31T00:00:00Z"
    client.update_item(
        TableName=table, Key=key, UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "document"}, ExpressionAttributeValues={":d": {"S": exact_json.dumps(document)}},
    )
    return created["id"]


def _listed(found: DueCloses) -> list[tuple[str, str]]:
    return [(p["customer_id"], p["contract_id"]) for p in found.periods if p["kind"] == "USAGE"]


def test_a_contract_stored_far_in_the_future_is_skipped_by_name_and_the_other_customers_are_listed(w):
    acme = _contract(w)["id"]
    w.contracts.create(_request(w.globex.id, **BARE))
    legacy = _legacy_far_future_contract(w, w.globex.id)

    found = w.service.find_due(AS_OF, GRACE)

    assert _listed(found) == [(w.customer.id, acme)]
    # Only the culprit is named. Globex's other contract cannot be priced without it (pricing
    # reads all of a customer's contracts), so it waits, and fixing the culprit releases it.
    (skipped,) = found.skipped
    assert (skipped["customer_id"], skipped["contract_id"], skipped["error"]) == (w.globex.id, legacy, "ValueError")
    assert "2200" in skipped["cause"]  # the reason: starting_at is past the last instant Tally handles
    assert "Traceback" not in skipped["cause"] and ".py" not in skipped["cause"]


def test_a_skipped_customers_periods_cannot_be_finalized_either_and_everyone_elses_can(w):
    acme = _contract(w)["id"]
    globex_ok = w.contracts.create(_request(w.globex.id, **BARE))["id"]
    _legacy_far_future_contract(w, w.globex.id)

    # Were the period listed, the workflow's Map would dead-letter it (Catch States.ALL) with this reason.
    with pytest.raises(ValueError, match="2200"):
        w.service.finalize(w.globex.id, globex_ok, datetime(2026, 10, 1, tzinfo=UTC), AS_OF)
    assert w.service.finalize(w.customer.id, acme, datetime(2026, 10, 1, tzinfo=UTC), AS_OF)["finalized"]


def test_a_contract_failing_on_its_own_is_named_and_the_customers_other_contracts_are_listed(w):
    """Any exception, not only a domain error: here a rate card the catalog raises on."""
    acme = _contract(w)["id"]
    ok = w.contracts.create(_request(w.globex.id, **BARE))["id"]
    w.catalog.cards["rc-later"] = w.catalog.cards["rc-std"]
    broken = w.contracts.create(
        _request(w.globex.id, **BARE, rate_card_id="rc-later", starting_at="2025-01-01T00:00:00Z",
                 ending_before="2026-01-01T00:00:00Z")
    )["id"]
    w.catalog.broken.add("rc-later")

    found = w.service.find_due(AS_OF, GRACE)

    assert sorted(_listed(found)) == sorted([(w.customer.id, acme), (w.globex.id, ok)])
    assert [(s["contract_id"], s["error"]) for s in found.skipped] == [(broken, "RuntimeError")]


class InvoicesBrokenFor:
    """The invoice store, raising for the customers in `broken` (or StoreUnavailable for all)."""

    def __init__(self, store) -> None:
        self._store = store
        self.broken: set[str] = set()
        self.unavailable = False

    def __getattr__(self, name):
        return getattr(self._store, name)

    def list_for_customer(self, customer_id: str):
        if self.unavailable:
            raise StoreUnavailable("billing table throttled")
        if customer_id in self.broken:
            raise KeyError("finalized_at")
        return self._store.list_for_customer(customer_id)


def test_a_customer_whose_invoices_cannot_be_read_is_skipped_whole_and_the_others_are_listed(w):
    acme = _contract(w)["id"]
    w.contracts.create(_request(w.globex.id, **BARE))
    records = InvoicesBrokenFor(w.store)
    records.broken.add(w.globex.id)
    w.service._store = records

    found = w.service.find_due(AS_OF, GRACE)

    assert _listed(found) == [(w.customer.id, acme)]
    assert found.skipped == [
        {"customer_id": w.globex.id, "contract_id": None, "error": "KeyError", "cause": "'finalized_at'"}
    ]


def test_the_store_being_unavailable_is_not_one_customers_fault_and_fails_the_call_for_a_retry(w):
    _contract(w)
    records = InvoicesBrokenFor(w.store)
    records.unavailable = True
    w.service._store = records

    with pytest.raises(StoreUnavailable):
        w.service.find_due(AS_OF, GRACE)


# -- the task boundary -------------------------------------------------------------------------------
SKIPPED = {"customer_id": "globex", "contract_id": "contract-far", "error": "ValueError", "cause": "year 10000 is out of range"}


def test_the_first_page_carries_the_skipped_contracts_to_the_dlq_state_and_the_summary_counts_them():
    fake = FakeCycleClose([due(f"customer-{n}") for n in range(3)], skipped=[SKIPPED])

    first = cycle_close_tasks.find_due_periods(SCHEDULED, fake, GRACE, page_size=2)

    assert first["skipped"] == [SKIPPED]
    assert (first["summary"]["contracts_skipped"], first["summary"]["skipped"]) == (1, [SKIPPED])
    assert [p["customer_id"] for p in first["periods"]] == ["customer-0", "customer-1"]

    # The page that reads its customer names it: it goes to the DLQ and is counted once.
    second = cycle_close_tasks.find_due_periods({**SCHEDULED, "progress": first, "closed": []}, fake, GRACE, page_size=2)
    assert second["skipped"] == []
    assert second["summary"]["contracts_skipped"] == 1
    assert [p["customer_id"] for p in second["periods"]] == ["customer-2"]


# -- alerts after finalizing ---------------------------------------------------------------------------
class AlertsFailing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def evaluate_customer(self, customer_id: str) -> None:
        raise self.error


def test_a_broken_alert_evaluation_does_not_hold_back_the_finalized_invoices(caplog):
    fake = FakeCycleClose([])
    customer = FINALIZE_INPUT["period"]["customer_id"]

    result = cycle_close_tasks.finalize_period(FINALIZE_INPUT, fake, AlertsFailing(ValueError("bad threshold")).evaluate_customer)

    invoice = f"invoice-{FINALIZE_INPUT['period']['contract_id']}"
    assert result == {"invoice_ids": [invoice], "finalized": [invoice]}  # on to PublishInvoices
    assert any(customer in r.getMessage() and r.exc_info for r in caplog.records)


def test_an_unavailable_store_while_evaluating_alerts_fails_the_step_for_its_retry():
    fake = FakeCycleClose([])
    with pytest.raises(StoreUnavailable):
        cycle_close_tasks.finalize_period(FINALIZE_INPUT, fake, AlertsFailing(StoreUnavailable("throttled")).evaluate_customer)
