"""/v1/customFields/* through CustomFieldService on moto's DynamoDB: keys per entity type, values on
customers, products, rate cards and contracts, uniqueness, and refusals that change nothing."""

from __future__ import annotations

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.catalog import DynamoCatalogStore
from tally.adapters.dynamo.custom_fields import DynamoCustomFieldStore
from tally.adapters.dynamo.documents import DynamoContractStore
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric, EventTypeFilter
from tally.billing.pricing import ProductType, ProductVersion
from tally.services.catalog import CatalogService
from tally.services.custom_fields import CustomFieldService, KeyDefinition
from tally.services.customers import CustomerService
from tests.service.conftest import NOW


@pytest.fixture()
def world(dynamo, clock):
    table, client = dynamo["billing"], dynamo["client"]
    billing = DynamoBillingStore(table, client)
    catalog_store = DynamoCatalogStore(table, client)
    contracts = DynamoContractStore(table, client)
    service = CustomFieldService(DynamoCustomFieldStore(table, client), billing, catalog_store, contracts, clock)
    customers = CustomerService(billing, clock)
    catalog = CatalogService(catalog_store, DynamoMetricStore(billing), clock)
    return service, customers, catalog, contracts, billing


def test_keys_are_registered_per_entity_type_listed_and_removed(world):
    service = world[0]
    service.add_key("customer", "region", False)
    service.add_key("customer", "region", False)  # the same key again is the same key
    service.add_key("contract", "sf_id", True)
    service.add_key("product", "sku", True)
    with pytest.raises(Conflict):
        service.add_key("customer", "region", True)
    assert service.list_keys(None) == [
        KeyDefinition("contract", "sf_id", True),
        KeyDefinition("customer", "region", False),
        KeyDefinition("product", "sku", True),
    ]
    assert service.list_keys(["customer", "product"]) == [
        KeyDefinition("customer", "region", False),
        KeyDefinition("product", "sku", True),
    ]
    with pytest.raises(InvalidInput) as bad:
        service.add_key("customer", "k" * 101, False)
    assert bad.value.field == "key"
    with pytest.raises(InvalidInput) as bad:
        service.add_key("widget", "x", False)
    assert bad.value.field == "entity"
    service.remove_key("customer", "region")
    with pytest.raises(NotFound):
        service.remove_key("customer", "region")
    assert [d.key for d in service.list_keys(None)] == ["sf_id", "sku"]


def test_values_on_a_customer_merge_delete_and_refusals_change_nothing(world, clock):
    service, customers, _, _, billing = world
    customer = customers.create("Acme", [], None, {"legacy": "1"})
    service.add_key("customer", "region", False)
    service.add_key("customer", "tier", False)
    service.add_key("contract", "plan", False)

    assert service.set_values("customer", customer.id, {"region": "eu", "tier": "gold"}) == {
        "legacy": "1", "region": "eu", "tier": "gold"
    }
    assert service.set_values("customer", customer.id, {"tier": "silver"}) == {"legacy": "1", "region": "eu", "tier": "silver"}
    assert billing.get(customer.id).custom_fields == {"legacy": "1", "region": "eu", "tier": "silver"}

    refusals = [
        ({"plan": "x"}, "custom_fields.plan"),  # a key of contracts, not customers
        ({"tier": "v" * 201}, "custom_fields.tier"),
        ({"region": "us", "nope": "x"}, "custom_fields.nope"),
    ]
    for values, field in refusals:
        with pytest.raises(InvalidInput) as bad:
            service.set_values("customer", customer.id, values)
        assert bad.value.field == field
    with pytest.raises(NotFound, match="entity_id: customer missing not found"):
        service.set_values("customer", "missing", {"region": "us"})
    with pytest.raises(InvalidInput, match="legacy plan-era entity") as bad:
        service.set_values("customer_plan", "cp-1", {"region": "us"})
    assert bad.value.field == "entity"
    assert billing.get(customer.id).custom_fields == {"legacy": "1", "region": "eu", "tier": "silver"}

    assert service.delete_values("customer", customer.id, ["region", "never"]) == {"legacy": "1", "tier": "silver"}
    assert billing.get(customer.id).custom_fields == {"legacy": "1", "tier": "silver"}
    assert billing.get(customer.id).name == "Acme"


def test_a_unique_key_holds_a_value_for_one_entity_and_frees_it(world):
    service, customers, *_ = world
    one = customers.create("One", [], None, {})
    two = customers.create("Two", [], None, {})
    service.add_key("customer", "erp_id", True)
    service.set_values("customer", one.id, {"erp_id": "E-1"})
    service.set_values("customer", one.id, {"erp_id": "E-1"})  # its own value again
    with pytest.raises(Conflict, match="custom_fields.erp_id"):
        service.set_values("customer", two.id, {"erp_id": "E-1"})
    assert service.values("customer", two.id) == {}
    service.set_values("customer", one.id, {"erp_id": "E-2"})  # E-1 is free again
    service.set_values("customer", two.id, {"erp_id": "E-1"})
    service.delete_values("customer", one.id, ["erp_id"])  # E-2 is free again
    service.set_values("customer", two.id, {"erp_id": "E-2"})
    assert service.values("customer", one.id) == {}
    assert service.values("customer", two.id) == {"erp_id": "E-2"}


