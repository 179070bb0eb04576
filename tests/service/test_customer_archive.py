"""Issue 18, customers: archiving ends the customer's contracts (moto DynamoDB, the contracts tests'
fake catalog and usage, the real cycle close), and a customer update never loses a concurrent
custom field write.

The contract starts on Oct 1 2026 and bills monthly; October is finalized before the archive, which
happens on Nov 24 at 12:30, so the contract ends at the next hour, 13:00.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import Conflict
from tally.services.customer_archive import ARCHIVE_EDIT_KEY, CustomerArchiving
from tally.services.customers import CustomerService
from tests.service.test_contracts_service import _request
from tests.service.test_contract_edits import w  # noqa: F401 (fixture)
from tests.service.test_custom_fields import world  # noqa: F401 (fixture)
from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, _contract

UTC = timezone.utc
ARCHIVED_AT = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
EDGE = datetime(2026, 11, 24, 13, tzinfo=UTC)


def _invoices(w) -> list[tuple]:
    return [
        (d.invoice.starting_at, d.invoice.ending_before, d.invoice.status, d.invoice.total)
        for d in w.invoices.list(w.customer.id)[0]
        if d.invoice.type.value == "USAGE"
    ]


def test_archive_ends_each_live_contract_at_the_archive_edge_and_keeps_finalized_invoices(w, clock):
    w.usage.calls += [
        (datetime(2026, 10, 10, tzinfo=UTC), 5),  # October: 5 × 2
        (datetime(2026, 11, 10, tzinfo=UTC), 3),  # before the archive: 3 × 2
        (datetime(2026, 11, 24, 12, 10, tzinfo=UTC), 4),  # before the archive instant: 4 × 1 (tiered from Nov 15)
        (datetime(2026, 11, 24, 13, tzinfo=UTC), 7),  # from the edge on: not billed
    ]
    live = _contract(w, ending_before="2027-01-01T00:00:00Z")
    future = w.contracts.create(_request(w.customer.id, **BARE, starting_at="2027-01-01T00:00:00Z", name="Next year"))
    w.service.finalize(w.customer.id, live["id"], OCT, NOV + GRACE)
    october = [i for i in _invoices(w) if i[0] == OCT]
    assert october == [(OCT, NOV, "FINALIZED", Decimal("10.00"))]

    clock.now = ARCHIVED_AT
    archiving = CustomerArchiving(CustomerService(w.billing, clock), w.contracts, w.edits)
    archived = archiving.archive(w.customer.id)

    assert archived.archived_at == ARCHIVED_AT
    assert w.contracts.get(w.customer.id, live["id"])["ending_before"] == "2026-11-24T13:00:00Z"
    assert w.contracts.get(w.customer.id, future["id"]).get("archived_at")  # never started: archived
    (edit,) = w.edits.history(w.customer.id, live["id"])
    assert (edit["update_contract_end_date"], edit["uniqueness_key"]) == ("2026-11-24T13:00:00Z", ARCHIVE_EDIT_KEY)
    clock.now = datetime(2027, 2, 1, tzinfo=UTC)  # later periods are not billed
    assert _invoices(w) == october + [(NOV, EDGE, "DRAFT", Decimal("10.00"))]

    # A retry (the route answered 5xx after the customer was archived, say) changes nothing more.
    assert archiving.archive(w.customer.id) == archived
    assert len(w.edits.history(w.customer.id, live["id"])) == 1
    assert _invoices(w) == october + [(NOV, EDGE, "DRAFT", Decimal("10.00"))]


def test_archive_finishes_the_contracts_a_crashed_attempt_left(w, clock):
    live = _contract(w, **BARE)
    clock.now = ARCHIVED_AT
    customers = CustomerService(w.billing, clock)
    customers.archive(w.customer.id)  # the customer archived, then the attempt died
    clock.now = ARCHIVED_AT + timedelta(minutes=5)
    CustomerArchiving(customers, w.contracts, w.edits).archive(w.customer.id)
    # The edge comes from the recorded archive instant, not the retry's clock.
    assert w.contracts.get(w.customer.id, live["id"])["ending_before"] == "2026-11-24T13:00:00Z"


def test_an_alias_or_name_change_keeps_a_custom_field_written_since_it_read_the_customer(world, clock):
    service, customers, _, _, billing = world
    acme = customers.create("Acme", ["acme"], None, {})
    service.add_key("customer", "region", False)
    before = billing.get(acme.id)
    service.set_values("customer", acme.id, {"region": "eu"})  # lands between the read and the write

    renamed = replace(before, name="Acme Corp", ingest_aliases=("acme", "acme-2"), updated_at=clock.now)
    billing.replace_aliases(before, renamed)

    stored = billing.get(acme.id)
    assert (stored.name, stored.ingest_aliases, stored.custom_fields) == ("Acme Corp", ("acme", "acme-2"), {"region": "eu"})
    # A write of the same attributes from a stale read is refused, not applied over the newer one.
    with pytest.raises(Conflict):
        billing.replace_aliases(before, replace(before, name="Stale"))
    assert billing.get(acme.id).name == "Acme Corp"
