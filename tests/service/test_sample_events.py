"""The sample events in events/ are real shapes: the handlers and adapters accept them as they are."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tally.adapters.dynamo.stream import streamed_event

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture()
def deployed(dynamo, monkeypatch):
    """The ingest function's environment, pointed at the moto tables; wiring forgotten afterwards."""
    from tally import wiring

    monkeypatch.setenv("EVENTS_TABLE", dynamo["events"])
    monkeypatch.setenv("COUNTERS_TABLE", dynamo["counters"])
    monkeypatch.setenv("BILLING_TABLE", dynamo["billing"])
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    wiring.reset()
    wiring.api_keys().create("sample", "tally_sample_event_key")
    yield dynamo
    wiring.reset()


class LambdaContext:
    function_name = "ingest"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id = "sample"


def test_the_api_gateway_sample_is_ingested_and_stored_as_the_stream_sample_shows(deployed):
    from functions.ingest.handler import handler

    event = sample("apigateway/ingest_post.json")
    # the sample's event time is fixed; ingest refuses events older than 34 days, so move it to now
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event["body"] = event["body"].replace("2026-11-24T11:59:00Z", now)
    response = handler(event, LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    [item] = deployed["client"].scan(TableName=deployed["events"])["Items"]
    record = sample("dynamodb/events_stream_insert.json")["Records"][0]
    assert set(item) == set(record["dynamodb"]["NewImage"])  # the stream sample has the stored shape
    assert item["pk"] == record["dynamodb"]["Keys"]["pk"] and item["props"] == record["dynamodb"]["NewImage"]["props"]


def test_the_stream_sample_is_read_as_the_event_it_carries():
    event = streamed_event(sample("dynamodb/events_stream_insert.json")["Records"][0])
    assert event is not None
    assert (event.event.transaction_id, event.event.customer_id) == ("sample-tx-1", "acme")
    assert event.event.properties["tokens"] == Decimal("1200.5")  # exact, never a float


def test_the_scheduled_event_sample_is_what_eventbridge_sends_the_workflow():
    scheduled = sample("eventbridge/close_billing_periods_scheduled.json")
    assert scheduled["detail-type"] == "Scheduled Event" and scheduled["time"].endswith("Z")