def test_values_on_products_rate_cards_and_contracts_bump_their_version(world):
    service, customers, catalog, contracts, _ = world
    product = catalog.create_product(ProductType.FIXED, ProductVersion(NOW, "Setup fee"), {"a": "1"})
    card = catalog.create_rate_card("Standard")
    customer = customers.create("Acme", [], None, {})
    contracts.create({"id": "c-1", "customer_id": customer.id, "starting_at": "2026-11-01T00:00:00Z", "custom_fields": {}})
    for entity in ("product", "rate_card", "contract"):
        service.add_key(entity, "sf_id", False)

    service.set_values("product", product.product.id, {"sf_id": "P-9"})
    record = catalog.product_record(product.product.id)
    assert (dict(record.custom_fields), record.revision, record.product.versions[0].name) == ({"a": "1", "sf_id": "P-9"}, 1, "Setup fee")

    service.set_values("rate_card", card.id, {"sf_id": "R-9"})
    stored, _ = catalog.rate_card_record(card.id)
    assert (dict(stored.custom_fields), stored.revision, stored.name) == ({"sf_id": "R-9"}, card.revision + 1, "Standard")

    service.set_values("contract", "c-1", {"sf_id": "C-9"})
    contract = contracts.get("c-1")
    assert (contract["custom_fields"], contract["_version"]) == ({"sf_id": "C-9"}, 2)
    service.delete_values("contract", "c-1", ["sf_id"])
    assert (contracts.get("c-1")["custom_fields"], contracts.get("c-1")["_version"]) == ({}, 3)
    with pytest.raises(NotFound, match="entity_id: product nope"):
        service.set_values("product", "nope", {"sf_id": "x"})


def test_values_on_a_billable_metric_leave_its_definition_as_it_was(world, clock):
    service, *_, billing = world
    metrics = DynamoMetricStore(billing)
    metrics.put(BillableMetric(id="m-1", name="API calls", aggregation_type=Aggregation.COUNT, aggregation_key=None,
                               event_type_filter=EventTypeFilter(("api",), None), property_filters=(), group_keys=(),
                               custom_fields={"team": "core"},
                               created_at=NOW))
    service.add_key("billable_metric", "owner", False)
    assert service.set_values("billable_metric", "m-1", {"owner": "ana"}) == {"team": "core", "owner": "ana"}
    metric = metrics.get("m-1")
    assert (metric.custom_fields, metric.name, metric.event_type_filter.in_values) == ({"team": "core", "owner": "ana"}, "API calls", ("api",))
    service.delete_values("billable_metric", "m-1", ["team"])
    assert metrics.get("m-1").custom_fields == {"owner": "ana"}
    with pytest.raises(NotFound, match="entity_id: billable_metric m-2 not found"):
        service.set_values("billable_metric", "m-2", {"owner": "x"})
    with pytest.raises(Conflict):  # the definition changed since the fields were read
        service._store.replace_metric_fields("m-1", {"team": "core"}, {})
    assert metrics.get("m-1").custom_fields == {"owner": "ana"}


def test_a_concurrent_write_of_the_entity_is_a_conflict_not_a_lost_update(world):
    service, customers, catalog, contracts, _ = world
    customer = customers.create("Acme", [], None, {})
    contracts.create({"id": "c-1", "customer_id": customer.id, "starting_at": "2026-11-01T00:00:00Z", "custom_fields": {}})
    service.add_key("contract", "sf_id", True)
    service.add_key("customer", "region", False)

    read = contracts.get("c-1")
    contracts.replace({**read, "name": "renamed"})  # another writer, between our read and write
    original = service._load

    def stale(entity, entity_id):
        found, fields = original(entity, entity_id)
        return ({**read, "custom_fields": {}} if entity == "contract" else found), fields

    service._load = stale
    with pytest.raises(Conflict):
        service.set_values("contract", "c-1", {"sf_id": "C-1"})
    service._load = original
    assert (contracts.get("c-1")["name"], contracts.get("c-1")["custom_fields"]) == ("renamed", {})
    # the refused write's uniqueness claim went with it: another contract may take the value
    contracts.create({"id": "c-2", "customer_id": customer.id, "starting_at": "2026-11-02T00:00:00Z", "custom_fields": {}})
    service.set_values("contract", "c-2", {"sf_id": "C-1"})

    store = service._store
    with pytest.raises(Conflict):  # the customer's fields changed since they were read
        store.replace_customer_fields(customer.id, {"region": "old"}, {"region": "new"}, "2026-11-24T12:00:00Z")
    assert customers.get(customer.id).custom_fields == {}


def test_values_on_customer_level_commits_and_credits(dynamo, clock):
    from tally.adapters.dynamo.documents import DynamoDocumentStore

    table, client = dynamo["billing"], dynamo["client"]
    billing = DynamoBillingStore(table, client)
    grants = DynamoDocumentStore(table, "grant", "created_at", client)
    service = CustomFieldService(DynamoCustomFieldStore(table, client), billing, DynamoCatalogStore(table, client),
                                 DynamoContractStore(table, client), clock, grants)
    for grant_id, kind in (("g-commit", "PREPAID"), ("g-credit", "CREDIT")):
        grants.create({"id": grant_id, "customer_id": "cust-1", "created_at": "2026-11-01T00:00:00Z", "type": kind})
    service.add_key("commit", "po", False)
    service.add_key("contract_credit", "po", False)

    assert service.set_values("commit", "g-commit", {"po": "PO-1"}) == {"po": "PO-1"}
    assert service.set_values("contract_credit", "g-credit", {"po": "PO-2"}) == {"po": "PO-2"}
    assert [(g["id"], g["custom_fields"], g["_version"]) for g in grants.list_for_customer("cust-1")] == [
        ("g-commit", {"po": "PO-1"}, 2), ("g-credit", {"po": "PO-2"}, 2)
    ]
    with pytest.raises(NotFound, match="entity_id: commit g-credit not found"):  # a credit is not a commit
        service.set_values("commit", "g-credit", {"po": "PO-3"})
    assert grants.get("g-credit")["custom_fields"] == {"po": "PO-2"}
