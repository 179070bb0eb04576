"""Backfill jobs: a queue-driven function with an alarmed DLQ, reading the events table by scan and
nothing else of it; the API may only send to its queue; the settle time outlasts an ingest."""

from __future__ import annotations

from tests.infra.conftest import referenced_ids

BACKFILL = "functions.backfill.handler.handler"
API = "functions.api.handler.handler"
INGEST = "functions.ingest.handler.handler"
AGGREGATE = "functions.aggregate.handler.handler"


def _table(synth, prefix: str) -> str:
    return synth.one("AWS::DynamoDB::Table", prefix)[0]


def _sqs_statements(synth, role: str) -> list[dict]:
    return [s for s in synth.statements_of(role) if any(a.startswith("sqs:") for a in s["Action"])]


def test_a_segment_failing_five_times_is_parked_in_an_alarmed_dlq(synth):
    queue_id, queue = synth.one("AWS::SQS::Queue", "BackfillQueue")
    dlq_id, dlq = synth.one("AWS::SQS::Queue", "BackfillDlq")
    assert queue["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                                                    "maxReceiveCount": 5}
    assert queue["Properties"]["VisibilityTimeout"] == 1800  # six times the function's 300 s
    assert queue["Properties"]["SqsManagedSseEnabled"] is True and dlq["Properties"]["SqsManagedSseEnabled"] is True
    _, alarm = synth.one("AWS::CloudWatch::Alarm", "BackfillDlqAlarm")
    assert alarm["Properties"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    function_id, _ = synth.function(BACKFILL)
    _, mapping = synth.one("AWS::Lambda::EventSourceMapping", "Backfill")
    assert mapping["Properties"]["FunctionName"] == {"Ref": function_id}
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_settle_time_outlasts_the_ingest_function_and_both_sides_know_it(synth):
    _, ingest = synth.function(INGEST)
    _, backfill = synth.function(BACKFILL)
    _, api = synth.function(API)
    settle = int(backfill["Properties"]["Environment"]["Variables"]["BACKFILL_SETTLE_SECONDS"])
    assert settle > ingest["Properties"]["Timeout"]
    assert api["Properties"]["Environment"]["Variables"]["BACKFILL_SETTLE_SECONDS"] == str(settle)
    assert settle <= 900  # SQS's longest delay


def test_the_backfill_role_scans_events_updates_counters_and_its_jobs_and_sends_only_to_its_queue(synth):
    role = synth.role_of(BACKFILL)
    assert synth.actions_on(role, _table(synth, "TablesEvents")) == {"dynamodb:Scan"}
    assert synth.actions_on(role, _table(synth, "TablesCounters")) == {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"}
    assert synth.actions_on(role, _table(synth, "TablesBilling")) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    queue_id, _ = synth.one("AWS::SQS::Queue", "BackfillQueue")
    sends = [s for s in _sqs_statements(synth, role) if "sqs:SendMessage" in s["Action"]]
    assert [referenced_ids(s["Resource"]) for s in sends] == [{queue_id}]


def test_the_api_may_send_to_the_backfill_queue_and_the_aggregator_only_activate_metrics(synth):
    queue_id, _ = synth.one("AWS::SQS::Queue", "BackfillQueue")
    api_sends = [s for s in _sqs_statements(synth, synth.role_of(API)) if referenced_ids(s["Resource"]) == {queue_id}]
    assert len(api_sends) == 1 and "sqs:ReceiveMessage" not in api_sends[0]["Action"]
    billing = _table(synth, "TablesBilling")
    (activation,) = [s for s in synth.statements_of(synth.role_of(AGGREGATE))
                     if billing in referenced_ids(s["Resource"]) and "dynamodb:UpdateItem" in s["Action"]]
    assert activation["Condition"]["ForAllValues:StringEquals"] == {
        "dynamodb:LeadingKeys": ["metrics"], "dynamodb:Attributes": ["pk", "sk", "activated_at"]}
