"""Invoices delivered to Stripe exactly once, through metronome-sdk in strict mode on the local stack
with localstripe (issue 17): the account's Stripe key and the customer's Stripe customer set with
the SDK, a closed week announced on the invoices topic, delivered by the delivery function through
its SQS queue, and exactly one Stripe invoice however often the message comes.

The week is closed by the cycle close service in the stack's process, for this test's customer only
(as tests/system/test_invoice_corrections_sdk.py does). 7 calls at 25 cents: 175 cents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import boto3
import metronome
import pytest
import stripe

from tests.localstripe import localstripe  # noqa: F401 - the fixture
from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system
SECRET_KEY = "sk_test_tally_system_9876"


def test_a_closed_week_reaches_stripe_once_configured_through_the_sdk(local_stack, settle, api, localstripe):  # noqa: F811
    from tally import settings, wiring

    os.environ["STRIPE_API_BASE"] = localstripe.url  # as `tally local up --stripe` does
    settings.get_settings.cache_clear()
    wiring.invoice_delivery_service.cache_clear()
    client = metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                                 _strict_response_validation=True)
    tag = unique("delivery")
    start = current_hour() - 9 * DAY
    metric = client.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
    calls = client.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    card = client.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    client.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT",
                                            price=25, starting_at=rfc3339(start - DAY))
    customer = client.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    contract = client.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
                                          usage_statement_schedule={"frequency": "WEEKLY", "day": "CONTRACT_START"}).data.id

    # The account's Stripe key (kept in Secrets Manager, shown masked) and the customer's Stripe customer.
    method = client.v1.settings.billing_providers.create(
        billing_provider="stripe",  # type: ignore[arg-type] - the SDK lists marketplaces; Tally takes Stripe too
        delivery_method="direct_to_billing_provider",
        configuration={"stripe_secret_key": SECRET_KEY},
    ).data.delivery_method_id
    listed = [m for m in client.v1.settings.billing_providers.list().data if m.delivery_method_id == method]
    assert [m.delivery_method_configuration for m in listed] == [{"stripe_secret_key": "sk_test_****9876"}]
    bare = api.post("/v1/listConfiguredBillingProviders")  # no body at all, as curl sends it
    assert bare.status_code == 200 and SECRET_KEY not in bare.text
    stripe_sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0)
    stripe_customer = stripe_sdk.customers.create(params={"name": tag}).id
    (configured,) = client.v1.customers.set_billing_configurations(data=[{
        "customer_id": customer, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": stripe_customer, "stripe_collection_method": "send_invoice"},
    }]).data
    (shown,) = client.v1.customers.retrieve_billing_configurations(customer_id=customer).data
    assert (shown.id, shown.delivery_method_id, shown.configuration) == (
        configured.id, method, {"stripe_customer_id": stripe_customer, "stripe_collection_method": "send_invoice"})
    legacy = client.v1.customers.billing_config.retrieve(customer_id=customer, billing_provider_type="stripe").data
    assert (legacy.billing_provider_customer_id, legacy.stripe_collection_method) == (stripe_customer, "send_invoice")
    with pytest.raises(metronome.BadRequestError) as refused:
        client.v1.customers.set_billing_configurations(data=[{
            "customer_id": customer, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
            "configuration": {"stripe_customer_id": stripe_customer, "stripe_collection_method": "send_invoice"}}])
    assert refused.value.body["field"] == "data[0].configuration"  # the same active configuration twice

    client.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(7)])
    settle()
    close = wiring.cycle_close_service()
    (week,) = close.finalize(customer, contract, start, datetime.now(timezone.utc))["finalized"]
    sqs = boto3.client("sqs", endpoint_url=local_stack.aws_endpoint)
    outputs = local_stack.deployment.outputs

    def stripe_invoices():
        return stripe_sdk.invoices.list(params={"customer": stripe_customer, "limit": 100}).data

    def delivered_once():  # the stack's queue pump thread may be the one delivering: wait for it
        deadline = time.monotonic() + 10
        while not stripe_invoices() and time.monotonic() < deadline:
            local_stack.queue_pump.drain()
            time.sleep(0.1)
        (only,) = stripe_invoices()
        return only

    # Stripe fails the first delivery (its first request, and the stripe SDK's 2 retries of it): SQS
    # keeps the message (hidden for 6 minutes), and after its last receive the redrive policy parks
    # it in the DLQ, which this test does at once.
    localstripe.fail_next(3, 500)
    assert close.publish_finalized(week) is True  # invoice.finalized -> the delivery queue
    local_stack.queue_pump.drain()
    assert stripe_invoices() == []
    body = json.dumps({"id": f"invoice.finalized:{week}", "type": "invoice.finalized", "properties": {"invoice_id": week}})
    sqs.send_message(QueueUrl=outputs["InvoiceDeliveryDlqUrl"], MessageBody=body)
    assert week in tally(local_stack, "list").split()
    assert tally(local_stack, "redrive").strip() == "redelivered 1 invoice deliveries"

    delivered = delivered_once()
    assert (delivered.status, delivered.total, delivered.collection_method) == ("open", 175, "send_invoice")
    assert delivered.metadata["tally_invoice_id"] == week
    (line,) = stripe_sdk.invoices.line_items.list(delivered.id).data
    assert (line.amount, line.description.split(" (")[0]) == (175, f"{tag} calls")
    shown = client.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=week).data.external_invoice
    assert (shown.billing_provider_type, shown.invoice_id, shown.external_status, shown.invoiced_total) == (
        "stripe", delivered.id, "FINALIZED", 175)
    (listed,) = [i for i in client.v1.customers.invoices.list(customer_id=customer, status="FINALIZED").data]
    assert listed.external_invoice == shown

    # The same message again (SQS delivers at least once), and a second close run: still one.
    sqs.send_message(QueueUrl=outputs["InvoiceDeliveryQueueUrl"], MessageBody=body)
    assert close.finalize(customer, contract, start, datetime.now(timezone.utc))["finalized"] == []
    assert close.publish_finalized(week) is False
    local_stack.queue_pump.drain()
    assert [i.id for i in stripe_invoices()] == [delivered.id]

    # Void and regenerate through the SDK: one void and one open Stripe invoice.
    client.v1.invoices.void(id=week)
    regenerated = client.v1.invoices.regenerate(id=week).data.id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(stripe_invoices()) < 2:
        local_stack.queue_pump.drain()
        time.sleep(0.1)
    local_stack.queue_pump.drain()
    assert sorted((i.metadata["tally_invoice_id"], i.status, i.total) for i in stripe_invoices()) == sorted(
        [(week, "void", 175), (regenerated, "open", 175)])
    voided = client.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=week).data
    assert (voided.status, voided.external_invoice.external_status, voided.external_invoice.invoice_id) == (
        "VOID", "VOID", delivered.id)


def tally(local_stack, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no AWS set-up needed locally
    run = subprocess.run([sys.executable, "-m", "infra.cli", "deliveries", *args, "--endpoint-url", local_stack.aws_endpoint],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout
