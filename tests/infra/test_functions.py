"""The three functions: runtime, handler, sizing, tracing, logs, layer and environment."""

from __future__ import annotations

import pytest

INGEST = "functions.ingest.handler.handler"
API = "functions.api.handler.handler"
AGGREGATE = "functions.aggregate.handler.handler"
ALERTS = "functions.alerts.handler.handler"
# Besides tables, a function may name the SNS topic it publishes to and the function it starts.
# Checked where they are granted (test_alerts.py, test_cycle_close.py).
OTHER_ENV = {"api": {"ALERTS_TOPIC_ARN", "ALERTS_FUNCTION_NAME", "INVOICES_TOPIC_ARN", "BILLING_PROVIDER_SECRETS_PREFIX", "TALLY_API_URL",
                     "PAGE_SIGNING_SECRET_ARN",
                     "BACKFILL_QUEUE_URL", "BACKFILL_SETTLE_SECONDS", "BACKFILL_SEGMENTS"},  # test_backfill.py
             "alerts": {"ALERTS_TOPIC_ARN"}}

FUNCTIONS = {
    "ingest: 10 s, 512 MB, events and billing tables": (
        INGEST,
        10,
        512,
        "tally-ingest",
        {"EVENTS_TABLE": "TablesEvents", "BILLING_TABLE": "TablesBilling"},
    ),
    "api: 29 s, 1024 MB, all three tables": (
        API,
        29,
        1024,
        "tally-api",
        {
            "EVENTS_TABLE": "TablesEvents",
            "COUNTERS_TABLE": "TablesCounters",
            "BILLING_TABLE": "TablesBilling",
        },
    ),
    "aggregate: 60 s, 512 MB, counters and billing tables": (
        AGGREGATE,
        60,
        512,
        "tally-aggregate",
        {"COUNTERS_TABLE": "TablesCounters", "BILLING_TABLE": "TablesBilling"},
    ),
    "alerts: 60 s, 512 MB, counters and billing tables": (
        ALERTS,
        60,
        512,
        "tally-alerts",
        {"COUNTERS_TABLE": "TablesCounters", "BILLING_TABLE": "TablesBilling"},
    ),
}


@pytest.mark.parametrize(
    ("handler", "timeout", "memory", "service", "tables"), FUNCTIONS.values(), ids=FUNCTIONS.keys()
)
def test_function_configuration(synth, handler, timeout, memory, service, tables):
    _, function = synth.function(handler)
    props = function["Properties"]

    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["x86_64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] == timeout
    assert props["MemorySize"] == memory
    assert "FunctionName" not in props

    env = props["Environment"]["Variables"]
    other = OTHER_ENV.get(service.removeprefix("tally-"), set())
    assert {k: v for k, v in env.items() if not k.endswith("_TABLE") and k not in other} == {
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": "Tally",
        "LOG_LEVEL": "INFO",
    }
    table_env = {k: v for k, v in env.items() if k.endswith("_TABLE")}
    assert set(table_env) == set(tables), "a function gets only the tables it uses"
    for name, table_prefix in tables.items():
        table_id, _ = synth.one("AWS::DynamoDB::Table", table_prefix)
        assert table_env[name] == {"Ref": table_id}


@pytest.mark.parametrize("handler", [INGEST, API, AGGREGATE, ALERTS])
def test_function_logs_to_its_own_log_group_with_retention(synth, handler):
    _, function = synth.function(handler)
    log_group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = synth.resources[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize("handler", [INGEST, API, AGGREGATE, ALERTS])
def test_function_uses_the_regional_powertools_v3_layer(synth, handler):
    _, function = synth.function(handler)
    (layer,) = function["Properties"]["Layers"]
    parts = layer["Fn::Join"][1]
    assert {"Ref": "AWS::Region"} in parts
    assert parts[-1] == ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-x86_64:18"


def test_all_functions_share_one_code_asset(synth):
    keys = {
        f["Properties"]["Code"]["S3Key"] for f in synth.of_type("AWS::Lambda::Function").values()
    }
    assert len(keys) == 1
    # ingest, api, aggregate, alerts, the four cycle-close tasks (tests/infra/test_cycle_close.py)
    # and invoice delivery (tests/infra/test_invoice_delivery.py)
    assert len(synth.of_type("AWS::Lambda::Function")) == 10
