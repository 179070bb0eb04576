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
    assert synth.actions_on(role, _table(synth, "TablesBilling")) == {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"}  # Query: on the waiting index only (below)
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


def test_a_schedule_puts_the_sweep_on_the_backfill_queue_which_reads_only_the_waiting_index(synth):
    from infra.constructs.backfill import STUCK_MARGIN, SWEEP_EVERY, TIMEOUT
    from tally.billing.limits import BACKFILL_RUN_SECONDS

    queue_id, _ = synth.one("AWS::SQS::Queue", "BackfillQueue")
    dlq_id, _ = synth.one("AWS::SQS::Queue", "BackfillDlq")
    _, rule = synth.one("AWS::Events::Rule", "BackfillSweep")
    assert rule["Properties"]["ScheduleExpression"] == f"rate({int(SWEEP_EVERY.to_minutes())} minutes)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    # Only this rule may put events on the queue (the queue policy's condition names it).
    (policy,) = [p for p in synth.of_type("AWS::SQS::QueuePolicy").values() if {"Ref": queue_id} in p["Properties"]["Queues"]]
    events_statements = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                         if s.get("Principal", {}).get("Service") == "events.amazonaws.com"]
    assert len(events_statements) == 1 and "aws:SourceArn" in events_statements[0]["Condition"]["ArnEquals"]
    role = synth.role_of(BACKFILL)
    queries = [s for s in synth.statements_of(role) if "dynamodb:Query" in s["Action"]]
    assert len(queries) == 1 and queries[0]["Action"] == ["dynamodb:Query"]
    assert queries[0]["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [_table(synth, "TablesBilling"), "Arn"]}, "/index/gsi1"]]}
    _, backfill = synth.function(BACKFILL)
    _, api = synth.function(API)
    variables = backfill["Properties"]["Environment"]["Variables"]
    stuck_after = int(variables["BACKFILL_STUCK_AFTER_SECONDS"])  # no create outlives it, settle included
    assert stuck_after == api["Properties"]["Timeout"] + int(variables["BACKFILL_SETTLE_SECONDS"]) + STUCK_MARGIN.to_seconds()
    assert backfill["Properties"]["Timeout"] == TIMEOUT.to_seconds() == BACKFILL_RUN_SECONDS
