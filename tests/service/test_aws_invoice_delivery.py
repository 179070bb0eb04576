"""Invoices delivered through AWS exactly once (issue 17): metered to AWS Marketplace, sent to a
customer's SNS topic or SQS queue. moto serves DynamoDB, meteringmarketplace, SNS and SQS.

The world is tests/service/test_cycle_close.py's: October closes with 1234 API calls at 2 cents,
an invoice of 1234 x 2 = 2468 cents. AWS Marketplace is metered Metronome's way: one usage_fee
dimension at $0.01 a unit, so the invoice is one usage record of quantity 2468.

moto's BatchMeterUsage answers but keeps nothing (it never appends to records_by_product, so it
never reports DuplicateRecord): the `marketplace` fixture keeps the records the way AWS does (an
identical record is the same record; another quantity under the same customer, dimension and
timestamp is a DuplicateRecord) and counts the calls.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import boto3
import pytest
from moto.meteringmarketplace.models import MeteringMarketplaceBackend, Result, meteringmarketplace_backends

from tally.adapters.aws_destinations import AwsDestinations
from tally.adapters.dynamo.aws_deliveries import DynamoAwsDeliveryStore
from tally.adapters.dynamo.billing_providers import (
    DynamoDeliveryStateStore,
    customer_config_documents,
    delivery_method_documents,
)
from tally.adapters.secrets import SecretsManagerVault
from tally.api.invoice_models import invoice_json
from tally.billing.errors import InvalidInput
from tally.billing.invoice_delivery import DeliveryRefused
from tally.services.aws_invoice_delivery import AwsInvoiceDelivery
from tally.services.billing_providers import BillingProviderService
from tally.services.invoice_delivery import ALREADY_DELIVERED, DELIVERED
from tally.services.invoices import DraftInvoice
from tests.service.test_cycle_close import GRACE, NOV, OCT, TOPIC, UTC, FakePublisher, _contract, w  # noqa: F401

ACCOUNT = "123456789012"


class Crash(Exception):
    """The delivery function dies after AWS answered and before Tally recorded it."""


class CrashingRecords(DynamoAwsDeliveryStore):
    crash_next_save = False

    def save(self, invoice_id, method, record):
        if self.crash_next_save:
            self.crash_next_save = False
            raise Crash()
        return super().save(invoice_id, method, record)


@pytest.fixture()
def marketplace(monkeypatch):
    calls: list[dict] = []

    def batch_meter_usage(self, product_code, usage_records):
        calls.append({"product_code": product_code, "records": usage_records})
        results = []
        for usage in usage_records:
            result = Result(**usage)
            held = self.records_by_product[product_code]
            if not self.customers_by_product[product_code].is_subscribed(usage["CustomerIdentifier"]):
                result.status = Result.CUSTOMER_NOT_SUBSCRIBED
            elif held.is_duplicate(result):
                result.status = Result.DUPLICATE_RECORD
            else:
                same = [r for r in held if r.usage_record == result.usage_record]
                if same:
                    result["MeteringRecordId"] = same[0].metering_record_id  # AWS: the same record
                else:
                    held.append(result)
            results.append(result)
        return results

    monkeypatch.setattr(MeteringMarketplaceBackend, "batch_meter_usage", batch_meter_usage)
    return calls


def _backend():
    return meteringmarketplace_backends[ACCOUNT]["us-east-1"]


def _providers(w):  # noqa: F811
    table, client = w.dynamo["billing"], w.dynamo["client"]
    return BillingProviderService(delivery_method_documents(table, client), customer_config_documents(table, client),
                                  SecretsManagerVault(boto3.client("secretsmanager", region_name="us-east-1")),
                                  w.billing, lambda: "tally/test/billing-providers", w.clock)


@pytest.fixture()
def a(w, marketplace):  # noqa: F811
    table, client = w.dynamo["billing"], w.dynamo["client"]
    methods = delivery_method_documents(table, client)
    providers = _providers(w)
    records = CrashingRecords(table, client)
    state = DynamoDeliveryStateStore(table, client)
    publisher = FakePublisher()

    def render(record):
        return invoice_json(DraftInvoice(record.id, record.invoice, None, record.regenerated_from_invoice_id),
                            w.contracts.products())

    contracts: dict[str, dict] = {}  # contract documents as delivery reads them (only their configuration schedule)
    delivery = AwsInvoiceDelivery(w.store, providers, methods.get, records, state, AwsDestinations(), render,
                                  publisher, lambda: TOPIC, w.clock, contracts=contracts.get)
    w.usage.calls += [(OCT + timedelta(days=9), 1234)]
    contract = _contract(w)
    (october,) = w.service.finalize(w.customer.id, contract["id"], OCT, NOV + GRACE)["invoice_ids"]
    product = f"prod-{uuid.uuid4().hex[:10]}"  # moto is not reset between tests when the local stack is up
    _backend().customers_by_product[product].append("aws-cust-1")
    return type("A", (), dict(w=w, providers=providers, records=records, state=state, delivery=delivery, contracts=contracts,
                              contract_id=contract["id"],
                              publisher=publisher, october=october, product=product, calls=marketplace))


def _marketplace(a, **settings):
    a.providers.set_up("aws_marketplace", "direct_to_billing_provider", {})
    a.providers.set_customer_configurations([{
        "customer_id": a.w.customer.id, "billing_provider": "aws_marketplace", "delivery_method": "direct_to_billing_provider",
        "configuration": {"aws_customer_id": "aws-cust-1", "aws_product_code": a.product, "aws_region": "us-east-1"} | settings,
    }])


def _held(a) -> list[tuple]:
    return [(r.usage_record.timestamp, r.usage_record.customer_identifier, r.usage_record.dimension, r.usage_record.quantity)
            for r in _backend().records_by_product[a.product]]


HOUR_TS = 1795521600.0  # 2026-11-24T12:00:00Z, the clock's hour: the slot the invoice claims


def test_a_closed_month_is_metered_once_as_its_total_in_cents_under_usage_fee(a):
    _marketplace(a)

    outcome = a.delivery.deliver(a.october)

    assert a.w.store.get(a.october).invoice.total == 2468
    assert _held(a) == [(HOUR_TS, "aws-cust-1", "usage_fee", 2468)]  # 1234 calls x 2 cents
    assert outcome.outcome == DELIVERED and outcome.external_invoice_id == _backend().records_by_product[a.product][0].metering_record_id
    state = a.state.get(a.october)
    assert (state["billing_provider_type"], state["external_status"], state["invoiced_total"]) == ("aws_marketplace", "FINALIZED", 2468)

    again = a.delivery.deliver(a.october)  # the message again, or a second close run's

    assert (again.outcome, len(a.calls), _held(a)) == (ALREADY_DELIVERED, 1, [(HOUR_TS, "aws-cust-1", "usage_fee", 2468)])


def test_a_crash_between_aws_and_the_record_sends_the_same_record_which_aws_keeps_once(a):
    _marketplace(a)
    a.records.crash_next_save = True
    with pytest.raises(Crash):
        a.delivery.deliver(a.october)
    a.w.clock.now += timedelta(minutes=90)  # retried in the next hour: still the claimed timestamp

    assert a.delivery.deliver(a.october).outcome == DELIVERED

    assert [c["records"][0]["Quantity"] for c in a.calls] == [2468, 2468]
    assert {c["records"][0]["Timestamp"] for c in a.calls} == {HOUR_TS}
    assert _held(a) == [(HOUR_TS, "aws-cust-1", "usage_fee", 2468)]


def test_an_unconfirmed_claim_older_than_aws_takes_is_refused_visibly_not_metered_again(a):
    _marketplace(a)
    a.records.crash_next_save = True
    with pytest.raises(Crash):
        a.delivery.deliver(a.october)
    a.w.clock.now += timedelta(hours=6)

    with pytest.raises(DeliveryRefused, match="never confirmed"):
        a.delivery.deliver(a.october)

    assert len(a.calls) == 1
    ((_, message, _),) = [m for m in a.publisher.messages if m[1]["type"] == "invoice.billing_provider_error"]
    assert message["properties"]["billing_provider"] == "aws_marketplace"
    assert a.state.get(a.october)["external_status"] == "INVALID_REQUEST_ERROR"


def test_two_invoices_of_one_aws_customer_take_different_hours(a):
    _marketplace(a)
    assert a.records.claim_slot(f"{a.product}#aws-cust-1#usage_fee", "2026-11-24T12:00:00Z", "another-invoice")

    a.delivery.deliver(a.october)

    assert _held(a) == [(HOUR_TS - 3600, "aws-cust-1", "usage_fee", 2468)]


def test_a_regenerated_invoice_meters_only_what_its_voided_invoice_did_not(a):
    _marketplace(a)
    a.delivery.deliver(a.october)
    a.w.usage.calls += [(OCT + timedelta(days=20), 100)]  # 100 late calls seen by the regenerate: 200 cents more
    a.w.service.void(a.october)
    regenerated = a.w.service.regenerate(a.october)
    a.w.clock.now += timedelta(hours=1)

    a.delivery.deliver(regenerated)

    assert a.w.store.get(regenerated).invoice.total == 2668
    assert _held(a) == [(HOUR_TS, "aws-cust-1", "usage_fee", 2468), (HOUR_TS + 3600, "aws-cust-1", "usage_fee", 200)]
    assert a.state.get(regenerated)["invoiced_total"] == 200


def test_the_configuration_the_contract_names_is_metered_not_the_customers_default(a):
    _marketplace(a)  # the default: a.product
    other = f"prod-{uuid.uuid4().hex[:10]}"
    _backend().customers_by_product[other].append("aws-cust-1")
    (named,) = a.providers.set_customer_configurations([{
        "customer_id": a.w.customer.id, "billing_provider": "aws_marketplace", "delivery_method": "direct_to_billing_provider",
        "configuration": {"aws_customer_id": "aws-cust-1", "aws_product_code": other, "aws_region": "us-east-1"},
    }])
    a.contracts[a.contract_id] = {"billing_provider_configuration_schedule": [{
        "billing_provider_configuration_id": named["id"], "effective_at": "2026-10-01T00:00:00Z", "recorded_at": None}]}

    a.delivery.deliver(a.october)

    assert [(c["product_code"], c["records"][0]["Quantity"]) for c in a.calls] == [(other, 2468)]
    assert _held(a) == []


def test_a_customer_aws_does_not_know_is_refused_and_reported_once(a):
    a.providers.set_up("aws_marketplace", "direct_to_billing_provider", {})
    a.providers.set_customer_configurations([{
        "customer_id": a.w.customer.id, "billing_provider": "aws_marketplace", "delivery_method": "direct_to_billing_provider",
        "configuration": {"aws_customer_id": "not-subscribed", "aws_product_code": a.product, "aws_region": "us-east-1"},
    }])
    for _ in range(2):
        with pytest.raises(DeliveryRefused, match="CustomerNotSubscribed"):
            a.delivery.deliver(a.october)

    assert len([m for m in a.publisher.messages if m[1]["type"] == "invoice.billing_provider_error"]) == 1
    assert _held(a) == []


@pytest.mark.parametrize("kind", ["aws_sqs", "aws_sqs_fifo", "aws_sns"])
def test_the_invoice_goes_to_the_customers_queue_or_topic_once(a, kind):
    sqs = boto3.client("sqs", region_name="us-east-1")
    name = f"inbox-{uuid.uuid4().hex[:8]}"
    fifo = kind.endswith("fifo")
    inbox = sqs.create_queue(QueueName=name + (".fifo" if fifo else ""),
                             Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"]
    setting = {"aws_sqs_queue_url": inbox}
    method = "aws_sqs"
    if kind == "aws_sns":
        sns = boto3.client("sns", region_name="us-east-1")
        topic = sns.create_topic(Name=name)["TopicArn"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        setting, method = {"aws_sns_topic_arn": topic}, "aws_sns"
    a.providers.set_up("aws_marketplace", method, {})
    a.providers.set_customer_configurations([{
        "customer_id": a.w.customer.id, "billing_provider": "aws_marketplace", "delivery_method": method,
        "configuration": {"aws_customer_id": "aws-cust-1"} | setting,
    }])
    a.records.crash_next_save = True  # sent, not recorded: sent again under the same id
    with pytest.raises(Crash):
        a.delivery.deliver(a.october)

    assert a.delivery.deliver(a.october).outcome == DELIVERED
    assert a.delivery.deliver(a.october).outcome == ALREADY_DELIVERED

    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]]
    assert [b["id"] for b in bodies] == [f"invoice.finalized:{a.october}"] * (1 if fifo else 2)  # FIFO drops the copy
    body = bodies[0]
    assert (body["type"], body["properties"]["billing_provider"], body["properties"]["delivery_method"]) == (
        "invoice.finalized", "aws_marketplace", method)
    invoice = body["properties"]["invoice"]
    assert (invoice["id"], invoice["total"], invoice["customer_id"]) == (a.october, 2468, a.w.customer.id)
    assert [(i["name"], i["quantity"], i["total"]) for i in invoice["line_items"]] == [("API calls", 1234, 2468)]
    assert a.state.get(a.october)["external_status"] == "SENT"


BAD_CONFIGURATIONS = [
    ("direct_to_billing_provider", {"aws_product_code": "p", "aws_region": "us-east-1"}, "data[0].configuration.aws_customer_id"),
    ("direct_to_billing_provider", {"aws_customer_id": "c", "aws_region": "us-east-1"}, "data[0].configuration.aws_product_code"),
    ("direct_to_billing_provider", {"aws_customer_id": "c", "aws_product_code": "p", "aws_region": "mars-1"}, "data[0].configuration.aws_region"),
    ("direct_to_billing_provider", {"aws_customer_id": "c", "aws_product_code": "p", "aws_region": "us-east-1", "x": 1}, "data[0].configuration.x"),
    ("aws_sqs", {"aws_customer_id": "c"}, "data[0].configuration.aws_sqs_queue_url"),
    ("aws_sqs", {"aws_sqs_queue_url": "https://example.com/q"}, "data[0].configuration.aws_sqs_queue_url"),
    ("aws_sns", {"aws_sns_topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"}, "data[0].configuration.aws_sns_topic_arn"),
]
BAD_METHODS = [
    ("direct_to_billing_provider", {"aws_iam_role_arn": "not-a-role"}, "configuration.aws_iam_role_arn"),
    ("direct_to_billing_provider", {"aws_external_id": "abc"}, "configuration.aws_external_id"),
    ("aws_sns", {"aws_sqs_queue_url": "x"}, "configuration.aws_sqs_queue_url"),
]


def test_bad_aws_configurations_and_delivery_methods_are_refused_naming_the_field_and_write_nothing(w):  # noqa: F811
    providers = _providers(w)
    refused = []
    for method, configuration, _ in BAD_METHODS:
        with pytest.raises(InvalidInput) as caught:
            providers.set_up("aws_marketplace", method, configuration)
        refused.append(caught.value.field)
    assert refused == [field for *_, field in BAD_METHODS]
    assert providers.delivery_methods() == []

    for method in ("direct_to_billing_provider", "aws_sqs", "aws_sns"):
        providers.set_up("aws_marketplace", method, {})
    refused = []
    for method, configuration, _ in BAD_CONFIGURATIONS:
        with pytest.raises(InvalidInput) as caught:
            providers.set_customer_configurations([{"customer_id": w.customer.id, "billing_provider": "aws_marketplace",
                                                    "delivery_method": method, "configuration": configuration}])
        refused.append(caught.value.field)
    assert refused == [field for *_, field in BAD_CONFIGURATIONS]
    assert providers.customer_configurations(w.customer.id) == []


def test_the_delivery_function_meters_when_the_invoice_does_not_go_to_stripe_and_reports_the_last_failure(a, monkeypatch):
    from functions.deliver_invoices import handler
    from tally import wiring
    from tally.billing.invoice_delivery import ProviderUnavailable
    from tally.services.invoice_delivery import NOT_CONFIGURED, Delivery
    from tests.service.test_invoice_delivery import _sqs_event

    monkeypatch.setenv("DELIVERY_MAX_RECEIVES", "3")
    wiring.reset()
    not_stripe = type("NotStripe", (), {"deliver": lambda self, invoice_id: Delivery(NOT_CONFIGURED)})()
    monkeypatch.setattr(wiring, "invoice_delivery_service", lambda: not_stripe)
    monkeypatch.setattr(wiring, "aws_invoice_delivery_service", lambda: a.delivery)
    context = type("C", (), {"function_name": "deliver", "memory_limit_in_mb": 512, "aws_request_id": "x",
                             "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:deliver"})()
    _marketplace(a)
    real = a.delivery._aws

    class Throttled:
        def meter(self, **_):
            raise ProviderUnavailable("AWS answered ThrottlingException; retrying")

    a.delivery._aws = Throttled()
    assert handler.handler(_sqs_event(a.october, 1), context) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert a.publisher.messages == []  # not the last attempt
    assert handler.handler(_sqs_event(a.october, 3), context) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    ((_, error, _),) = a.publisher.messages
    assert (error["id"], error["properties"]["billing_provider"]) == (f"invoice.billing_provider_error:{a.october}", "aws_marketplace")

    a.delivery._aws = real  # redriven from the DLQ once AWS is back: metered once
    assert handler.handler(_sqs_event(a.october, 1, "m-2"), context) == {"batchItemFailures": []}
    assert handler.handler(_sqs_event(a.october, 1, "m-3"), context) == {"batchItemFailures": []}
    assert (len(a.calls), _held(a)) == (1, [(HOUR_TS, "aws-cust-1", "usage_fee", 2468)])


def test_the_older_billing_config_route_sets_and_shows_an_aws_marketplace_customer(w):  # noqa: F811
    providers = _providers(w)
    body = {"billing_provider_customer_id": "aws-cust-9", "aws_product_code": "prod-9", "aws_region": "eu-west-1",
            "stripe_collection_method": None, "aws_customer_id": None, "aws_customer_account_id": None,
            "aws_is_subscription_product": True}
    with pytest.raises(InvalidInput) as refused:  # no account-level aws_marketplace method yet
        providers.set_billing_config(w.customer.id, "aws_marketplace", body)
    assert refused.value.field == "billing_provider_type"
    providers.set_up("aws_marketplace", "direct_to_billing_provider", {})
    with pytest.raises(InvalidInput) as refused:
        providers.set_billing_config(w.customer.id, "aws_marketplace", body | {"aws_region": "mars-1"})
    assert refused.value.field == "aws_region"

    providers.set_billing_config(w.customer.id, "aws_marketplace", body)

    assert providers.billing_config(w.customer.id, "aws_marketplace") == {
        "billing_provider_customer_id": "aws-cust-9", "aws_customer_id": "aws-cust-9", "aws_product_code": "prod-9",
        "aws_region": "eu-west-1", "aws_is_subscription_product": True}
    (configured,) = providers.customer_configurations(w.customer.id)
    assert (configured["billing_provider"], configured["delivery_method"]) == ("aws_marketplace", "direct_to_billing_provider")


def test_a_regenerated_invoice_confirms_its_voided_invoices_unconfirmed_record_before_metering_the_rest(a):
    _marketplace(a)
    a.records.crash_next_save = True  # October's record reached AWS; Tally never recorded it
    with pytest.raises(Crash):
        a.delivery.deliver(a.october)
    a.w.usage.calls += [(OCT + timedelta(days=20), 100)]
    a.w.service.void(a.october)
    regenerated = a.w.service.regenerate(a.october)
    a.w.clock.now += timedelta(hours=1)

    a.delivery.deliver(regenerated)

    assert _held(a) == [(HOUR_TS, "aws-cust-1", "usage_fee", 2468), (HOUR_TS + 3600, "aws-cust-1", "usage_fee", 200)]
    assert [c["records"][0]["Quantity"] for c in a.calls] == [2468, 2468, 200]  # the same record again, then the rest
