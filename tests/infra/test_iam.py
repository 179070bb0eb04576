"""Each function has its own role, and each role reaches only what its function uses."""

from __future__ import annotations

from tests.infra.conftest import referenced_ids

INGEST = "functions.ingest.handler.handler"
API = "functions.api.handler.handler"
AGGREGATE = "functions.aggregate.handler.handler"

WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
}
# Actions AWS authorises only on Resource "*"; each is acknowledged in cdk-nag with its reason.
RESOURCE_STAR_ALLOWED = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "dynamodb:ListStreams",
    # The state machine's execution logging and tracing (see tests/infra/test_cycle_close.py).
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


def _as_list(value):
    return value if isinstance(value, list) else [value]


def table(synth, prefix: str) -> str:
    return synth.one("AWS::DynamoDB::Table", prefix)[0]


def test_each_function_has_its_own_role_without_managed_policies(synth):
    roles = {synth.role_of(h) for h in (INGEST, API, AGGREGATE)}
    assert len(roles) == 3
    for role_id in roles:
        props = synth.resources[role_id]["Properties"]
        assert "ManagedPolicyArns" not in props
        assert props["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"
        }


def test_ingest_writes_events_and_reads_api_keys_and_archived_customer_ids_only(synth):
    role = synth.role_of(INGEST)
    assert synth.actions_on(role, table(synth, "TablesEvents")) == {
        "dynamodb:PutItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:BatchWriteItem",
    }
    assert synth.actions_on(role, table(synth, "TablesBilling")) == {"dynamodb:GetItem", "dynamodb:BatchGetItem"}
    assert synth.actions_on(role, table(synth, "TablesCounters")) == set()


def test_api_reads_and_writes_billing_and_counters_and_only_reads_events(synth):
    role = synth.role_of(API)
    billing = synth.actions_on(role, table(synth, "TablesBilling"))
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= billing
    assert synth.actions_on(role, table(synth, "TablesCounters")) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:BatchGetItem",
    }
    assert synth.actions_on(role, table(synth, "TablesEvents")) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    }


def test_api_may_query_exactly_the_gsi1_index(synth):
    role = synth.role_of(API)
    index_statements = [
        s for s in synth.statements_of(role) if "/index/" in str(s["Resource"])
    ]
    assert len(index_statements) == 1
    assert index_statements[0]["Action"] == ["dynamodb:Query"]
    assert index_statements[0]["Resource"]["Fn::Join"][1][-1] == "/index/gsi1"


def test_aggregator_updates_counters_and_cannot_write_events_or_billing(synth):
    role = synth.role_of(AGGREGATE)
    assert synth.actions_on(role, table(synth, "TablesCounters")) == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }
    assert synth.actions_on(role, table(synth, "TablesBilling")) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",  # only the activation of a metric met pending, conditioned below
    }
    # On the events table the aggregator only reads the stream.
    assert synth.actions_on(role, table(synth, "TablesEvents")) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    for statement in synth.statements_of(role):
        if referenced_ids(statement["Resource"]) & {
            table(synth, "TablesEvents"),
            table(synth, "TablesBilling"),
        }:
            if statement.get("Condition", {}).get("ForAllValues:StringEquals", {}).get("dynamodb:Attributes") == [
                "pk", "sk", "activated_at"
            ]:  # infra/constructs/backfill.py grant_activation
                assert _as_list(statement["Action"]) == ["dynamodb:UpdateItem"]
                continue
            assert not WRITES & set(_as_list(statement["Action"]))


def test_aggregator_may_send_only_to_its_dlq(synth):
    role = synth.role_of(AGGREGATE)
    dlq_id, _ = synth.one("AWS::SQS::Queue", "AggregatorDlq")
    sqs_statements = [
        s for s in synth.statements_of(role) if any(a.startswith("sqs:") for a in s["Action"])
    ]
    assert len(sqs_statements) == 1
    assert "sqs:SendMessage" in sqs_statements[0]["Action"]
    assert referenced_ids(sqs_statements[0]["Resource"]) == {dlq_id}


def test_no_statement_grants_wildcard_actions_or_star_resources_beyond_what_aws_requires(synth):
    for policy_id in synth.of_type("AWS::IAM::Policy"):
        for statement in synth.resources[policy_id]["Properties"]["PolicyDocument"]["Statement"]:
            actions = _as_list(statement["Action"])
            assert statement["Effect"] == "Allow"
            assert not any(a == "*" or a.endswith(":*") for a in actions), (policy_id, actions)
            resources = _as_list(statement["Resource"])
            if "*" in resources:
                assert set(actions) <= RESOURCE_STAR_ALLOWED, (policy_id, actions)
            assert not any(isinstance(r, str) and r != "*" and "*" in r for r in resources)
