"""Issue 18 on moto's DynamoDB: a billable metric's rename (and the refusal of any other change),
a rate card's product order and the invoice lines it orders, and custom field values on the parts
of a contract."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.catalog import DynamoCatalogStore
from tally.adapters.memory import MemoryMetricStore
from tally.api.models import MetricUpdate
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.pricing import Contract, Period, ProductType, ProductVersion, Rate, RateType, build_draft_invoices
from tally.services.catalog import CatalogService, RateDraft
from tally.services.metrics import MetricService
from tests.service.conftest import NOW
from tests.unit.pricing.builders import FakeUsage
from tests.service.test_contract_edits import w  # noqa: F401 - a fixture

NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)
DEC = datetime(2026, 12, 1, tzinfo=timezone.utc)


def a_metric(metric_id: str = "m-1", **changes) -> BillableMetric:
    fields = dict(
        id=metric_id, name="API calls", aggregation_type=Aggregation.COUNT, aggregation_key=None,
        event_type_filter=None, property_filters=(), group_keys=(("region",),), custom_fields={"team": "core"},
        created_at=NOW, activated_at=NOW,
    )
    return BillableMetric(**(fields | changes))


@pytest.fixture(params=["moto", "memory"])
def metric_store(request, dynamo):
    if request.param == "memory":
        return MemoryMetricStore()
    return DynamoMetricStore(DynamoBillingStore(dynamo["billing"], dynamo["client"]))


def test_a_metric_is_renamed_and_nothing_else_of_it_changes(metric_store, clock):
    service = MetricService(metric_store, clock)
    metric_store.put(a_metric())
    renamed = service.rename("m-1", "Calls (all regions)")
    assert metric_store.get("m-1") == renamed == replace(a_metric(), name="Calls (all regions)")
    with pytest.raises(InvalidInput) as bad:
        service.rename("m-1", "  ")
    assert bad.value.field == "name"
    # a change between the read and the write (custom field values set meanwhile) is a 409
    stale = metric_store.get("m-1")
    metric_store.replace(stale, replace(stale, custom_fields={"team": "edge"}))
    with pytest.raises(Conflict):
        metric_store.replace(stale, replace(stale, name="lost"))
    assert metric_store.get("m-1").name == "Calls (all regions)"
    assert metric_store.get("m-1").custom_fields == {"team": "edge"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("aggregation_type", "SUM"),
        ("aggregation_key", "tokens"),
        ("event_type_filter", {"in_values": ["x"]}),
        ("property_filters", [{"name": "region", "exists": True}]),
        ("group_keys", [["tier"]]),
        ("sql", "select 1"),
        ("custom_fields", {"team": "x"}),
    ],
)
def test_a_metric_update_naming_its_definition_is_refused_naming_the_field(field, value):
    with pytest.raises(Exception) as bad:
        MetricUpdate.model_validate({"name": "n", field: value})
    assert field in str(bad.value)
    assert MetricUpdate.model_validate({"name": "n"}).name == "n"


@pytest.fixture()
def catalog(dynamo, clock):
    billing = DynamoBillingStore(dynamo["billing"], dynamo["client"])
    metrics = DynamoMetricStore(billing)
    metrics.put(a_metric("calls", custom_fields={}))
    return CatalogService(DynamoCatalogStore(dynamo["billing"], dynamo["client"]), metrics, clock)


def _card_with_three_products(catalog):
    ids = {}
    for name in ("Alpha", "Beta", "Gamma"):
        ids[name] = catalog.create_product(
            ProductType.USAGE, ProductVersion(NOV, name, billable_metric_id="calls"), {}
        ).product.id
    card = catalog.create_rate_card("Standard")
    catalog.add_rates(card.id, [RateDraft(Rate(p, NOV, RateType.FLAT, price=1)) for p in ids.values()])
    return card.id, ids


def _line_products(catalog, card_id, ids):
    names = {v: k for k, v in ids.items()}
    contract = Contract("c-1", "cust-1", NOV, catalog.rate_card(card_id))
    usage = FakeUsage().add(NOV.replace(day=2), 3)
    invoice = build_draft_invoices(contract, catalog.products(), Period(NOV, DEC), usage)[0]
    return [names[line.product_id] for line in invoice.line_items]


def test_the_rate_card_product_order_orders_invoice_lines_and_moves_products(catalog):
    card_id, ids = _card_with_three_products(catalog)
    assert _line_products(catalog, card_id, ids) == ["Alpha", "Beta", "Gamma"]  # by name, without an order

    catalog.set_product_order(card_id, [ids["Gamma"], ids["Alpha"]])
    assert catalog.rate_card_record(card_id)[0].product_order == (ids["Gamma"], ids["Alpha"])
    assert _line_products(catalog, card_id, ids) == ["Gamma", "Alpha", "Beta"]  # Beta, not ordered, after

    catalog.move_products(card_id, [(ids["Beta"], 0), (ids["Alpha"], 2)])  # [B, G, A] then A stays last
    assert _line_products(catalog, card_id, ids) == ["Beta", "Gamma", "Alpha"]

    refusals = [
        (lambda: catalog.set_product_order(card_id, [ids["Beta"], ids["Beta"]]), "product_order[1]"),
        (lambda: catalog.set_product_order(card_id, ["nope"]), "product_order[0]"),
        (lambda: catalog.move_products(card_id, [(ids["Beta"], 3)]), "product_moves[0].position"),
        (lambda: catalog.move_products(card_id, [(ids["Beta"], 1), ("nope", 0)]), "product_moves[1].product_id"),
    ]
    for call, field in refusals:
        with pytest.raises(InvalidInput) as bad:
            call()
        assert bad.value.field == field
    assert _line_products(catalog, card_id, ids) == ["Beta", "Gamma", "Alpha"]  # nothing half-written


def test_a_product_order_written_over_a_concurrent_card_edit_is_a_conflict(catalog):
    card_id, ids = _card_with_three_products(catalog)
    read = catalog.rate_card_record(card_id)[0]
    catalog.update_rate_card(card_id, name="Renamed")
    with pytest.raises(Conflict):
        catalog._store.put_rate_card(replace(read, product_order=(ids["Beta"],), revision=read.revision + 1), read.revision)
    assert catalog.rate_card_record(card_id)[0].product_order == ()


@pytest.fixture()
def fields(dynamo, clock):
    from tally.adapters.dynamo.custom_fields import DynamoCustomFieldStore
    from tally.adapters.dynamo.documents import DynamoContractStore, DynamoDocumentStore
    from tally.services.custom_fields import CustomFieldService

    table, client = dynamo["billing"], dynamo["client"]
    contracts = DynamoContractStore(table, client)
    grants = DynamoDocumentStore(table, "grant", "created_at", client)
    service = CustomFieldService(
        DynamoCustomFieldStore(table, client), DynamoBillingStore(table, client), DynamoCatalogStore(table, client),
        contracts, clock, grants,
    )
    return service, contracts


PARTS = {  # entity type: (document list, part id)
    "subscription": ("subscriptions", "sub-1"),
    "scheduled_charge": ("scheduled_charges", "sc-1"),
    "discount": ("discounts", "disc-1"),
    "professional_service": ("professional_services", "ps-1"),
    "commit": ("commits", "commit-1"),
    "contract_credit": ("credits", "credit-1"),
}


def test_values_on_the_parts_of_a_contract_are_written_in_its_document(fields):
    service, contracts = fields
    document = {"id": "c-1", "customer_id": "cust-1", "starting_at": "2026-11-01T00:00:00Z", "custom_fields": {}}
    for where, part_id in PARTS.values():
        document[where] = [{"id": part_id, "custom_fields": {"given": "at create"}}]
    contracts.create(document)
    for entity, (where, part_id) in PARTS.items():
        service.add_key(entity, "po", entity == "subscription")
        assert service.set_values(entity, part_id, {"po": f"PO-{entity}"}) == {"given": "at create", "po": f"PO-{entity}"}
    stored = contracts.get("c-1")
    assert stored["_version"] == 1 + len(PARTS)
    for entity, (where, part_id) in PARTS.items():
        assert stored[where] == [{"id": part_id, "custom_fields": {"given": "at create", "po": f"PO-{entity}"}}]
    assert service.delete_values("discount", "disc-1", ["given"]) == {"po": "PO-discount"}
    assert service.values("subscription", "sub-1") == {"given": "at create", "po": "PO-subscription"}

    # a part added by a later write of the contract is found too
    stored = contracts.get("c-1")
    contracts.replace({**stored, "subscriptions": [*stored["subscriptions"], {"id": "sub-2"}]})
    assert service.set_values("subscription", "sub-2", {"po": "PO-2"}) == {"po": "PO-2"}
    with pytest.raises(Conflict, match="custom_fields.po"):  # the key enforces uniqueness among subscriptions
        service.set_values("subscription", "sub-2", {"po": "PO-subscription"})

    with pytest.raises(NotFound, match="entity_id: scheduled_charge sub-1 not found"):  # a subscription's id
        service.set_values("scheduled_charge", "sub-1", {"po": "x"})
    for legacy in ("plan", "customer_plan", "credit_grant"):
        with pytest.raises(InvalidInput, match="legacy plan-era entity") as bad:
            service.set_values(legacy, "p-1", {"po": "x"})
        assert bad.value.field == "entity"


def test_a_contract_written_between_the_read_and_the_write_of_a_part_is_a_conflict(fields, monkeypatch):
    service, contracts = fields
    contracts.create({"id": "c-1", "customer_id": "cust-1", "starting_at": "2026-11-01T00:00:00Z",
                      "scheduled_charges": [{"id": "sc-1"}]})
    service.add_key("scheduled_charge", "po", False)
    real_get = contracts.get

    def get_then_someone_edits(contract_id):
        found = real_get(contract_id)
        contracts.replace({**real_get(contract_id), "name": "edited meanwhile"})
        return found

    monkeypatch.setattr(contracts, "get", get_then_someone_edits)
    with pytest.raises(Conflict):
        service.set_values("scheduled_charge", "sc-1", {"po": "PO-1"})
    monkeypatch.undo()
    assert contracts.get("c-1")["scheduled_charges"] == [{"id": "sc-1"}]


def _balance(grant_id, kind, remaining):
    from tally.billing.balances.burn_down import SegmentBalance

    return SegmentBalance(grant_id, f"{grant_id}-s", kind, USD, "c-1", NOV, DEC, Decimal(500), Decimal(remaining), Decimal(0), NOV)


USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"


@pytest.mark.parametrize(
    "filters, watched",
    [
        ((), 10 + 20 + 40),
        ((("Commit", "team", "ai"),), 10),  # the credit also says ai, but a Commit filter takes commits only
        ((("ContractCredit", "team", "ai"),), 20),
        ((("ContractCreditOrCommit", "team", "ai"),), 10 + 20),
        ((("Contract", "region", "eu"),), 10 + 20),  # the customer-level commit has no contract
        ((("ContractCreditOrCommit", "team", "ai"), ("Contract", "region", "us")), None),  # nothing left to watch
    ],
    ids=["no filter", "commits of a team", "credits of a team", "either", "of a contract", "all must hold"],
)
def test_a_balance_alert_watches_the_balances_its_custom_field_filters_match(filters, watched):
    from types import SimpleNamespace

    from tally.billing.alerts import Alert, AlertType, CustomFieldFilter
    from tally.billing.balances import GrantKind
    from tally.billing.balances.burn_down import BurnDown
    from tally.billing.customers import Customer
    from tally.services.alerts import _CustomerReadings

    burn = BurnDown(NOV, {}, (), (_balance("commit", GrantKind.PREPAID, 10), _balance("credit", GrantKind.CREDIT, 20),
                                  _balance("own", GrantKind.PREPAID, 40)), ())
    fields = {"commit": ({"team": "ai"}, {"region": "eu"}), "credit": ({"team": "ai"}, {"region": "eu"}), "own": ({}, {})}
    balances = SimpleNamespace(balances_burn_down=lambda customer_id: burn, grant_custom_fields=lambda customer_id: fields)
    alert = Alert("a-1", "low", AlertType.LOW_REMAINING_CONTRACT_CREDIT_AND_COMMIT_BALANCE_REACHED, Decimal(5), USD, NOV,
                  custom_field_filters=tuple(CustomFieldFilter(*f) for f in filters))
    readings = _CustomerReadings(SimpleNamespace(_balances=balances), Customer("cust-1", "Acme", None, ()), NOV)
    assert readings.reading(alert).value == (None if watched is None else Decimal(watched))


def test_custom_field_filters_are_for_balance_alerts_and_values_on_an_alert_are_conditional(dynamo, clock):
    from tally.adapters.dynamo.alerts import DynamoAlertStore
    from tally.adapters.dynamo.custom_fields import DynamoCustomFieldStore
    from tally.adapters.dynamo.documents import DynamoContractStore
    from tally.billing.alerts import CustomFieldFilter, new_alert
    from tally.services.custom_fields import CustomFieldService

    common = dict(id="a-1", name="low", threshold=5, created_at=NOV, credit_type_id=USD, credit_type_known=True)
    with pytest.raises(InvalidInput) as bad:
        new_alert(alert_type="invoice_total_reached", custom_field_filters=(CustomFieldFilter("Contract", "k", "v"),), **common)
    assert bad.value.field == "custom_field_filters"
    alert = new_alert(alert_type="low_credit_balance_reached", customer_id="cust-1",
                      custom_field_filters=(CustomFieldFilter("ContractCredit", "team", "ai"),), **common)

    table, client = dynamo["billing"], dynamo["client"]
    alerts = DynamoAlertStore(table, client)
    alerts.create(alert)
    assert alerts.get("a-1") == alert  # the filters are kept
    service = CustomFieldService(DynamoCustomFieldStore(table, client), DynamoBillingStore(table, client),
                                 DynamoCatalogStore(table, client), DynamoContractStore(table, client), clock, alerts=alerts)
    service.add_key("alert", "owner", False)
    assert service.set_values("alert", "a-1", {"owner": "finance"}) == {"owner": "finance"}
    assert alerts.get("a-1").custom_fields == {"owner": "finance"}
    assert [a.custom_fields for a in alerts.in_scope("cust-1")] == [{"owner": "finance"}]  # the scope copy too
    with pytest.raises(Conflict):  # written over a read that is no longer the alert
        alerts.replace_custom_fields(alert, {"owner": "lost"})
    assert alerts.get("a-1").custom_fields == {"owner": "finance"}


def test_contract_product_is_a_contract_pricing_product_and_charge_a_legacy_plan_charge(fields, catalog):
    service, _ = fields
    product = catalog.create_product(ProductType.FIXED, ProductVersion(NOV, "Setup fee"), {}).product.id
    service.add_key("contract_product", "sku", False)
    assert service.set_values("contract_product", product, {"sku": "S-1"}) == {"sku": "S-1"}
    assert catalog.product_record(product).custom_fields == {"sku": "S-1"}
    with pytest.raises(InvalidInput, match="legacy plan-era entity") as bad:
        service.set_values("charge", "ch-1", {"sku": "x"})
    assert bad.value.field == "entity"


def test_invoice_values_given_to_a_historical_invoice_are_kept_and_set_on_a_finalized_one(w, dynamo, clock):  # noqa: F811
    from tally.adapters.dynamo.custom_fields import DynamoCustomFieldStore
    from tally.adapters.dynamo.documents import DynamoContractStore
    from tally.services.custom_fields import CustomFieldService
    from tests.service.test_cycle_close import _contract
    from tests.service.test_historical_invoices import historical, october

    contract = _contract(w)
    ((record, _),) = historical(w, [october(w, contract, quantity=3) | {"custom_fields": {"erp": "INV-7"}}])
    assert w.store.get(record.id).custom_fields == {"erp": "INV-7"}  # given on create, kept

    table, client = dynamo["billing"], dynamo["client"]
    service = CustomFieldService(DynamoCustomFieldStore(table, client), DynamoBillingStore(table, client),
                                 DynamoCatalogStore(table, client), DynamoContractStore(table, client), clock,
                                 invoices=w.store)
    service.add_key("invoice", "po", False)
    assert service.set_values("invoice", record.id, {"po": "PO-1"}) == {"erp": "INV-7", "po": "PO-1"}
    served = w.invoices.get(w.customer.id, record.id)
    assert served.custom_fields == {"erp": "INV-7", "po": "PO-1"}
    from tally.api.invoice_models import invoice_json
    assert invoice_json(served, {})["custom_fields"] == {"erp": "INV-7", "po": "PO-1"}
    with pytest.raises(Conflict):  # over values that are no longer the ones read
        w.store.replace_custom_fields(record, {"po": "lost"})
    assert service.delete_values("invoice", record.id, ["erp"]) == {"po": "PO-1"}
    with pytest.raises(NotFound, match="finalized"):
        service.set_values("invoice", "a-draft-id", {"po": "x"})


def test_a_finalized_invoice_keeps_the_rate_card_product_order_of_its_draft(dynamo, clock):
    from tests.service.test_contracts_service import FakeCatalog, FakeUsage
    from tests.service.test_cycle_close import BARE, GRACE, NOV, OCT, _request, _world

    clock.now = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    catalog = FakeCatalog()
    catalog.cards["rc-std"] = replace(catalog.cards["rc-std"], product_order=("p-seats", "p-calls"))
    usage = FakeUsage([(datetime(2026, 10, 5, tzinfo=timezone.utc), 10)])
    w = _world(dynamo, clock, catalog, lambda customer: usage)
    arrears_seats = [{"collection_schedule": "ARREARS", "initial_quantity": 1,
                      "proration": {"is_prorated": True, "invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE"},
                      "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"}}]
    contract = w.contracts.create(_request(w.customer.id, **(BARE | {"subscriptions": arrears_seats})))

    def october_products(status):
        (invoice,) = [d.invoice for d in w.invoices.list(w.customer.id)[0]
                      if d.invoice.starting_at == OCT and d.invoice.type.value == "USAGE" and d.invoice.status == status]
        return [line.product_id for line in invoice.line_items]

    assert october_products("DRAFT") == ["p-seats", "p-calls"]  # by default usage lines come before subscriptions
    w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)
    assert october_products("FINALIZED") == ["p-seats", "p-calls"]
