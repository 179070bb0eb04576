"""The aggregator's stream mapping, its dead-letter queue, and the alarm on that queue."""

from __future__ import annotations

import json

import pytest

AGGREGATE = "functions.aggregate.handler.handler"


@pytest.fixture(scope="module")
def mapping(synth):
    _, esm = synth.one("AWS::Lambda::EventSourceMapping", "Aggregator")
    return esm["Properties"]


def test_mapping_reads_the_events_stream_into_the_aggregator(synth, mapping):
    function_id, _ = synth.function(AGGREGATE)
    events_id, _ = synth.one("AWS::DynamoDB::Table", "TablesEvents")
    assert mapping["FunctionName"] == {"Ref": function_id}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [events_id, "StreamArn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"


def test_mapping_batches_retries_and_reports_partial_failures(mapping):
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == 10, "a full events table's shards fill 100 in about 10 s"
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == 8
    assert mapping["MaximumRecordAgeInSeconds"] == 24 * 3600


def test_one_batch_at_a_time_per_shard_so_the_sequence_high_water_mark_holds(mapping):
    assert mapping["ParallelizationFactor"] == 1


def test_failed_records_go_to_the_dlq(synth, mapping):
    dlq_id, _ = synth.one("AWS::SQS::Queue", "AggregatorDlq")
    on_failure = mapping["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Destination": {"Fn::GetAtt": [dlq_id, "Arn"]}}


def test_only_first_receipt_inserts_reach_the_aggregator(mapping):
    (only,) = mapping["FilterCriteria"]["Filters"]
    assert json.loads(only["Pattern"]) == {
        "eventName": ["INSERT"],
        "dynamodb": {"Keys": {"sk": {"S": ["event"]}}},
    }


def test_dlq_is_encrypted_keeps_messages_14_days_and_refuses_plain_http(synth):
    dlq_id, dlq = synth.one("AWS::SQS::Queue", "AggregatorDlq")
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    _, policy = synth.one("AWS::SQS::QueuePolicy", "AggregatorDlq")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert policy["Properties"]["Queues"] == [{"Ref": dlq_id}]


def test_alarm_fires_on_the_first_message_in_the_dlq(synth):
    dlq_id, _ = synth.one("AWS::SQS::Queue", "AggregatorDlq")
    _, alarm = synth.one("AWS::CloudWatch::Alarm", "AggregatorDlqAlarm")
    props = alarm["Properties"]
    assert props["Namespace"] == "AWS/SQS"
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    queue_name = {"Fn::GetAtt": [dlq_id, "QueueName"]}
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["Threshold"] == 1
    assert props["EvaluationPeriods"] == 1
