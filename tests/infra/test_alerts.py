"""The alerts function: its mapping on the counters stream, its DLQ, and a role that reaches only
what evaluating and publishing need."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import referenced_ids

ALERTS = "functions.alerts.handler.handler"
API = "functions.api.handler.handler"


@pytest.fixture(scope="module")
def mapping(synth):
    _, esm = synth.one("AWS::Lambda::EventSourceMapping", "Alerts")
    return esm["Properties"]


def table(synth, prefix: str) -> str:
    return synth.one("AWS::DynamoDB::Table", prefix)[0]


def test_mapping_reads_the_counters_stream_into_the_alerts_function(synth, mapping):
    function_id, _ = synth.function(ALERTS)
    assert mapping["FunctionName"] == {"Ref": function_id}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [table(synth, "TablesCounters"), "StreamArn"]}
    _, counters = synth.one("AWS::DynamoDB::Table", "TablesCounters")
    assert counters["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_mapping_batches_bisects_reports_partial_failures_and_dead_letters(synth, mapping):
    assert mapping["BatchSize"] == 100
    assert "MaximumBatchingWindowInSeconds" not in mapping  # no wait: alerts within seconds
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == 8
    dlq_id, dlq = synth.one("AWS::SQS::Queue", "AlertsDlq")
    assert mapping["DestinationConfig"]["OnFailure"] == {"Destination": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True
    (only,) = mapping["FilterCriteria"]["Filters"]
    assert json.loads(only["Pattern"]) == {"eventName": ["INSERT", "MODIFY"]}


def test_alerts_role_reads_what_evaluation_needs_and_writes_only_alert_state(synth):
    role = synth.role_of(ALERTS)
    # the table (read only) and its stream (the event source mapping's reads)
    assert synth.actions_on(role, table(synth, "TablesCounters")) == {
        "dynamodb:GetItem", "dynamodb:Query",
        "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
    }
    billing = synth.actions_on(role, table(synth, "TablesBilling"))
    assert billing == {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert "dynamodb:DeleteItem" not in billing and "dynamodb:BatchWriteItem" not in billing
    assert synth.actions_on(role, table(synth, "TablesEvents")) == set()


def _statements_on(synth, role: str, logical_id: str) -> list[dict]:
    return [s for s in synth.statements_of(role) if logical_id in referenced_ids(s["Resource"])]


# The API also announces the invoices it regenerates (tests/infra/test_cycle_close.py).
@pytest.mark.parametrize("handler, on_invoices", [(ALERTS, set()), (API, {"sns:Publish"})], ids=["alerts", "api"])
def test_publishers_may_publish_to_the_alerts_topic_only_and_use_the_topics_key_only(synth, handler, on_invoices):
    role = synth.role_of(handler)
    alerts_topic, _ = synth.one("AWS::SNS::Topic", "TopicsAlerts")
    invoices_topic, _ = synth.one("AWS::SNS::Topic", "TopicsInvoices")
    key, _ = synth.one("AWS::KMS::Key", "TopicsKey")
    assert synth.actions_on(role, alerts_topic) == {"sns:Publish"}
    assert synth.actions_on(role, invoices_topic) == on_invoices
    assert synth.actions_on(role, key) == {"kms:GenerateDataKey", "kms:Decrypt"}
    sns_actions = {a for s in synth.statements_of(role) for a in s["Action"] if a.startswith(("sns:", "kms:"))}
    assert sns_actions == {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"}


def test_the_api_may_start_exactly_the_alerts_function(synth):
    role = synth.role_of(API)
    alerts_function, _ = synth.function(ALERTS)
    invoke = [s for s in synth.statements_of(role) if any(a.startswith("lambda:") for a in s["Action"])]
    assert len(invoke) == 1
    assert invoke[0]["Action"] == ["lambda:InvokeFunction"]
    assert referenced_ids(invoke[0]["Resource"]) == {alerts_function}
    _, api = synth.function(API)
    env = api["Properties"]["Environment"]["Variables"]
    assert env["ALERTS_FUNCTION_NAME"] == {"Ref": alerts_function}
    assert env["ALERTS_TOPIC_ARN"] == {"Ref": synth.one("AWS::SNS::Topic", "TopicsAlerts")[0]}


def test_an_all_customer_evaluation_that_still_fails_after_two_retries_lands_in_the_dlq(synth):
    function_id, _ = synth.function(ALERTS)
    _, config = synth.one("AWS::Lambda::EventInvokeConfig", "Alerts")
    props = config["Properties"]
    assert props["FunctionName"] == {"Ref": function_id}
    assert props["MaximumRetryAttempts"] == 2
    assert props["MaximumEventAgeInSeconds"] == 6 * 3600
    dlq_id, _ = synth.one("AWS::SQS::Queue", "AlertsDlq")
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [dlq_id, "Arn"]}}}
    # The function's role sends the failure record itself, to that queue only.
    assert "sqs:SendMessage" in synth.actions_on(synth.role_of(ALERTS), dlq_id)
