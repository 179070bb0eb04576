"""Issue 14: `tally quarantine` lists what the aggregator could not count on the local stack and
re-applies it once its cause is gone, counted once through the real handlers and stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import boto3
import pytest

from tally.billing.counters import counter_sub_item
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique

pytestmark = pytest.mark.system


def tally(local_stack, *args: str, expect: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no AWS set-up needed locally
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "quarantine", *args, "--endpoint-url", local_stack.aws_endpoint],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert run.returncode == expect, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    return run.stdout


def test_an_unknown_metric_is_one_line_naming_it(local_stack):
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "quarantine", "reapply", "no-such-metric", "--endpoint-url", local_stack.aws_endpoint],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == ["error: billable metric no-such-metric not found"]


def test_a_quarantined_sum_is_listed_and_reapplied_once_when_a_correction_makes_room(api, settle, local_stack):
    tag = unique("quarantine")
    customer = api.post("/v1/customers", json={"name": tag, "ingest_aliases": [tag]}).json()["data"]["id"]
    metric = api.post(
        "/v1/billable-metrics/create",
        json={"name": tag, "aggregation_type": "SUM", "aggregation_key": "n", "event_type_filter": {"in_values": [tag]}},
    ).json()["data"]["id"]
    hour = current_hour()

    def send(i: int, n: int) -> None:
        event = {"transaction_id": f"{tag}-{i}", "customer_id": tag, "event_type": tag, "timestamp": rfc3339(hour),
                 "properties": {"n": n}}
        assert api.post("/v1/ingest", json=[event]).status_code == 200
        settle()

    def usage() -> Decimal:
        response = api.post(
            "/v1/usage",
            json={"starting_on": rfc3339(hour - DAY), "ending_before": rfc3339(hour + HOUR), "window_size": "NONE",
                  "customer_ids": [customer], "billable_metrics": [{"id": metric}]},
        )
        return sum((Decimal(str(row["value"])) for row in response.json()["data"]), Decimal(0))

    # The sum is written to the stream shard's sub-item of each counter, and a re-apply adds to the
    # sub-item its transaction id picks: one that picks the shard's is refused while it is full.
    crossing = next(i for i in range(1, 1_000) if counter_sub_item(f"{tag}-{i}") == counter_sub_item(_events_shard(local_stack)))
    send(0, 9 * 10**18)
    send(crossing, 2 * 10**18)  # the counter's sub-item would leave +-1E19: quarantined
    still_refused = tally(local_stack, "reapply", metric, expect=1)
    send(crossing + 1, -5 * 10**18)  # a correction makes room

    listed = [json.loads(line) for line in tally(local_stack, "list", "--metric-id", metric, "--json").splitlines()]
    reapplied = tally(local_stack, "reapply", metric, "--transaction-id", f"{tag}-{crossing}")
    again = tally(local_stack, "reapply", metric)
    after = [json.loads(line) for line in tally(local_stack, "list", "--metric-id", metric, "--json").splitlines()]

    assert f"{tag}-{crossing}  still refused" in still_refused
    assert [(p["transaction_id"], p["state"]) for p in listed] == [(f"{tag}-{crossing}", "pending")]
    assert "+-1E19" in listed[0]["reason"] and listed[0]["event"]["properties"]["n"] == 2 * 10**18
    assert f"{tag}-{crossing}  reapplied" in reapplied and "0 reapplied" in again
    assert [p["state"] for p in after] == ["applied"]
    assert usage() == Decimal(6 * 10**18)
    assert "pending" not in tally(local_stack, "list", "--state", "pending", "--metric-id", metric)


def _events_shard(local_stack) -> str:
    """The events stream's one shard on the local stack (moto keeps one per table)."""
    endpoint = {"endpoint_url": local_stack.aws_endpoint, "region_name": "us-east-1"}
    table = boto3.client("dynamodb", **endpoint).describe_table(TableName=local_stack.table("EventsTableName"))["Table"]
    shards = boto3.client("dynamodbstreams", **endpoint).describe_stream(StreamArn=table["LatestStreamArn"])
    (shard,) = shards["StreamDescription"]["Shards"]
    return shard["ShardId"]
