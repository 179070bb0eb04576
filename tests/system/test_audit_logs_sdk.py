"""The audit log and the service registry through metronome-sdk in strict mode on the local stack:
archiving a customer leaves an entry naming the key, the customer and the action, found by the
customer's own filter and by time; GET /v1/services names the local stack's own address."""

from __future__ import annotations

from urllib.parse import urlsplit

import metronome
import pytest

from tests.system.conftest import API_KEY
from tests.system.usage_events import unique

pytestmark = pytest.mark.system


@pytest.fixture()
def strict(local_stack):
    with metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                             _strict_response_validation=True) as client:
        yield client


def test_archiving_a_customer_is_in_the_audit_log(strict, local_stack):
    sdk = strict
    customer = sdk.v1.customers.create(name=unique("audited")).data.id
    sdk.v1.customers.archive(id=customer)

    mine = list(sdk.v1.audit_logs.list(resource_type="customer", resource_id=customer, sort="date_desc"))
    assert [(e.action, e.description, e.resource_type, e.resource_id) for e in mine] == [
        ("archive", "POST /v1/customers/archive", "customer", customer),
        ("create", "POST /v1/customers", "customer", customer),
    ]
    archived = mine[0]
    assert archived.actor is not None and archived.actor.id and archived.status == "success"
    assert local_stack.api_key not in archived.model_dump_json()  # the key's id, never the key

    # The same entry by time: the newest page of the whole log starts at it (nothing else ran here).
    since = sdk.v1.audit_logs.list(starting_on=archived.timestamp, sort="date_asc")
    assert [e.id for e in since.data] == [archived.id]


def test_the_services_name_the_local_stacks_own_address(strict, local_stack):
    sdk = strict
    (api,) = [s for s in sdk.v1.services.list().services if s.usage == "accepts_connections_at"]
    assert api.ips == [urlsplit(local_stack.base_url).hostname]
