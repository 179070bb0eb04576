"""A contract names the billing provider configuration its invoices go to (issue 17): create's
billing_provider_configuration and v2 edit's add_billing_provider_configuration_update, moto and
localstripe behind the official stripe SDK (tests/service/test_invoice_delivery.py's setting).

The customer has two Stripe configurations, one per Stripe customer: `first` (its default, the
oldest) and `second`. The contract (tests/service/test_cycle_close.py's world: 2 cents a call,
1 cent for the first 100 a month from Nov 15) is edited on Nov 24 12:00. Calls: 1234 on Oct 10
(2468 cents), 100 on Nov 10 (200), 7 on Dec 10 (7).
"""

from __future__ import annotations

from datetime import datetime

import boto3
import pytest
import stripe
from metronome.types.shared.contract_v2 import BillingProviderConfigurationSchedule, CustomerBillingProviderConfiguration

from tally.adapters.dynamo.billing_providers import DynamoDeliveryStateStore, customer_config_documents, delivery_method_documents
from tally.adapters.secrets import SecretsManagerVault
from tally.adapters.stripe_gateway import StripeGateway
from tally.api.contract_edit_models import ContractEdit, edit_json
from tally.api.contract_models import ContractCreate, ContractView, contract_json
from tally.api.contract_v2_models import contract_v2_json
from tally.billing.errors import InvalidInput
from tally.services import contract_billing_providers
from tally.services.billing_providers import BillingProviderService
from tally.services.customers import CustomerService
from tally.services.invoice_delivery import DELIVERED, InvoiceDeliveryService
from tests.localstripe import localstripe  # noqa: F401 - the fixture
from tests.service.test_contract_edits import w  # noqa: F401 - the fixture (contract edits too)
from tests.service.test_contracts_service import _request
from tests.service.test_cycle_close import BARE, DEC, FakePublisher, GRACE, JAN, NOV, OCT, TOPIC, UTC

SECRET_KEY = "sk_test_tally_contracts_4242"
EDITED_AT = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture()
def b(w, localstripe):  # noqa: F811
    table, client = w.dynamo["billing"], w.dynamo["client"]
    vault = SecretsManagerVault(boto3.client("secretsmanager", region_name="us-east-1"))
    providers = BillingProviderService(delivery_method_documents(table, client), customer_config_documents(table, client),
                                       vault, w.billing, lambda: "tally/test/billing-providers", w.clock)
    sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0)
    delivery = InvoiceDeliveryService(w.store, providers, DynamoDeliveryStateStore(table, client), vault,
                                      StripeGateway(localstripe.url, max_network_retries=0), FakePublisher(),
                                      lambda: TOPIC, w.clock, contracts=w.contract_store.get)
    providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": SECRET_KEY})
    one, two = (sdk.customers.create(params={"name": name}).id for name in ("Acme EU", "Acme US"))
    first, second = providers.set_customer_configurations([
        {"customer_id": w.customer.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
         "configuration": {"stripe_customer_id": cus, "stripe_collection_method": "send_invoice"}} for cus in (one, two)
    ])
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 1234), (datetime(2026, 11, 10, tzinfo=UTC), 100),
                      (datetime(2026, 12, 10, tzinfo=UTC), 7)]
    return type("B", (), dict(w=w, providers=providers, sdk=sdk, delivery=delivery, first=first, second=second,
                              stripe_customers={first["id"]: one, second["id"]: two}))


def _create(b, **body) -> dict:
    request = contract_billing_providers.for_create(_request(b.w.customer.id, **(BARE | body)), b.providers)
    return b.w.contracts.create(request)


def _edit(b, contract: dict, **body) -> dict:
    changes = ContractEdit.model_validate({"customer_id": b.w.customer.id, "contract_id": contract["id"], **body}).changes()
    changes = contract_billing_providers.for_edit(changes, b.w.customer.id, b.providers)
    return b.w.edits.edit(b.w.customer.id, contract["id"], changes, author="key-1")


