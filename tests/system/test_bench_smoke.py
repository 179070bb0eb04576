"""`tally bench --quick` runs end to end and reports every figure. Speed is never asserted here:
the harness measures it, as ratios against baselines of the same run. It runs in its own process,
because a process holds one local stack (handlers share its environment) and the session's is up."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytestmark = pytest.mark.system

# The figures each part reports: the two parts run as two tests, so pytest-xdist runs them side by side.
STACK = (
    "writes_per_event_1_event_posts",
    "writes_per_event_100_event_posts",
    "writes_per_event_vs_naive",
    "e2e_events_per_s",
    "bare_batch_write_events_per_s",
    "e2e_vs_bare_batch_write",
    "freshness_p50_ms",
    "freshness_p99_ms",
    "alert_latency_p50_ms",
    "alert_latency_p99_ms",
    "bare_sns_to_sqs_p50_ms",
    "wru_per_event.5m.100ev.total",
    "wru_per_event.5m.100ev.before.total",
    "rru_per_event.5m.100ev.total",
)
OFFLINE = (
    "ingest_cpu_us_per_event",
    "json_loads_us_per_event",
    "ingest_cpu_vs_json_loads",
    "ingest_cpu_with_boto3_us_per_event",
    "pdf_vs_json_cpu",
    "pdf_vs_json_bytes",
    "cost_usd_per_million_events",
    "cost_vs_floor",
    "cost_provisioned_usd_per_million_events",
    "cost_provisioned_vs_on_demand",
    "close_big_vs_small_items",
    "close_walk_big_vs_small_items",
    "close_all_due_big_vs_small_per_customer",
    "close_all_due_before_big_vs_small_per_customer",
    "backfill_create_ms",
    "backfill_job_vs_bare_scan",
    "backfill_shared_items_vs_one",
    "history_draft_month_n_items_read",
    "history_balances_month_n_cpu_ms",
)


PARTS = {
    "offline": (OFFLINE, ("ingest CPU",)),
    "stack": (STACK, ("items written/event", "local e2e", "freshness", "alert latency", "WRU/event")),
}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_quick_bench_reports_every_figure_with_a_finite_value(tmp_path, part):
    expected, labels = PARTS[part]
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "bench", "--quick", "--part", part, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    missing = [name for name in expected if name not in figures]
    assert not missing, f"figures not reported: {missing}"
    not_finite = {name: value for name, value in figures.items() if not math.isfinite(value)}
    assert not not_finite, f"figures without a finite value: {not_finite}"
    for label in labels:
        assert label in run.stdout
