"""Invoices delivered through AWS on the local stack, configured through metronome-sdk in strict mode
(issue 17): one customer metered to AWS Marketplace (moto's meteringmarketplace), one whose invoices
go to its SQS queue (moto), both through the delivery function and its queue.

Each closes a week of 7 calls at 25 cents: 175 cents, one usage_fee record of 175 for the first, one
message holding the 175-cent invoice for the second, however often the message comes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import metronome
import pytest
from moto.meteringmarketplace.models import meteringmarketplace_backends

from infra.local.moto_marketplace import held
from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


def _week(client, settle, tag: str) -> tuple[str, str]:
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
    client.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(7)])
    settle()
    return customer, contract, start


def test_a_closed_week_is_metered_to_aws_marketplace_and_sent_to_a_queue_once(local_stack, settle):
    from tally import wiring

    client = metronome.Metronome(bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0,
                                 _strict_response_validation=True)
    tag = unique("aws")
    product = f"prod-{tag}"
    meter_region = "us-east-1"
    sqs = boto3.client("sqs", endpoint_url=local_stack.aws_endpoint, region_name="us-east-1")
    inbox = sqs.create_queue(QueueName=f"{tag}-inbox")["QueueUrl"]

    metered, metered_contract, start = _week(client, settle, f"{tag}-m")
    queued, queued_contract, _ = _week(client, settle, f"{tag}-q")
    direct = client.v1.settings.billing_providers.create(
        billing_provider="aws_marketplace", delivery_method="direct_to_billing_provider", configuration={}).data.delivery_method_id
    client.v1.settings.billing_providers.create(billing_provider="aws_marketplace", delivery_method="aws_sqs", configuration={})
    client.v1.customers.set_billing_configurations(data=[
        {"customer_id": metered, "billing_provider": "aws_marketplace", "delivery_method_id": direct,
         "configuration": {"aws_customer_id": f"{tag}-aws", "aws_product_code": product, "aws_region": meter_region}},
        {"customer_id": queued, "billing_provider": "aws_marketplace", "delivery_method": "aws_sqs",
         "configuration": {"aws_customer_id": f"{tag}-aws", "aws_sqs_queue_url": inbox}},
    ])
    (shown,) = client.v1.customers.retrieve_billing_configurations(customer_id=queued).data
    assert (shown.delivery_method, shown.configuration) == ("aws_sqs", {"aws_customer_id": f"{tag}-aws", "aws_sqs_queue_url": inbox})
    with pytest.raises(metronome.BadRequestError) as refused:
        client.v1.customers.set_billing_configurations(data=[{
            "customer_id": metered, "billing_provider": "aws_marketplace", "delivery_method_id": direct,
            "configuration": {"aws_customer_id": "c", "aws_product_code": product, "aws_region": "mars-1"}}])
    assert refused.value.body["field"] == "data[0].configuration.aws_region"

    close = wiring.cycle_close_service()
    weeks = []
    for customer, contract in ((metered, metered_contract), (queued, queued_contract)):
        (week,) = close.finalize(customer, contract, start, datetime.now(timezone.utc))["finalized"]
        assert close.publish_finalized(week) is True  # invoice.finalized -> the delivery queue
        weeks.append(week)
    local_stack.queue_pump.drain()
    # The same messages again (SQS delivers at least once): nothing more.
    outputs = local_stack.deployment.outputs
    for week in weeks:
        body = json.dumps({"id": f"invoice.finalized:{week}", "type": "invoice.finalized", "properties": {"invoice_id": week}})
        sqs.send_message(QueueUrl=outputs["InvoiceDeliveryQueueUrl"], MessageBody=body)
    local_stack.queue_pump.drain()

    # moto's metering as the local stack runs it (infra/local/moto_marketplace.py): what AWS would hold.
    backend = meteringmarketplace_backends["123456789012"][meter_region]
    assert [(c, d, q) for _, c, d, q in held(backend, product)] == [(f"{tag}-aws", "usage_fee", 175)]
    shown = client.v1.customers.invoices.retrieve(customer_id=metered, invoice_id=weeks[0]).data.external_invoice
    assert (shown.billing_provider_type, shown.external_status, shown.invoiced_total) == ("aws_marketplace", "FINALIZED", 175)

    messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]
    (message,) = [json.loads(m["Body"]) for m in messages]
    assert (message["id"], message["type"]) == (f"invoice.finalized:{weeks[1]}", "invoice.finalized")
    invoice = message["properties"]["invoice"]
    assert (invoice["id"], invoice["customer_id"], invoice["total"]) == (weeks[1], queued, 175)
    assert [(line["quantity"], line["total"]) for line in invoice["line_items"]] == [(7, 175)]
    shown = client.v1.customers.invoices.retrieve(customer_id=queued, invoice_id=weeks[1]).data.external_invoice
    assert (shown.billing_provider_type, shown.external_status) == ("aws_marketplace", "SENT")