def _update(config_id: str, effective_at: str) -> dict:
    return {"add_billing_provider_configuration_update": {
        "billing_provider_configuration": {"billing_provider_configuration_id": config_id},
        "schedule": {"effective_at": effective_at}}}


def _close(b, contract: dict, start: datetime, end: datetime) -> str:
    (usage,) = b.w.service.finalize(b.w.customer.id, contract["id"], start, end + GRACE)["finalized"]
    return usage


def _totals(b) -> dict[str, list[int]]:
    """Stripe invoice totals per configuration (first, second), oldest first."""
    return {name: sorted(i.total for i in b.sdk.invoices.list(params={"customer": b.stripe_customers[c["id"]]}).data)
            for name, c in (("first", b.first), ("second", b.second))}


def test_a_contract_naming_the_second_configuration_has_its_closed_month_invoiced_to_that_stripe_customer(b):
    contract = _create(b, billing_provider_configuration={"billing_provider_configuration_id": b.second["id"]})

    october = _close(b, contract, OCT, NOV)
    outcome = b.delivery.deliver(october)

    assert outcome.outcome == DELIVERED
    assert _totals(b) == {"first": [], "second": [2468]}  # 1234 calls x 2 cents, not on the default
    assert b.delivery.deliver(october).outcome != DELIVERED and _totals(b) == {"first": [], "second": [2468]}
    stored = b.w.contracts.get(b.w.customer.id, contract["id"])
    engine, products = b.w.contracts.contract(stored), b.w.contracts.products()
    shown = b.providers.configuration_json(b.second)
    v1 = contract_json(stored, engine, products, ContractView(now=EDITED_AT))
    v2 = contract_v2_json(stored, engine, products, ContractView(now=EDITED_AT))
    assert v1["customer_billing_provider_configuration"] == v2["customer_billing_provider_configuration"] == shown
    assert v2["billing_provider_configuration_schedule"] == [
        {"billing_provider_configuration": shown, "effective_at": "2026-10-01T00:00:00Z"}]
    CustomerBillingProviderConfiguration.model_validate(shown, strict=False)
    BillingProviderConfigurationSchedule.model_validate(v2["billing_provider_configuration_schedule"][0])


def test_an_edit_effective_next_period_moves_the_next_months_invoice(b):
    nxt = _create(b)
    october = _close(b, nxt, OCT, NOV)  # finalized Nov 2 and delivered before the edits: the default
    assert b.delivery.deliver(october).outcome == DELIVERED

    record = _edit(b, nxt, **_update(b.second["id"], "START_OF_NEXT_PERIOD"))
    assert record["add_billing_provider_configuration_update"]["effective_at"] == "2026-12-01T00:00:00Z"
    for start, end in ((NOV, DEC), (DEC, JAN)):
        b.delivery.deliver(_close(b, nxt, start, end))
    # October 2468 and November 200 on the default, December's 7 calls at 1 cent (the card's tier
    # from Nov 15) = 7 on the second.
    assert _totals(b) == {"first": [200, 2468], "second": [7]}

    (entry,) = b.w.edits.history(b.w.customer.id, nxt["id"])
    stored = b.w.contracts.get(b.w.customer.id, nxt["id"])
    shown = edit_json(entry, stored, b.w.contracts.contract(stored), b.w.contracts.products(), ContractView())
    assert shown["add_billing_provider_configuration_update"] == {
        "billing_provider_configuration": b.providers.configuration_json(b.second),
        "schedule": {"effective_at": "START_OF_NEXT_PERIOD"}, "effective_at": "2026-12-01T00:00:00Z"}
    v2 = contract_v2_json(stored, b.w.contracts.contract(stored), b.w.contracts.products(), ContractView(now=EDITED_AT))
    assert [e["effective_at"] for e in v2["billing_provider_configuration_schedule"]] == ["2026-12-01T00:00:00Z"]


