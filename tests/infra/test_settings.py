"""The scale settings (infra/settings.py): the template carries their defaults, and context values
given as `cdk -c` gives them change exactly what they name."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from infra.settings import SETTINGS, ScaleSettings
from tests.infra.conftest import CONTEXT_OVERRIDES

INGEST = "functions.ingest.handler.handler"
API = "functions.api.handler.handler"
AGGREGATE = "functions.aggregate.handler.handler"
ALERTS = "functions.alerts.handler.handler"
DELIVERY = "functions.deliver_invoices.handler.handler"
BACKFILL = "functions.backfill.handler.handler"
CLOSE = "functions.close_periods.handler."
MEMORY = {INGEST: "ingest_memory_mb", API: "api_memory_mb", AGGREGATE: "aggregate_memory_mb",
          ALERTS: "alerts_memory_mb", DELIVERY: "delivery_memory_mb", BACKFILL: "backfill_memory_mb",
          CLOSE + "find_due_periods": "find_due_memory_mb", CLOSE + "finalize_period": "finalize_memory_mb",
          CLOSE + "publish_invoices": "publish_memory_mb", CLOSE + "deliver_notifications": "notify_memory_mb"}


def _mapping(synth, prefix: str) -> dict:
    return synth.one("AWS::Lambda::EventSourceMapping", prefix)[1]["Properties"]


def _table(synth, prefix: str) -> dict:
    return synth.one("AWS::DynamoDB::Table", prefix)[1]["Properties"]


def test_every_setting_is_a_field_and_every_field_a_setting():
    assert [f.name for f in fields(ScaleSettings)] == [s.key for s in SETTINGS]
    assert len({s.key for s in SETTINGS}) == len(SETTINGS)


def test_the_template_carries_the_defaults(synth):
    defaults = ScaleSettings.defaults()
    for handler, key in MEMORY.items():
        props = synth.function(handler)[1]["Properties"]
        assert props["MemorySize"] == getattr(defaults, key), key
        assert "ReservedConcurrentExecutions" not in props, "no reserved concurrency unless asked"
    aggregate = _mapping(synth, "Aggregator")
    assert (aggregate["BatchSize"], aggregate["MaximumBatchingWindowInSeconds"], aggregate["ParallelizationFactor"]) == (
        defaults.aggregate_batch_size, defaults.aggregate_batching_window_s, 1)
    alerts = _mapping(synth, "Alerts")
    assert (alerts["BatchSize"], alerts["ParallelizationFactor"]) == (defaults.alerts_batch_size, 1)
    assert "MaximumBatchingWindowInSeconds" not in alerts, "alerts go out as soon as a counter changes"
    assert _mapping(synth, "InvoiceDelivery")["ScalingConfig"] == {"MaximumConcurrency": 10}
    (stage,) = synth.of_type("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 4000, "ThrottlingRateLimit": 2000}
    for prefix in ("TablesEvents", "TablesCounters", "TablesBilling"):
        props = _table(synth, prefix)
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert "ProvisionedThroughput" not in props and "OnDemandThroughput" not in props
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert not synth.of_type("AWS::ApplicationAutoScaling::ScalableTarget"), "on-demand tables need no auto scaling"


def test_context_overrides_change_what_they_name(synth_overridden):
    given = {key: value for key, value in CONTEXT_OVERRIDES.items() if key in {s.key for s in SETTINGS}}
    for handler, key in MEMORY.items():
        assert synth_overridden.function(handler)[1]["Properties"]["MemorySize"] == int(given[key]), key
    assert synth_overridden.function(INGEST)[1]["Properties"]["ReservedConcurrentExecutions"] == 200
    assert synth_overridden.function(API)[1]["Properties"]["ReservedConcurrentExecutions"] == 50
    assert "ReservedConcurrentExecutions" not in synth_overridden.function(AGGREGATE)[1]["Properties"]
    aggregate = _mapping(synth_overridden, "Aggregator")
    assert (aggregate["BatchSize"], aggregate["MaximumBatchingWindowInSeconds"], aggregate["ParallelizationFactor"]) == (
        1000, 5, 1)
    alerts = _mapping(synth_overridden, "Alerts")
    assert (alerts["BatchSize"], alerts["MaximumBatchingWindowInSeconds"], alerts["ParallelizationFactor"]) == (500, 2, 4)
    assert _mapping(synth_overridden, "InvoiceDelivery")["ScalingConfig"] == {"MaximumConcurrency": 3}
    (stage,) = synth_overridden.of_type("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 5000, "ThrottlingRateLimit": 5000}
    events = _table(synth_overridden, "TablesEvents")
    assert events.get("BillingMode", "PROVISIONED") == "PROVISIONED"  # CloudFormation's default, left out
    assert events["ProvisionedThroughput"] == {"ReadCapacityUnits": 20, "WriteCapacityUnits": 3000}
    billing = _table(synth_overridden, "TablesBilling")
    assert billing["ProvisionedThroughput"] == {"ReadCapacityUnits": 50, "WriteCapacityUnits": 10}
    assert all("ProvisionedThroughput" in index for index in billing["GlobalSecondaryIndexes"])
    counters = _table(synth_overridden, "TablesCounters")
    assert counters["BillingMode"] == "PAY_PER_REQUEST"
    assert counters["OnDemandThroughput"] == {"MaxWriteRequestUnits": 12000, "MaxReadRequestUnits": 8000}
    assert events["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}
    assert counters["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, "events only"


def _scaling(synth) -> dict[tuple[str, str], tuple[int, int, float]]:
    """(table's construct path, dimension) -> (least, most, target %) of each scalable target and its
    target-tracking policy."""
    targets = synth.of_type("AWS::ApplicationAutoScaling::ScalableTarget")
    policies = synth.of_type("AWS::ApplicationAutoScaling::ScalingPolicy")
    found = {}
    for logical_id, target in targets.items():
        props = target["Properties"]
        (policy,) = [p["Properties"] for p in policies.values()
                     if p["Properties"]["ScalingTargetId"] == {"Ref": logical_id}]
        tracking = policy["TargetTrackingScalingPolicyConfiguration"]
        resource = json.dumps(props["ResourceId"])
        table = next(name for name in ("TablesEvents", "TablesCounters", "TablesBilling") if name in resource)
        index = next((name for name in ("gsi1", "gsi2") if f"/index/{name}" in resource), "table")
        found[(table, index, props["ScalableDimension"].rsplit(":", 1)[1])] = (
            props["MinCapacity"], props["MaxCapacity"], tracking["TargetValue"])
        assert props["ServiceNamespace"] == "dynamodb"
        metric = "DynamoDBReadCapacityUtilization" if "Read" in props["ScalableDimension"] else \
            "DynamoDBWriteCapacityUtilization"
        assert tracking["PredefinedMetricSpecification"] == {"PredefinedMetricType": metric}
    return found


def test_provisioned_tables_and_their_indexes_scale_between_the_least_and_most_units_at_the_target(synth_overridden):
    scaling = _scaling(synth_overridden)
    assert scaling == {
        # events: reads 20 up to the table quota, writes 3,000 up to the 30,000 asked for, at 60 %
        ("TablesEvents", "table", "ReadCapacityUnits"): (20, 40_000, 60),
        ("TablesEvents", "table", "WriteCapacityUnits"): (3_000, 30_000, 60),
        # billing: reads fixed at 50 (least = most), writes 10 up to the quota, the table and both indexes
        ("TablesBilling", "table", "WriteCapacityUnits"): (10, 40_000, 60),
        ("TablesBilling", "gsi1", "WriteCapacityUnits"): (10, 40_000, 60),
        ("TablesBilling", "gsi2", "WriteCapacityUnits"): (10, 40_000, 60),
    }, "the counters table is on-demand: no scaling"
    billing = _table(synth_overridden, "TablesBilling")
    assert [index["ProvisionedThroughput"] for index in billing["GlobalSecondaryIndexes"]] == [
        {"ReadCapacityUnits": 50, "WriteCapacityUnits": 10}] * 2, "each index starts at the table's units"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"ingest_memory_mb": "64"}, "ingest_memory_mb=64 is outside 128..10240"),
        ({"aggregate_batch_size": "lots"}, "aggregate_batch_size='lots' is not a whole number"),
        ({"aggregate_batch_size": "10001"}, "outside 1..10000"),
        ({"alerts_parallelization_factor": "11"}, "outside 1..10"),
        ({"events_billing_mode": "serverless"}, "is not one of on_demand, provisioned"),
        ({"events_point_in_time_recovery": "maybe"}, "events_point_in_time_recovery='maybe' is not true or false"),
        ({"api_rate_limit": "3000", "api_burst_limit": "1000"}, "api_burst_limit=1000 is below api_rate_limit=3000"),
        ({"table_target_utilization_percent": "95"}, "table_target_utilization_percent=95 is outside 20..90"),
        ({"counters_billing_mode": "provisioned", "counters_write_units": "500", "counters_max_write_units": "400"},
         "counters_max_write_units=400 is below counters_write_units=500"),
        ({"events_write_units": "50000"}, "events_write_units=50000 is outside 1..40000"),
    ],
    ids=["memory below Lambda's least", "a batch size that is no number", "a batch past DynamoDB streams' 10,000",
         "parallelization past 10", "an unknown billing mode", "a flag that is neither", "a burst below the rate",
         "a target past auto scaling's 90 %", "an auto scaling maximum below its least", "units past the table quota"],
)
def test_a_bad_context_value_fails_synthesis_naming_the_key(context, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScaleSettings.from_context(context.get)


def test_unset_optional_settings_and_json_numbers_from_cdk_json():
    settings = ScaleSettings.from_context({"ingest_reserved_concurrency": "none", "aggregate_batch_size": 250}.get)
    assert settings.ingest_reserved_concurrency is None
    assert settings.aggregate_batch_size == 250


def test_an_on_demand_tables_ceilings_hold_for_its_indexes_too():
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.constructs.tables import Tables

    stack = Stack(App(), "TablesOnly")
    Tables(stack, "Tables", deletion_protection=False,
           scale=ScaleSettings.from_context({"billing_max_write_units": "500", "billing_max_read_units": "900"}.get))
    (billing,) = [r["Properties"] for r in Template.from_stack(stack).find_resources("AWS::DynamoDB::Table").values()
                  if "GlobalSecondaryIndexes" in r["Properties"]]
    ceilings = {"MaxReadRequestUnits": 900, "MaxWriteRequestUnits": 500}
    assert billing["OnDemandThroughput"] == ceilings
    assert [index["OnDemandThroughput"] for index in billing["GlobalSecondaryIndexes"]] == [ceilings] * 2
