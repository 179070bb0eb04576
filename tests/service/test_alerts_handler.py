"""The alerts function on its sample event (events/dynamodb/counters_stream_modify.json): moto
tables, a moto SNS topic and an SQS subscription, the real wiring and the real publisher."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from tally.adapters.dynamo.counter_stream import counter_changes, counter_identity
from tally.billing.counters import CounterRow, event_counters, part_values
from tally.billing.metrics import Aggregation, BillableMetric

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "dynamodb" / "counters_stream_modify.json"


def sample() -> dict:
    return json.loads(SAMPLE.read_text())


class LambdaContext:
    function_name = "alerts"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:alerts"
    aws_request_id = "sample"


def test_a_counter_key_names_its_metric_and_ingest_key_even_when_the_key_holds_the_separator():
    assert counter_identity("m#met-1#k#acme") == ("met-1", "acme")
    assert counter_identity("m#met-1#k#team#k#a") == ("met-1", "team#k#a")
    with pytest.raises(ValueError):
        counter_identity("txn#sample-tx-1")


def test_the_sample_batch_is_one_ingest_key_of_one_metric_first_seen_at_its_first_record():
    changes = counter_changes(sample()["Records"])
    assert changes.metrics_by_key == {"acme": {"sample-metric"}}
    assert changes.first_sequence == {"acme": "222200000000000000000001"}
    assert changes.unreadable_at is None


def test_a_quarantined_pair_written_to_the_counters_table_holds_back_no_other_customers_alerts():
    # The aggregator quarantines into the counters table (`q#<metric>`), so its writes are on the
    # stream the alerts read: they are not counters, and the records after them still count.
    from tally.adapters.dynamo.counters import quarantine_update
    from tally.billing.events import UsageEvent
    from tally.billing.quarantine import QuarantinedPair

    event = UsageEvent("tx-1", "acme", "call", datetime(2026, 12, 1, tzinfo=timezone.utc), {})
    quarantined = quarantine_update(QuarantinedPair("met", event, ("D20261201",), "too big", "1"))["Key"]

    def record(sequence: str, keys: dict) -> dict:
        return {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": sequence, "Keys": keys}}

    changes = counter_changes([
        record("1", {"pk": {"S": "m#met#k#acme"}, "sk": {"S": "D20261201#[]~1"}}),
        record("2", quarantined),
        record("3", {"pk": {"S": "m#met#k#globex"}, "sk": {"S": "D20261201#[]~2"}}),
    ])

    assert changes.unreadable_at is None
    assert changes.metrics_by_key == {"acme": {"met"}, "globex": {"met"}}
    # a counter key that cannot be read still stops the batch there, to be retried
    broken = counter_changes([record("4", {"pk": {"S": "m#met-without-key"}, "sk": {"S": "x"}})])
    assert broken.unreadable_at == "4"


@pytest.fixture()
def deployed(dynamo, monkeypatch):
    from tally import wiring

    sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="alerts-sample")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-sample-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    for name, value in (("COUNTERS_TABLE", dynamo["counters"]), ("BILLING_TABLE", dynamo["billing"]),
                        ("ALERTS_TOPIC_ARN", topic), ("POWERTOOLS_METRICS_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    wiring.reset()
    yield sqs, queue
    wiring.reset()


def test_the_sample_crosses_a_usage_alert_once_and_its_redelivery_publishes_nothing(deployed):
    from functions.alerts.handler import handler
    from tally import wiring

    sqs, queue = deployed
    wiring.metric_store().put(BillableMetric("sample-metric", "tokens", Aggregation.SUM, "tokens", None, (), (("region",),)))
    customer = wiring.customer_service().create("Acme", ["acme"], None, {})
    counters = event_counters(Aggregation.SUM, datetime.now(timezone.utc))  # today's day and month counters
    wiring.counter_store().put_rows(
        "sample-metric", "acme",
        [CounterRow(bucket, ("eu",), Decimal("6.5"), parts=part_values(bucket, {part: Decimal("6.5")})) for bucket, part in counters],
    )
    alert = wiring.alert_service().create(
        name="6 tokens", alert_type="usage_threshold_reached", threshold=6, customer_id=customer.id,
        billable_metric_id="sample-metric", evaluate_on_create=False,
    )

    assert handler(sample(), LambdaContext()) == {"batchItemFailures": []}
    assert handler(sample(), LambdaContext()) == {"batchItemFailures": []}  # the stream's redelivery

    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    (message,) = received
    body = json.loads(message["Body"])
    assert body["id"] == f"{alert.id}:{customer.id}:1"
    assert (body["type"], body["properties"]["value"]) == ("alerts.usage_threshold_reached", 6.5)
    assert message["MessageAttributes"]["customer_id"]["StringValue"] == customer.id