def test_an_edit_effective_this_period_moves_its_invoice_and_no_finalized_one(b):
    contract = _create(b, scheduled_charges=[
        {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-11-05T00:00:00Z", "amount": 300}]}}])
    october = _close(b, contract, OCT, NOV)  # finalized Nov 2, not yet delivered when the edit is made
    # November's SCHEDULED invoice of 300, finalized Nov 6, not yet delivered either.
    b.w.clock.now = datetime(2026, 11, 6, tzinfo=UTC)
    (charge,) = b.w.service.finalize(b.w.customer.id, contract["id"], NOV, b.w.clock.now)["finalized"]
    b.w.clock.now = EDITED_AT

    record = _edit(b, contract, **_update(b.second["id"], "START_OF_CURRENT_PERIOD"))
    assert record["add_billing_provider_configuration_update"]["effective_at"] == "2026-11-01T00:00:00Z"
    for invoice in (october, charge, _close(b, contract, NOV, DEC)):
        b.delivery.deliver(invoice)
    # October's period began before the change, November's charge was finalized before it: both the
    # default's; November's usage, 100 calls x 2 = 200, finalized after it: the second's.
    assert _totals(b) == {"first": [300, 2468], "second": [200]}


def _contract_items(b) -> int:
    items = b.w.dynamo["client"].scan(TableName=b.w.dynamo["billing"])["Items"]
    return sum(1 for item in items if item["pk"]["S"].startswith("contract"))


def test_refusals_name_the_field_and_change_nothing(b):
    other = CustomerService(b.w.billing, b.w.clock).create("Other", ["other"], None, {})
    (theirs,) = b.providers.set_customer_configurations([{
        "customer_id": other.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": "cus_other"}}])
    (archived,) = b.providers.set_customer_configurations([{
        "customer_id": b.w.customer.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": "cus_old"}}])
    b.providers.archive_customer_configurations(b.w.customer.id, [archived["id"]])
    field = "billing_provider_configuration"
    cases = [
        ({"billing_provider_configuration_id": theirs["id"]}, f"{field}.billing_provider_configuration_id"),
        ({"billing_provider_configuration_id": archived["id"]}, f"{field}.billing_provider_configuration_id"),
        ({"billing_provider_configuration_id": "00000000-0000-4000-8000-000000000000"},
         f"{field}.billing_provider_configuration_id"),
        # Two active Stripe configurations delivered directly: which one must be named.
        ({"billing_provider": "stripe", "delivery_method": "direct_to_billing_provider"},
         f"{field}.billing_provider_configuration_id"),
        ({"billing_provider": "netsuite", "delivery_method": "direct_to_billing_provider"}, f"{field}.billing_provider"),
        ({"billing_provider": "stripe"}, f"{field}.billing_provider_configuration_id"),
    ]
    before = _contract_items(b)
    for spec, named in cases:
        with pytest.raises(InvalidInput) as refused:
            _create(b, billing_provider_configuration=spec)
        assert refused.value.field == named, spec
    assert _contract_items(b) == before

    contract = _create(b, billing_provider_configuration={"billing_provider_configuration_id": b.first["id"]},
                       starting_at="2026-12-01T00:00:00Z")
    ended = _create(b, name="ends", ending_before="2026-12-01T00:00:00Z")  # its next period would start at its end
    stored = {c["id"]: b.w.contracts.get(b.w.customer.id, c["id"]) for c in (contract, ended)}
    update = "add_billing_provider_configuration_update"
    for target, body, named in [
        (contract, _update(b.second["id"], "START_OF_NEXT_PERIOD"), f"{update}.billing_provider_configuration"),
        (ended, _update(archived["id"], "START_OF_NEXT_PERIOD"),
         f"{update}.billing_provider_configuration.billing_provider_configuration_id"),
        (ended, _update(theirs["id"], "START_OF_CURRENT_PERIOD"),
         f"{update}.billing_provider_configuration.billing_provider_configuration_id"),
        (ended, _update(b.second["id"], "START_OF_NEXT_PERIOD"), f"{update}.schedule.effective_at"),  # Dec 1 is its end
    ]:
        with pytest.raises(InvalidInput) as refused:
            _edit(b, target, **body)
        assert refused.value.field == named
    for contract_id, document in stored.items():
        assert b.w.contracts.get(b.w.customer.id, contract_id) == document
        assert b.w.edits.history(b.w.customer.id, contract_id) == []
