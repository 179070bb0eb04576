"""Invoices delivered to Stripe exactly once (issue 17): moto (DynamoDB, Secrets Manager) and
localstripe (infra/local/stripe_server.py) behind the official stripe SDK.

The contract (tests/service/test_cycle_close.py's world) bills 3 seats at 1000 cents monthly in
advance and API calls at 2 cents each until Nov 15. October closes with 1234 calls: the usage
invoice holds the calls, 1234 x 2 = 2468 cents.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime

import boto3
import pytest
import stripe

from tally.adapters.dynamo.billing_providers import (
    DynamoDeliveryStateStore,
    customer_config_documents,
    delivery_method_documents,
)
from tally.adapters.secrets import SecretsManagerVault
from tally.adapters.stripe_gateway import StripeGateway
from tally.billing.errors import InvalidInput
from tally.billing.invoice_delivery import DeliveryRefused, ProviderUnavailable
from tally.services.billing_providers import BillingProviderService
from tally.services.invoice_delivery import ALREADY_DELIVERED, DELIVERED, InvoiceDeliveryService, announce_void
from tests.localstripe import localstripe  # noqa: F401 - the fixture
from tests.service.test_cycle_close import GRACE, NOV, OCT, TOPIC, UTC, FakePublisher, _contract, w  # noqa: F401

SECRET_KEY = "sk_test_tally_delivery_4242"


class CrashAfterStripe(Exception):
    """The delivery function dies after Stripe answered and before Tally recorded it."""


class CrashingState:
    def __init__(self, real: DynamoDeliveryStateStore) -> None:
        self.real, self.crash_next_record = real, False

    def __getattr__(self, name):
        return getattr(self.real, name)

    def record(self, invoice_id, external):
        if self.crash_next_record:
            self.crash_next_record = False
            raise CrashAfterStripe()
        return self.real.record(invoice_id, external)


@pytest.fixture()
def d(w, localstripe):  # noqa: F811
    table, client = w.dynamo["billing"], w.dynamo["client"]
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    vault = SecretsManagerVault(secrets)
    providers = BillingProviderService(delivery_method_documents(table, client), customer_config_documents(table, client),
                                       vault, w.billing, lambda: "tally/test/billing-providers", w.clock)
    state = CrashingState(DynamoDeliveryStateStore(table, client))
    sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0)
    stripe_customer = sdk.customers.create(params={"name": "Acme", "email": "billing@acme.test"})
    publisher = FakePublisher()
    delivery = InvoiceDeliveryService(w.store, providers, state, vault, StripeGateway(localstripe.url, max_network_retries=0),
                                      publisher, lambda: TOPIC, w.clock)
    w.usage.calls += [(datetime(2026, 10, 10, tzinfo=UTC), 1234)]
    contract = _contract(w)
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    return type("D", (), dict(w=w, providers=providers, state=state, sdk=sdk, stripe_customer=stripe_customer.id,
                              delivery=delivery, publisher=publisher, october=october, secrets=secrets,
                              localstripe=localstripe, table=table, client=client))


def _configure(d, collection: str = "send_invoice") -> str:
    method_id = d.providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": SECRET_KEY})
    d.providers.set_customer_configurations([{
        "customer_id": d.w.customer.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": d.stripe_customer, "stripe_collection_method": collection},
    }])
    return method_id


def _stripe_invoices(d) -> list:
    return list(d.sdk.invoices.list(params={"customer": d.stripe_customer, "limit": 100}).data)


def _items(d, invoice_id: str) -> list[tuple]:
    lines = d.sdk.invoices.line_items.list(invoice_id, params={"limit": 100}).data
    return sorted((line.amount, line.description, line.metadata["tally_line_index"]) for line in lines)


def test_the_secret_key_goes_to_secrets_manager_and_reads_show_it_masked(d):
    method_id = _configure(d)

    (method,) = d.providers.delivery_methods()
    assert d.providers.delivery_method_json(method) == {
        "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "delivery_method_configuration": {"stripe_secret_key": "sk_test_****4242"}, "delivery_method_id": method_id,
    }
    secret = d.secrets.get_secret_value(SecretId=f"tally/test/billing-providers/{method_id}")["SecretString"]
    assert secret == SECRET_KEY
    stored = json.dumps(d.client.scan(TableName=d.table)["Items"])
    assert SECRET_KEY not in stored and "tally_delivery" not in stored


def test_a_closed_month_becomes_one_finalized_stripe_invoice_with_its_items_and_total(d):
    _configure(d)

    outcome = d.delivery.deliver(d.october)

    (invoice,) = _stripe_invoices(d)
    assert (outcome.outcome, outcome.external_invoice_id) == (DELIVERED, invoice.id)
    assert (invoice.status, invoice.total, invoice.currency) == ("open", 2468, "usd")
    assert invoice.metadata["tally_invoice_id"] == d.october
    assert _items(d, invoice.id) == [(2468, "API calls (2026-10-01 to 2026-11-01)", "0")]
    state = d.state.get(d.october)
    assert (state["invoice_id"], state["external_status"], state["invoiced_total"]) == (invoice.id, "FINALIZED", 2468)


def test_a_second_delivery_of_the_same_message_sends_nothing(d):
    _configure(d)
    first = d.delivery.deliver(d.october)

    again = d.delivery.deliver(d.october)

    assert (again.outcome, again.external_invoice_id) == (ALREADY_DELIVERED, first.external_invoice_id)
    assert len(_stripe_invoices(d)) == 1


def test_a_crash_between_stripe_and_the_record_leaves_one_invoice(d):
    _configure(d)
    d.state.crash_next_record = True
    with pytest.raises(CrashAfterStripe):
        d.delivery.deliver(d.october)
    assert d.state.get(d.october) is None  # Stripe has it, Tally does not know yet

    retried = d.delivery.deliver(d.october)

    (invoice,) = _stripe_invoices(d)
    assert (retried.outcome, retried.external_invoice_id, invoice.total) == (DELIVERED, invoice.id, 2468)
    assert d.state.get(d.october)["external_status"] == "FINALIZED"


def test_stripe_answering_500_then_recovering_gives_one_invoice(d):
    _configure(d)
    # The invoice create is carried out and its answer lost, then the next request is refused.
    d.localstripe.fail_next(1, 500, when="after")
    with pytest.raises(ProviderUnavailable):
        d.delivery.deliver(d.october)
    d.localstripe.fail_next(1, 500, when="before")
    with pytest.raises(ProviderUnavailable):
        d.delivery.deliver(d.october)

    d.delivery.deliver(d.october)

    (invoice,) = _stripe_invoices(d)
    assert (invoice.status, invoice.total) == ("open", 2468)
    assert [m for m in d.publisher.messages if m[1]["type"] == "invoice.billing_provider_error"] == []


def test_concurrent_deliveries_make_one_invoice(d):
    _configure(d)
    errors: list[Exception] = []

    def deliver():
        try:
            d.delivery.deliver(d.october)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    (invoice,) = _stripe_invoices(d)
    assert _items(d, invoice.id) == [(2468, "API calls (2026-10-01 to 2026-11-01)", "0")]
    assert d.state.get(d.october)["invoice_id"] == invoice.id


def test_a_permanent_refusal_is_recorded_and_published_once(d):
    d.providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": SECRET_KEY})
    d.providers.set_customer_configurations([{
        "customer_id": d.w.customer.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": "cus_doesnotexist"},
    }])

    for _ in range(3):  # the message's attempts before it is parked
        with pytest.raises(DeliveryRefused):
            d.delivery.deliver(d.october)

    errors = [m for m in d.publisher.messages if m[1]["type"] == "invoice.billing_provider_error"]
    assert len(errors) == 1
    (topic, message, attributes) = errors[0]
    assert message["id"] == f"invoice.billing_provider_error:{d.october}"
    assert message["properties"]["invoice_id"] == d.october and "404" in message["properties"]["billing_provider_error"]
    state = d.state.get(d.october)
    assert (state["external_status"], state["invoice_id"]) == ("INVALID_REQUEST_ERROR", None)


def test_void_and_regenerate_leave_one_void_and_one_open_stripe_invoice(d):
    _configure(d)
    first = d.delivery.deliver(d.october).external_invoice_id
    d.w.service.void(d.october)
    regenerated = d.w.service.regenerate(d.october)

    assert d.delivery.deliver(d.october).outcome == "not_finalized"  # a late copy of the first message
    second = d.delivery.deliver(regenerated).external_invoice_id
    assert d.delivery.deliver(regenerated).outcome == ALREADY_DELIVERED

    statuses = sorted((i.id == first, i.status, i.total, i.metadata["tally_invoice_id"]) for i in _stripe_invoices(d))
    assert statuses == [(False, "open", 2468, regenerated), (True, "void", 2468, d.october)]
    assert second != first
    assert (d.state.get(d.october)["external_status"], d.state.get(regenerated)["external_status"]) == ("VOID", "FINALIZED")


def test_a_voided_invoice_is_voided_at_stripe_once_its_message_comes(d):
    _configure(d)
    delivered = d.delivery.deliver(d.october).external_invoice_id
    assert d.delivery.void_at_provider(d.october).outcome == "not_voided"  # still FINALIZED: nothing to do
    d.w.service.void(d.october)
    announce_void(d.publisher, TOPIC, d.october, d.w.customer.id)

    ((topic, message, attributes),) = d.publisher.messages
    assert (message["id"], attributes["type"]) == (f"invoice.voided:{d.october}", "invoice.voided")
    first = d.delivery.void_at_provider(d.october)
    again = d.delivery.void_at_provider(d.october)

    assert (first.outcome, first.external_invoice_id, again.external_invoice_id) == ("voided", delivered, delivered)
    assert [(i.id, i.status) for i in _stripe_invoices(d)] == [(delivered, "void")]
    assert d.state.get(d.october)["external_status"] == "VOID"


def test_a_customer_without_a_stripe_configuration_is_not_delivered(d):
    assert d.delivery.deliver(d.october).outcome == "not_configured"
    assert _stripe_invoices(d) == []


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"billing_provider": "stripe", "delivery_method": "direct_to_billing_provider", "configuration": {}},
         "data[0].configuration.stripe_customer_id"),
        ({"billing_provider": "stripe", "delivery_method": "aws_sqs", "configuration": {"stripe_customer_id": "cus_1"}},
         "data[0].delivery_method"),
        ({"billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
          "configuration": {"stripe_customer_id": "cus_1", "stripe_collection_method": "cash"}},
         "data[0].configuration.stripe_collection_method"),
        ({"billing_provider": "paypal", "delivery_method": "direct_to_billing_provider"}, "data[0].billing_provider"),
        ({"billing_provider": "stripe", "delivery_method_id": "00000000-0000-4000-8000-000000000000",
          "configuration": {"stripe_customer_id": "cus_1"}}, "data[0].delivery_method_id"),
    ],
    ids=["stripe customer missing", "no such account method", "unknown collection method", "unknown provider",
         "unknown delivery method id"],
)
def test_bad_customer_configurations_are_refused_naming_the_field_and_write_nothing(d, entry, field):
    d.providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": SECRET_KEY})
    good = {"customer_id": d.w.customer.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
            "configuration": {"stripe_customer_id": "cus_1"}}
    with pytest.raises(InvalidInput) as refused:
        d.providers.set_customer_configurations([entry | {"customer_id": d.w.customer.id}, good])
    assert refused.value.field == field
    assert d.providers.customer_configurations(d.w.customer.id, include_archived=True) == []


def test_a_configuration_naming_its_delivery_method_by_id_is_archived_and_then_delivers_nothing(d):
    method_id = d.providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": SECRET_KEY})
    (created,) = d.providers.set_customer_configurations([{
        "customer_id": d.w.customer.id, "billing_provider": "stripe", "delivery_method_id": method_id,
        "configuration": {"stripe_customer_id": d.stripe_customer},
    }])
    assert (created["delivery_method"], created["configuration"]["stripe_collection_method"]) == (
        "direct_to_billing_provider", "charge_automatically")

    assert d.providers.archive_customer_configurations(d.w.customer.id, [created["id"]]) == [created["id"]]

    assert d.providers.customer_configurations(d.w.customer.id) == []
    (archived,) = d.providers.customer_configurations(d.w.customer.id, include_archived=True)
    assert archived["archived_at"] == "2026-11-24T12:00:00Z"
    assert d.delivery.deliver(d.october).outcome == "not_configured" and _stripe_invoices(d) == []


def test_a_bad_secret_key_is_refused_and_nothing_is_stored(d):
    with pytest.raises(InvalidInput) as refused:
        d.providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": "pk_test_public_1234"})
    assert refused.value.field == "configuration.stripe_secret_key"
    assert d.providers.delivery_methods() == []
    assert d.secrets.list_secrets()["SecretList"] == [] or all(
        not s["Name"].startswith("tally/test/") for s in d.secrets.list_secrets()["SecretList"])


def _sqs_event(invoice_id: str, receive_count: int, message_id: str = "m-1") -> dict:
    body = json.dumps({"id": f"invoice.finalized:{invoice_id}", "type": "invoice.finalized",
                       "properties": {"invoice_id": invoice_id}})
    return {"Records": [{
        "messageId": message_id, "receiptHandle": "r", "body": body, "md5OfBody": "",
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "0",
                       "SenderId": "s", "ApproximateFirstReceiveTimestamp": "0"},
        "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1",
    }]}


def test_the_delivery_function_reports_a_failed_message_and_on_its_last_receive_publishes_the_error(d, monkeypatch):
    from functions.deliver_invoices import handler
    from tally import wiring

    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="invoices-delivery-test")["TopicArn"]
    inbox = sqs.create_queue(QueueName="inbox-delivery-test")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    for name, value in {"BILLING_TABLE": d.table, "INVOICES_TOPIC_ARN": topic, "STRIPE_API_BASE": d.localstripe.url,
                        "BILLING_PROVIDER_SECRETS_PREFIX": "tally/test/billing-providers",
                        "DELIVERY_MAX_RECEIVES": "3"}.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    monkeypatch.setattr(wiring, "invoice_delivery_service", lambda: InvoiceDeliveryService(
        d.w.store, d.providers, d.state, SecretsManagerVault(d.secrets), StripeGateway(d.localstripe.url, 0),
        wiring.publisher(), lambda: topic, d.w.clock))
    _configure(d)
    context = type("C", (), {"function_name": "deliver", "memory_limit_in_mb": 512, "aws_request_id": "x",
                             "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:deliver"})()

    d.localstripe.fail_next(1, 503)
    assert handler.handler(_sqs_event(d.october, 1), context) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert sqs.receive_message(QueueUrl=inbox).get("Messages", []) == []  # not the last attempt: no error yet
    d.localstripe.fail_next(1, 503)
    assert handler.handler(_sqs_event(d.october, 3), context) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    (error,) = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(error["Body"])["id"] == f"invoice.billing_provider_error:{d.october}"

    # Redriven from the DLQ once Stripe is back: delivered, once.
    assert handler.handler(_sqs_event(d.october, 1, "m-2"), context) == {"batchItemFailures": []}
    assert handler.handler(_sqs_event(d.october, 1, "m-3"), context) == {"batchItemFailures": []}
    (invoice,) = _stripe_invoices(d)
    assert d.state.get(d.october)["invoice_id"] == invoice.id
    wiring.reset()
