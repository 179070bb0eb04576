"""Cycle close: the close-billing-periods state machine, its schedule, its DLQ and its permissions."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import referenced_ids

HANDLERS = {
    "FindDuePeriods": "functions.close_periods.handler.find_due_periods",
    "FinalizePeriod": "functions.close_periods.handler.finalize_period",
    "PublishInvoices": "functions.close_periods.handler.publish_invoices",
    "DeliverNotifications": "functions.close_periods.handler.deliver_notifications",
}
RETRYABLE = ["StoreUnavailable", "FinalizationRaced", "Lambda.TooManyRequestsException", "Sandbox.Timedout"]


def _placeholder(value) -> str:
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    logical, attribute = value["Fn::GetAtt"]
    return f"<{logical}.{attribute}>"


def definition_of(machine: dict) -> dict:
    """The ASL definition, each CloudFormation reference as `<LogicalId>` or `<LogicalId.Attr>`."""
    body = machine["Properties"]["DefinitionString"]
    return json.loads("".join(_placeholder(part) for part in body["Fn::Join"][1]))


@pytest.fixture(scope="module")
def machine(synth):
    return synth.one("AWS::StepFunctions::StateMachine", "CycleCloseStateMachine")


@pytest.fixture(scope="module")
def states(machine):
    return definition_of(machine[1])["States"]


@pytest.fixture(scope="module")
def per_period(states):
    return states["ClosePeriods"]["ItemProcessor"]["States"]


def function_id(synth, state: str) -> str:
    return synth.function(HANDLERS[state])[0]


def retriers(state: dict) -> dict[tuple[str, ...], dict]:
    return {tuple(r["ErrorEquals"]): r for r in state.get("Retry", [])}


def test_the_machine_is_named_close_billing_periods_after_its_stack(machine):
    assert machine[1]["Properties"]["StateMachineName"] == "Tally-close-billing-periods"


def test_the_workflow_pages_through_due_periods_and_maps_over_each_page(states):
    assert set(states) == {
        "FindDuePeriods", "DeadLetterContracts", "AnyPeriodsDue", "ClosePeriods",
        "DeliverNotifications", "MoreNotificationsDue", "Closed", "ContinueAsNew", "ContinuedAsNew",
    }
    assert states["FindDuePeriods"]["Next"] == "DeadLetterContracts"
    assert states["DeadLetterContracts"]["Next"] == "AnyPeriodsDue"
    (carry_on, more) = states["AnyPeriodsDue"]["Choices"]
    assert carry_on == {"Variable": "$.progress.continue_as", "IsString": True, "Next": "ContinueAsNew"}
    # A page with no period may still have more after it (`more`); only the last one ends the loop.
    assert more == {"Variable": "$.progress.more", "BooleanEquals": True, "Next": "ClosePeriods"}
    assert states["AnyPeriodsDue"]["Default"] == "DeliverNotifications"
    assert states["ClosePeriods"]["Next"] == "FindDuePeriods"  # the next page
    assert states["Closed"] == {"Type": "Pass", "OutputPath": "$.progress.summary", "End": True}


def test_notifications_are_delivered_after_the_close_a_page_at_a_time_and_never_fail_the_run(synth, states):
    notify = states["DeliverNotifications"]
    assert notify["Resource"] == f"<{function_id(synth, 'DeliverNotifications')}.Arn>"
    assert notify["Parameters"] == {"time.$": "$.time"}
    assert notify["ResultPath"] == "$.notifications"
    assert notify["Next"] == "MoreNotificationsDue"
    assert tuple(RETRYABLE) in retriers(notify)
    assert [(c["ErrorEquals"], c["Next"]) for c in notify["Catch"]] == [(["States.ALL"], "Closed")]
    (more,) = states["MoreNotificationsDue"]["Choices"]
    assert more == {"Variable": "$.notifications.more", "BooleanEquals": True, "Next": "DeliverNotifications"}
    assert states["MoreNotificationsDue"]["Default"] == "Closed"


def test_delivering_notifications_touches_billing_and_publishes_on_the_alerts_topic_only(synth):
    role = synth.role_of(HANDLERS["DeliverNotifications"])
    assert synth.actions_on(role, table(synth, "TablesBilling")) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",  # a delivery's claim
        "dynamodb:UpdateItem",  # marks it, moves the watermark
        "dynamodb:DeleteItem",  # releases a claim whose publish failed
    }
    assert synth.actions_on(role, table(synth, "TablesCounters")) == set()
    assert synth.actions_on(role, table(synth, "TablesEvents")) == set()
    alerts, _ = synth.one("AWS::SNS::Topic", "TopicsAlerts")
    sns = [s for s in synth.statements_of(role) if any(a.startswith("sns:") for a in s["Action"])]
    assert [(s["Action"], referenced_ids(s["Resource"])) for s in sns] == [(["sns:Publish"], {alerts})]


def test_the_definition_is_jsonpath_only(machine):
    # moto stubs JSONata, and the local runtime runs this very definition.
    assert "QueryLanguage" not in machine[1]["Properties"]["DefinitionString"]["Fn::Join"][1][0]
    assert "JSONata" not in json.dumps(machine[1]["Properties"])


def test_the_map_fans_out_with_bounded_concurrency(states):
    close = states["ClosePeriods"]
    assert close["Type"] == "Map"
    assert close["MaxConcurrency"] == 5
    assert close["ItemsPath"] == "$.progress.periods"
    assert close["ItemSelector"] == {"as_of.$": "$.progress.as_of", "period.$": "$$.Map.Item.Value"}
    assert close["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}


def test_each_period_is_finalized_then_published(per_period):
    assert set(per_period) == {
        "FinalizePeriod",
        "PublishInvoices",
        "PeriodClosed",
        "DeadLetterPeriod",
        "PeriodDeadLettered",
    }
    assert per_period["FinalizePeriod"]["Next"] == "PublishInvoices"
    assert per_period["PublishInvoices"]["Next"] == "PeriodClosed"
    assert per_period["PublishInvoices"]["Parameters"] == {"invoice_ids.$": "$.finalized.invoice_ids"}
    assert per_period["DeadLetterPeriod"]["Next"] == "PeriodDeadLettered"


@pytest.mark.parametrize("state", ["FindDuePeriods", "FinalizePeriod", "PublishInvoices"])
def test_lambda_tasks_invoke_their_own_function(synth, states, per_period, state):
    task = {**states, **per_period}[state]
    assert task["Resource"] == f"<{function_id(synth, state)}.Arn>"


@pytest.mark.parametrize("state", ["FindDuePeriods", "FinalizePeriod", "PublishInvoices"])
def test_tasks_retry_named_transient_errors_with_jittered_backoff(states, per_period, state):
    task = {**states, **per_period}[state]
    named = retriers(task)[tuple(RETRYABLE)]
    assert named == {
        "ErrorEquals": RETRYABLE,
        "IntervalSeconds": 2,
        "MaxAttempts": 5,
        "BackoffRate": 2,
        "MaxDelaySeconds": 60,
        "JitterStrategy": "FULL",
    }
    service = retriers(task)[
        ("Lambda.ClientExecutionTimeoutException", "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException")
    ]
    assert service["MaxAttempts"] == 6
    # Nothing retries everything: a bad event or a domain error is not transient.
    for retrier in task["Retry"]:
        assert not {"States.ALL", "InvalidScheduledEvent", "InvalidTaskInput"} & set(retrier["ErrorEquals"])


def test_a_bad_scheduled_event_fails_the_execution(states):
    # No Catch: InvalidScheduledEvent (or anything else) from FindDuePeriods ends the run FAILED,
    # before any period is touched.
    assert "Catch" not in states["FindDuePeriods"]


@pytest.mark.parametrize("state", ["FinalizePeriod", "PublishInvoices"])
def test_a_failed_period_is_dead_lettered_and_the_map_goes_on(per_period, state):
    assert per_period[state]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "DeadLetterPeriod"}
    ]
    assert per_period["PeriodDeadLettered"]["End"] is True
    assert per_period["PeriodDeadLettered"]["Parameters"]["status"] == "DEAD_LETTERED"


def test_the_dead_letter_message_names_the_period_the_error_and_the_execution(synth, per_period):
    dlq_id, _ = synth.one("AWS::SQS::Queue", "CycleCloseDlq")
    send = per_period["DeadLetterPeriod"]
    assert send["Resource"] == "arn:<AWS::Partition>:states:::sqs:sendMessage"
    assert send["Parameters"] == {
        "QueueUrl": f"<{dlq_id}>",
        "MessageBody": {
            "as_of.$": "$.as_of",
            "period.$": "$.period",
            "error.$": "$.error",
            "execution.$": "$$.Execution.Id",
        },
    }
    assert send["ResultPath"] is None
    assert retriers(send)[("States.TaskFailed",)]["MaxAttempts"] == 3


def test_each_contract_find_due_skipped_is_dead_lettered_by_name_and_the_run_goes_on(synth, states):
    skipped = states["DeadLetterContracts"]
    assert skipped["Type"] == "Map"
    assert skipped["ItemsPath"] == "$.progress.skipped"
    assert skipped["ItemSelector"] == {"as_of.$": "$.progress.as_of", "skipped.$": "$$.Map.Item.Value"}
    assert skipped["ResultPath"] is None  # the run's state is unchanged: AnyPeriodsDue reads $.progress
    (only,) = skipped["ItemProcessor"]["States"].values()
    dlq_id, _ = synth.one("AWS::SQS::Queue", "CycleCloseDlq")
    assert only["Resource"] == "arn:<AWS::Partition>:states:::sqs:sendMessage"
    assert only["Parameters"] == {
        "QueueUrl": f"<{dlq_id}>",
        "MessageBody": {
            "as_of.$": "$.as_of",
            "contract": {"customer_id.$": "$.skipped.customer_id", "contract_id.$": "$.skipped.contract_id"},
            "error": {"Error.$": "$.skipped.error", "Cause.$": "$.skipped.cause"},
            "execution.$": "$$.Execution.Id",
        },
    }
    assert only["ResultPath"] is None and only["End"] is True
    assert retriers(only)[("States.TaskFailed",)]["MaxAttempts"] == 3


def test_the_machine_logs_every_event_and_traces(synth, machine):
    props = machine[1]["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    (destination,) = logging["Destinations"]
    (log_group_id,) = referenced_ids(destination)
    assert synth.resources[log_group_id]["Properties"]["RetentionInDays"] == 30
    assert definition_of(machine[1])["TimeoutSeconds"] == 3600


def test_an_hourly_rule_sends_the_scheduled_event_itself_to_the_machine(synth, machine):
    _, rule = synth.one("AWS::Events::Rule", "CycleCloseSchedule")
    props = rule["Properties"]
    assert props["ScheduleExpression"] == "rate(1 hour)"
    assert props["State"] == "ENABLED"
    (target,) = props["Targets"]
    assert target["Arn"] == {"Ref": machine[0]}
    # No Input/InputPath: the target receives the event, whose `time` is the "as of" instant.
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)
    (role_id,) = referenced_ids(target["RoleArn"])
    assert synth.statements_of(role_id) == [
        {"Action": ["states:StartExecution"], "Effect": "Allow", "Resource": {"Ref": machine[0]}}
    ]


def test_the_dlq_is_encrypted_tls_only_and_alarmed(synth):
    dlq_id, dlq = synth.one("AWS::SQS::Queue", "CycleCloseDlq")
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    _, policy = synth.one("AWS::SQS::QueuePolicy", "CycleCloseDlq")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    _, alarm = synth.one("AWS::CloudWatch::Alarm", "CycleCloseDlqAlarm")
    props = alarm["Properties"]
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    assert props["Threshold"] == 1
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize("state", list(HANDLERS))
def test_task_functions_are_traced_python_313_with_their_own_logs(synth, state):
    _, function = synth.function(HANDLERS[state])
    props = function["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["TracingConfig"] == {"Mode": "Active"}
    log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert synth.resources[log_group_id]["Properties"]["RetentionInDays"] == 30


def test_the_grace_period_reaches_the_functions_that_decide_what_is_due(synth):
    grace = {
        state: synth.function(handler)[1]["Properties"]["Environment"]["Variables"].get("TALLY_GRACE_PERIOD_HOURS")
        for state, handler in HANDLERS.items()
    }
    assert grace == {"FindDuePeriods": "24", "FinalizePeriod": "24", "PublishInvoices": None, "DeliverNotifications": None}


def test_context_sets_the_schedule_and_the_grace_period(tmp_path):
    from infra.app import STACK_ID, build_app

    context = {"cycle_close_schedule": "rate(15 minutes)", "grace_period_hours": "0"}
    template = build_app(str(tmp_path), context=context).synth().get_stack_by_name(STACK_ID).template
    resources = template["Resources"].values()
    (rule,) = [r for logical, r in template["Resources"].items()
               if r["Type"] == "AWS::Events::Rule" and logical.startswith("CycleCloseSchedule")]
    assert rule["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    for state in ("FindDuePeriods", "FinalizePeriod"):
        (function,) = [
            r for r in resources
            if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == HANDLERS[state]
        ]
        assert function["Properties"]["Environment"]["Variables"]["TALLY_GRACE_PERIOD_HOURS"] == "0"


# -- least privilege ---------------------------------------------------------------------------
def table(synth, prefix: str) -> str:
    return synth.one("AWS::DynamoDB::Table", prefix)[0]


def sns_and_kms(synth, role_id: str) -> set[str]:
    return {a for s in synth.statements_of(role_id) for a in s["Action"] if a.startswith(("sns:", "kms:"))}


def test_the_machine_may_invoke_its_three_functions_and_send_to_its_dlq_only(synth, machine):
    role_id = machine[1]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    dlq_id, _ = synth.one("AWS::SQS::Queue", "CycleCloseDlq")
    scoped = [s for s in synth.statements_of(role_id) if s["Resource"] != "*"]
    invoked = {
        logical
        for s in scoped
        if s["Action"] == ["lambda:InvokeFunction"]
        for logical in referenced_ids(s["Resource"])
    }
    assert invoked == {function_id(synth, state) for state in HANDLERS}
    others = [s for s in scoped if s["Action"] != ["lambda:InvokeFunction"]]
    assert sorted(others, key=json.dumps) == sorted([
        {"Action": ["states:StartExecution"], "Effect": "Allow", "Resource": ITSELF},  # ContinueAsNew, itself only
        {"Action": ["sqs:SendMessage"], "Effect": "Allow", "Resource": {"Fn::GetAtt": [dlq_id, "Arn"]}},
    ], key=json.dumps)
    unscoped = {a for s in synth.statements_of(role_id) if s["Resource"] == "*" for a in s["Action"]}
    assert all(a.startswith(("logs:", "xray:")) for a in unscoped)


def test_finding_due_periods_reads_billing_and_only_updates_its_wake_entries(synth):
    role = synth.role_of(HANDLERS["FindDuePeriods"])
    assert synth.actions_on(role, table(synth, "TablesBilling")) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",  # moves a wake entry (adapters/dynamo/close_index.py): no put, no delete
    }
    assert synth.actions_on(role, table(synth, "TablesCounters")) == set()
    assert synth.actions_on(role, table(synth, "TablesEvents")) == set()
    assert sns_and_kms(synth, role) == set()


def test_finalizing_writes_billing_and_only_reads_counters(synth):
    role = synth.role_of(HANDLERS["FinalizePeriod"])
    assert synth.actions_on(role, table(synth, "TablesBilling")) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        # one TransactWriteItems: conditional puts of the records, the counter's update
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
    }
    assert synth.actions_on(role, table(synth, "TablesCounters")) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
    }
    assert synth.actions_on(role, table(synth, "TablesEvents")) == set()
    # Finalizing moves balances, so it evaluates balance alerts and may publish their crossings:
    # to the alerts topic only, never the invoices one.
    assert sns_and_kms(synth, role) == {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"}
    alerts, _ = synth.one("AWS::SNS::Topic", "TopicsAlerts")
    sns = [s for s in synth.statements_of(role) if any(a.startswith("sns:") for a in s["Action"])]
    assert [(s["Action"], referenced_ids(s["Resource"])) for s in sns] == [(["sns:Publish"], {alerts})]


def test_publishing_may_publish_to_the_invoices_topic_only(synth):
    role = synth.role_of(HANDLERS["PublishInvoices"])
    invoices, _ = synth.one("AWS::SNS::Topic", "TopicsInvoices")
    key, _ = synth.one("AWS::KMS::Key", "TopicsKey")
    sns = [s for s in synth.statements_of(role) if any(a.startswith("sns:") for a in s["Action"])]
    assert [(s["Action"], referenced_ids(s["Resource"])) for s in sns] == [(["sns:Publish"], {invoices})]
    kms = [s for s in synth.statements_of(role) if any(a.startswith("kms:") for a in s["Action"])]
    assert all(referenced_ids(s["Resource"]) == {key} for s in kms)
    # reads the invoice, and claims and marks its publication
    assert synth.actions_on(role, table(synth, "TablesBilling")) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert synth.actions_on(role, table(synth, "TablesCounters")) == set()
    assert synth.actions_on(role, table(synth, "TablesEvents")) == set()


def test_the_machine_and_its_dlq_are_stack_outputs(synth, machine):
    outputs = synth.template["Outputs"]
    dlq_id, _ = synth.one("AWS::SQS::Queue", "CycleCloseDlq")
    assert outputs["CloseBillingPeriodsArn"]["Value"] == {"Ref": machine[0]}
    assert outputs["CycleCloseDlqUrl"]["Value"] == {"Ref": dlq_id}


def test_the_api_announces_the_invoices_it_regenerates_on_the_invoices_topic(synth):
    role = synth.role_of("functions.api.handler.handler")
    invoices, _ = synth.one("AWS::SNS::Topic", "TopicsInvoices")
    alerts, _ = synth.one("AWS::SNS::Topic", "TopicsAlerts")
    sns = [s for s in synth.statements_of(role) if any(a.startswith("sns:") for a in s["Action"])]
    assert sorted((s["Action"], sorted(referenced_ids(s["Resource"]))) for s in sns) == sorted(
        [(["sns:Publish"], [alerts]), (["sns:Publish"], [invoices])])
    _, api = synth.function("functions.api.handler.handler")
    assert api["Properties"]["Environment"]["Variables"]["INVOICES_TOPIC_ARN"] == {"Ref": invoices}


# The machine's own ARN, as Stack.format_arn builds it from the name (a Ref to the machine would be
# a circular dependency: its definition cannot name the resource it belongs to).
ITSELF = {
    "Fn::Join": [
        "",
        ["arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
         ":stateMachine:Tally-close-billing-periods"],
    ]
}


def test_after_its_pages_an_execution_continues_as_a_new_one_of_itself_and_ends(states):
    start = states["ContinueAsNew"]
    assert start["Resource"] == "arn:<AWS::Partition>:states:::states:startExecution"  # request-response
    assert start["Parameters"]["StateMachineArn"] == (
        "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:Tally-close-billing-periods"
    )
    # The name FindDuePeriods derived from the run and its pages: a retried start is a duplicate.
    assert start["Parameters"]["Name.$"] == "$.progress.continue_as"
    assert start["Parameters"]["Input"] == {
        "time.$": "$.time",
        "progress.$": "$.progress",
        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
    }
    (already,) = start["Catch"]
    assert already["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]
    assert already["Next"] == start["Next"] == "ContinuedAsNew"
    assert [r["ErrorEquals"] for r in start["Retry"]] == [["StepFunctions.ExecutionLimitExceededException"]]
    assert states["ContinuedAsNew"] == {
        "Type": "Pass",
        "Parameters": {"continued_as.$": "$.progress.continue_as", "summary.$": "$.progress.summary"},
        "End": True,
    }


def test_the_page_bound_comes_from_the_history_limit():
    from tally.billing import limits

    assert limits.CLOSE_PAGES_PER_EXECUTION >= 1
    worst = limits.CLOSE_PAGES_PER_EXECUTION * limits.CLOSE_EVENTS_PER_PAGE
    assert worst <= limits.SFN_EXECUTION_HISTORY_EVENTS // 2
