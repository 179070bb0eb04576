"""The cost per million events and the capacity plan, from given units (infra/bench/cost.py,
infra/bench/plan.py): the arithmetic, the quotas each rate meets, and `tally capacity` reading saved
units. The measurement itself runs in `tally bench --quick` (tests/system/test_bench_smoke.py)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from infra.bench import plan, prices
from infra.bench.cost import MILLION, cost_per_million, floor_per_million, total
from infra.bench.units import Units


def units(**changes) -> Units:
    given = dict(
        events=1_000, events_per_post=100,
        invocations_per_event={"ingest": 0.01, "aggregation": 0.01, "alerts": 0.01},
        cpu_ms_per_invocation={"ingest": 10.0, "aggregation": 20.0, "alerts": 5.0},
        moto_ms_per_invocation={"ingest": 8.0, "aggregation": 4.0, "alerts": 2.0},
        memory_mb={"ingest": 512, "aggregation": 1024, "alerts": 1769},
        wru_per_event={"ingest": 1.0, "aggregation": 0.1, "alerts": 0.0},
        rru_per_event={"ingest": 0.005, "aggregation": 0.01, "alerts": 0.1},
        event_item_bytes=500.0, counter_bytes_total=3_000.0, sns_publishes_per_event=0.001,
        events_per_aggregation_batch=100.0,
    )
    return Units(**{**given, **changes})


def line(lines, service: str, item_start: str):
    (found,) = [li for li in lines if li.service == service and li.item.startswith(item_start)]
    return found


def test_a_lambda_call_bills_its_cpu_at_the_memory_share_of_a_vcpu_plus_its_waits():
    u = units()
    assert u.lambda_ms("ingest") == pytest.approx(10.0 * 1769 / 512 + 8.0)
    assert u.lambda_ms("alerts") == pytest.approx(5.0 + 2.0), "a whole vCPU at 1,769 MB: no stretch"


def test_each_line_is_quantity_per_million_events_times_its_list_price():
    lines = cost_per_million(units())
    api = line(lines, "API Gateway", "HTTP API requests")
    assert (api.quantity, api.usd) == (Decimal(10_000), Decimal("0.01"))
    ingest_ms = Decimal(43)  # ceil(10 × 1769 / 512 + 8) = ceil(42.55), billed per whole ms
    gb_s = line(lines, "Lambda", "ingest duration")
    assert gb_s.quantity == Decimal(10_000) * ingest_ms / 1000 * Decimal("0.5")
    assert gb_s.usd == gb_s.quantity * prices.LAMBDA_GB_SECOND.usd
    assert line(lines, "DynamoDB", "ingest writes").usd == Decimal("0.625")
    # per batch: measured at 100-event batches, priced at the plan's steady ones
    factor = Decimal(repr(plan.batch_factor(units())))
    assert factor > 1
    assert line(lines, "DynamoDB", "aggregation writes").usd == Decimal("0.0625") * factor
    assert not [li for li in lines if li.item.startswith("alerts writes")], "no writes, no line"
    storage = line(lines, "DynamoDB", "storage")
    gb_months = MILLION * 500 / Decimal(2**30) * 34 / Decimal("30.4375")
    assert storage.quantity == gb_months and storage.usd == gb_months * Decimal("0.25")
    assert line(lines, "DynamoDB", "point-in-time").usd == gb_months * Decimal("0.20")
    assert line(lines, "DynamoDB Streams", "GetRecords").usd == 0, "Lambda triggers read streams for free"
    assert line(lines, "SNS", "alert publishes").usd == Decimal(1_000) * Decimal("0.50") / MILLION
    assert total(lines) == sum(li.usd for li in lines)


def test_provisioned_tables_bill_the_units_per_second_over_the_target_utilization_per_unit_hour():
    on_demand, provisioned = cost_per_million(units()), cost_per_million(units(), "provisioned")
    writes = line(provisioned, "DynamoDB", "ingest writes")
    # 1,000,000 WRU at 70 %: 1,000,000 / 0.7 / 3,600 WCU-hours
    assert writes.quantity == MILLION / Decimal("0.7") / 3600
    assert writes.usd == writes.quantity * Decimal("0.00065") and writes.unit == "WCU-hours"
    reads = line(provisioned, "DynamoDB", "alerts reads")
    rru = line(on_demand, "DynamoDB", "alerts reads").quantity
    assert reads.usd == rru / Decimal("0.7") / 3600 * Decimal("0.00013")
    not_dynamodb_capacity = [li for li in on_demand if "writes" not in li.item and "reads" not in li.item]
    assert not_dynamodb_capacity == [li for li in provisioned if "writes" not in li.item and "reads" not in li.item]
    assert total(provisioned) < total(on_demand)


def test_a_lower_target_utilization_costs_more():
    from infra.settings import ScaleSettings

    headroom = ScaleSettings.from_context({"table_target_utilization_percent": "35"}.get)
    assert line(cost_per_million(units(), "provisioned", headroom), "DynamoDB", "ingest writes").usd == pytest.approx(
        2 * line(cost_per_million(units(), "provisioned"), "DynamoDB", "ingest writes").usd)


def test_an_unknown_table_mode_is_refused():
    with pytest.raises(ValueError, match="'reserved' is not one of on_demand, provisioned"):
        cost_per_million(units(), "reserved")


def test_the_per_batch_units_scale_to_the_steady_batches_of_a_full_events_table():
    from infra.settings import ScaleSettings

    # 500 B events, 34 days at 1k events/s: 137 partitions of 10 GB, 7.3 events/s per shard;
    # a 10 s window gathers 73 of them.
    assert plan.steady_events_per_batch(units()) == pytest.approx(1_000 / 137 * 10)
    assert plan.batch_factor(units()) == pytest.approx(100 / (1_000 / 137 * 10))
    one_second = ScaleSettings.from_context({"aggregate_batching_window_s": "1"}.get)
    assert plan.batch_factor(units(), one_second) == pytest.approx(100 / (1_000 / 137))
    assert plan.batch_factor(units(events_per_aggregation_batch=0.0)) == 1.0, "nothing measured: as measured"


def test_on_provisioned_tables_100k_events_per_second_need_the_table_and_account_quotas_raised():
    p = plan.plan(units(), 100_000)
    capacity = plan.provisioned(p)
    assert capacity.wcu["events"] == 142_858, "100,000 WRU/s at 70 %"
    assert capacity.rcu["events"] == 5, "no reads: the least units"
    assert capacity.account_wcu == sum(capacity.wcu.values()) + 2 * 10, "the billing table's two indexes at least"
    raise_ = plan.quotas_to_raise_provisioned(p)
    assert "DynamoDB events table WCU to 142,858" in raise_
    assert "-c events_max_write_units to 142,858" in raise_
    assert f"DynamoDB account WCU to {capacity.account_wcu:,}" in raise_
    assert plan.quotas_to_raise_provisioned(plan.plan(units(), 1_000)) == []


def test_without_point_in_time_recovery_its_line_is_left_out():
    lines = cost_per_million(units(events_pitr=False))
    assert not [li for li in lines if li.item.startswith("point-in-time")]
    assert total(lines) < total(cost_per_million(units()))


def test_the_floor_is_one_write_and_34_days_of_storage_per_event():
    gb_months = MILLION * 500 / Decimal(2**30) * 34 / Decimal("30.4375")
    assert floor_per_million(units()) == Decimal("0.625") + gb_months * Decimal("0.25")


def test_at_100k_events_per_second_the_events_table_needs_a_quota_raise_and_the_api_does_not():
    p = plan.plan(units(), 100_000)
    assert p.posts_per_s == 1_000
    assert p.events_wru_per_s == 100_000
    assert p.events_partitions_throughput == 100
    # 100k events/s × 34 days × 500 B over 10 GB partitions
    assert p.events_partitions_size == -(-100_000 * 86_400 * 34 * 500 // (10 * 2**30))
    assert p.aggregator_max_concurrency == p.events_partitions, "one batch per shard at a time"
    raise_ = plan.quotas_to_raise(p)
    assert "DynamoDB events table WRU/s" in raise_
    assert not [q for q in raise_ if "API Gateway" in q or "stage throttle" in q]


def test_at_1k_events_per_second_nothing_needs_raising():
    p = plan.plan(units(), 1_000)
    assert plan.quotas_to_raise(p) == []
    assert p.ingest_concurrency == pytest.approx(10 * units().lambda_ms("ingest") / 1000)


def test_fewer_events_per_batch_cost_more_counter_writes_per_event():
    busy = plan.plan(units(), 100_000)
    assert busy.events_per_batch < 100
    assert busy.counters_wru_per_s == pytest.approx(100_000 * 0.1 * 100 / busy.events_per_batch)


def test_tally_capacity_prints_the_plan_and_the_cost_from_saved_units(tmp_path):
    from typer.testing import CliRunner

    from infra.cli import app

    saved = tmp_path / "units.json"
    saved.write_text(units().to_json())
    result = CliRunner().invoke(app, ["capacity", "--units", str(saved)])
    assert result.exit_code == 0, result.output
    assert "Capacity plan" in result.output and "100,000 events/s" in result.output
    assert f"{total(cost_per_million(units())) * 100:.3f}¢" in result.output
    assert f"{total(cost_per_million(units(), 'provisioned')) * 100:.3f}¢" in result.output
    assert "on-demand tables" in result.output and "provisioned tables, auto scaled" in result.output
    markdown = CliRunner().invoke(app, ["capacity", "--units", str(saved), "--markdown"])
    assert markdown.output.strip() == plan.markdown(units())


def test_tally_capacity_names_a_file_that_is_not_saved_units(tmp_path):
    from typer.testing import CliRunner

    from infra.cli import app

    bad = tmp_path / "units.json"
    bad.write_text(json.dumps({"events": 1}))
    result = CliRunner().invoke(app, ["capacity", "--units", str(bad)])
    assert result.exit_code == 1
    assert "is not a units file saved by tally bench" in result.output
