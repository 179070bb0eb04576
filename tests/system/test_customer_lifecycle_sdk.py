"""Issue 18, customers, driven through Metronome's SDK in strict mode: setName, updateConfig and
archive, each checked by a read after the write; an archived customer's aliases are free for a new
customer, and the archived one lists under only_archived."""

from __future__ import annotations

from datetime import timedelta

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import unique, usage_event

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def strict(local_stack):
    with metronome.Metronome(
        bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


def test_a_customer_is_renamed_reconfigured_archived_and_its_aliases_reused(strict, api):
    tag = unique("lifecycle")
    acme = strict.v1.customers.create(name=f"{tag} Acme", ingest_aliases=[f"{tag}-a", f"{tag}-old"]).data

    renamed = strict.v1.customers.set_name(customer_id=acme.id, name=f"{tag} Acme Corp").data
    assert (renamed.id, renamed.name, renamed.ingest_aliases) == (acme.id, f"{tag} Acme Corp", [f"{tag}-a", f"{tag}-old"])

    strict.v1.customers.update_config(
        customer_id=acme.id, salesforce_account_id="0015g00000XYZ", extra_body={"ingest_aliases": [f"{tag}-a", f"{tag}-new"]}
    )
    read = strict.v1.customers.retrieve(customer_id=acme.id).data
    assert (read.name, read.ingest_aliases, read.customer_config.salesforce_account_id) == (
        f"{tag} Acme Corp", [f"{tag}-a", f"{tag}-new"], "0015g00000XYZ"
    )
    assert (read.archived_at, read.current_billable_status.value) == (None, "billable")

    other = strict.v1.customers.create(name=f"{tag} Other", ingest_aliases=[f"{tag}-old"]).data  # freed
    with pytest.raises(metronome.ConflictError):
        strict.v1.customers.update_config(customer_id=acme.id, extra_body={"ingest_aliases": [f"{tag}-old"]})
    assert strict.v1.customers.retrieve(customer_id=acme.id).data.ingest_aliases == [f"{tag}-a", f"{tag}-new"]

    assert strict.v1.customers.archive(id=acme.id).data.id == acme.id
    archived = strict.v1.customers.retrieve(customer_id=acme.id).data
    assert archived.archived_at is not None and archived.ingest_aliases == []
    assert archived.current_billable_status.value == "unbillable"
    assert archived.current_billable_status.effective_at == archived.archived_at

    # Its events from the archive instant on are accepted and not stored; an earlier one still is.
    before, after = f"{tag}-before", f"{tag}-after"
    sent = api.post("/v1/ingest", json=[
        usage_event(before, acme.id, "call", archived.archived_at - timedelta(minutes=5)),
        usage_event(after, acme.id, "call", archived.archived_at + timedelta(seconds=1)),
    ])
    assert (sent.status_code, sent.json()) == (200, {"accepted": 2, "duplicates": 0})
    found = strict.v1.usage.search(transaction_ids=[before, after])
    assert [event.transaction_id for event in found] == [before]

    newco = strict.v1.customers.create(name=f"{tag} Newco", ingest_aliases=[f"{tag}-a", f"{tag}-new"]).data
    by_alias = strict.v1.customers.list(ingest_alias=f"{tag}-a").data
    assert [c.id for c in by_alias] == [newco.id]
    # Metronome lists active customers unless only_archived: the filters narrow that list.
    listed = api.get("/v1/customers", params={"customer_ids": f"{acme.id},{other.id}"}).json()["data"]
    assert [(c["id"], "archived_at" in c) for c in listed] == [(other.id, False)]
    listed = strict.v1.customers.list(customer_ids=[acme.id, other.id], only_archived=True).data
    assert [c.id for c in listed] == [acme.id]
    assert [c.id for c in strict.v1.customers.list(salesforce_account_ids=["0015g00000XYZ"], only_archived=True)] == [acme.id]
    archived_ids = [c.id for c in strict.v1.customers.list(only_archived=True, limit=100)]
    assert acme.id in archived_ids and newco.id not in archived_ids
