"""Issue 14, finding 3: an ingest alias equal to another customer's id once counted one event for
both customers. Ids and aliases now share one namespace, claimed by conditional writes."""

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.memory import MemoryCustomerStore
from tally.billing.errors import Conflict
from tally.services.customers import CustomerService


@pytest.fixture(params=["dynamo", "memory"])
def customers(request, clock):
    if request.param == "memory":
        return CustomerService(MemoryCustomerStore(), clock)
    dynamo = request.getfixturevalue("dynamo")
    return CustomerService(DynamoBillingStore(dynamo["billing"], dynamo["client"]), clock)


def test_a_new_customer_cannot_take_another_customers_id_as_an_alias(customers):
    acme = customers.create("Acme", ["acme"], None, {})
    with pytest.raises(Conflict, match=acme.id):
        customers.create("Mallory", [acme.id], None, {})
    assert customers.by_alias(acme.id).id == acme.id


def test_an_alias_change_cannot_take_another_customers_id(customers):
    acme = customers.create("Acme", ["acme"], None, {})
    mallory = customers.create("Mallory", ["mallory"], None, {})
    with pytest.raises(Conflict, match=acme.id):
        customers.set_ingest_aliases(mallory.id, ["mallory", acme.id])
    assert customers.by_alias(acme.id).id == acme.id
    assert customers.by_alias("mallory").id == mallory.id
