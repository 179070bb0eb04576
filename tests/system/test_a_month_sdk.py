"""A customer carried through a whole month with the official SDK on the local stack: a contract
with a commit and a credit, usage, an alert crossing, SNS messages on SQS subscriptions, the
scheduled cycle close, a late event, then void and regenerate. Totals are worked out by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

CLOSE = "/local/schedules/close-billing-periods"


class Inbox:
    """An SQS queue subscribed to one of the stack's topics, filtered on one customer."""

    def __init__(self, local_stack, topic_output: str, customer_id: str) -> None:
        endpoint = local_stack.aws_endpoint
        self.sqs = boto3.client("sqs", endpoint_url=endpoint)
        sns = boto3.client("sns", endpoint_url=endpoint)
        self.url = self.sqs.create_queue(QueueName=unique("month-inbox"))["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=local_stack.deployment.outputs[topic_output], Protocol="sqs", Endpoint=arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"customer_id": [customer_id]})},
        )
        self.received: list[dict] = []

    def all(self) -> list[dict]:
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                self.received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return self.received


def close_periods(api) -> dict:
    response = api.post(CLOSE, json={"time": rfc3339(datetime.now(timezone.utc))}, timeout=120)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "SUCCEEDED", result
    return result


def test_a_month_from_contract_to_finalized_invoice_alerts_late_event_and_correction(sdk, api, local_stack, settle):
    tag = unique("month")
    start = current_hour() - 33 * DAY  # the first monthly period ended at least two days ago
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} calls", type="USAGE", billable_metric_id=metric).data.id
    fixed = sdk.v1.contracts.products.create(name=f"{tag} prepaid", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="FLAT", price=10, starting_at=rfc3339(start - DAY)
    )
    customer = sdk.v1.customers.create(name=tag, ingest_aliases=[tag]).data.id
    access = {"schedule_items": [{"amount": 0, "starting_at": rfc3339(start), "ending_before": rfc3339(start + 62 * DAY)}]}

    def segment(amount):
        return {"schedule_items": [dict(access["schedule_items"][0], amount=amount)]}

    sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        commits=[{"product_id": fixed, "type": "PREPAID", "name": "Prepaid", "priority": 2, "access_schedule": segment(200),
                  "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": 200}]}}],
        credits=[{"product_id": fixed, "name": "Credit", "priority": 1, "access_schedule": segment(50)}],
    )
    alerts, invoices = Inbox(local_stack, "AlertsTopicArn", customer), Inbox(local_stack, "InvoicesTopicArn", customer)
    # Usage alerts look at the open period, and this month is already over; the credit's balance is
    # live whatever the period, so the crossing here is the credit running low.
    sdk.v1.alerts.create(alert_type="low_credit_balance_reached", name=f"{tag} credit under 10c", threshold=10,
                         customer_id=customer)
    assert alerts.all() == []  # 50 cents of credit: not low yet

    # 30 calls in the first hour: 300 cents. The credit pays 50, the prepaid commit 200: total 50.
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(30)])
    settle()
    [crossing] = alerts.all()  # the credit is spent: one crossing, one message
    assert (crossing["type"], crossing["properties"]["value"]) == ("alerts.low_credit_balance_reached", 0)

    def first_month():
        listed = sdk.v1.customers.invoices.list(customer_id=customer).data
        usage_ = [i for i in listed if i.type == "USAGE" and i.start_timestamp == start and i.status != "VOID"]
        scheduled = [i for i in listed if i.type == "SCHEDULED" and i.start_timestamp == start]
        return usage_, scheduled

    [draft], [purchase] = first_month()
    assert (draft.status, draft.total, purchase.total) == ("DRAFT", 50, 200)

    close_periods(api)
    [finalized], [purchase] = first_month()
    assert (finalized.status, finalized.total, finalized.id) == ("FINALIZED", 50, draft.id)
    assert purchase.status == "FINALIZED"
    announced = [m for m in invoices.all() if m["type"] == "invoice.finalized"]
    assert sorted(m["properties"]["invoice_id"] if "invoice_id" in m["properties"] else m["properties"]["id"]
                  for m in announced) == sorted([finalized.id, purchase.id])
    # The drawdowns are permanent now: the finalized balance is what is left after them.
    assert sdk.v1.contracts.get_net_balance(customer_id=customer, invoice_inclusion_mode="FINALIZED").data.balance == 0

    close_periods(api)  # a second run changes nothing and announces nothing
    assert first_month()[0][0].model_dump() == finalized.model_dump()
    assert len([m for m in invoices.all() if m["type"] == "invoice.finalized"]) == 2

    # A late event counts in usage but leaves the finalized invoice alone.
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-late", tag, tag, start + 2 * HOUR)])
    settle()
    usage = sdk.v1.usage.list(starting_on=start, ending_before=start + DAY, window_size="DAY",
                              customer_ids=[customer], billable_metrics=[{"id": metric}]).data
    assert sum(row.value or 0 for row in usage) == 31
    assert first_month()[0][0].total == 50

    # Void gives the drawdowns back; regenerate bills the month again with current data:
    # 31 calls = 310, less the credit 50 and the commit 200 = 60.
    sdk.v1.invoices.void(id=finalized.id)
    assert sdk.v1.contracts.get_net_balance(customer_id=customer, invoice_inclusion_mode="FINALIZED").data.balance == 250
    regenerated = sdk.v1.invoices.regenerate(id=finalized.id).data.id
    [corrected], _ = first_month()
    assert (corrected.id, corrected.status, corrected.total) == (regenerated, "FINALIZED", 60)
