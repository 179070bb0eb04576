"""Exactly once through the whole system: 10,000 events, each posted twice, concurrently, over HTTP.

The ground truth is recomputed here from the events themselves, without Tally's code, and compared
with the counters twice: through /v1/usage, and item by item in the counters table (boto3 against
the local AWS endpoint).

Cost: the run is the aggregator's conditional UpdateItems on moto (about 8 ms each), one per counter
a stream batch of 100 touches. A post of 100 events drawn from all 20 customers touched about 210
counters, 21,000 writes for the run; a post drawn from two customers touches about 25. Each post
still mixes customers, hours, regions and models, and every counter of the 20 customers is checked.

It runs on a local stack of its own, in a process of its own: the 20,000 event items it leaves
would otherwise sit in the session stack of its worker, where every later metric's backfill scans
them. So it can start first (tests/conftest.py LONG_FIRST) instead of last.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import boto3
import pytest

from tests.system.own_process import in_own_process
from tests.system.usage_events import HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system
API_KEY = "tally_exactly_once_key"

EVENTS = 10_000
PER_POST = 100
THREADS = 8
CUSTOMERS = 20
CUSTOMERS_PER_POST = 2  # each post holds the events of two customers (see the module docstring)
HOURS = 6
REGIONS = ("eu", "us", "ap")
MODELS = ("small", "large")


def _create(api, path: str, body: dict) -> str:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def test_ten_thousand_events_posted_twice_concurrently_are_counted_exactly_once():
    print(in_own_process(_on_a_stack_of_its_own))  # the runtime is part of the result: see -rP


def _on_a_stack_of_its_own() -> str:
    import httpx

    from infra.local.runtime import LocalStack

    stack = LocalStack(port=0, api_key=API_KEY).start()
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=stack.base_url, headers=headers, timeout=600) as api:
            return _ten_thousand_events_twice(stack, api, stack.pump.drain)
    finally:
        stack.stop()


def _ten_thousand_events_twice(local_stack, api, settle) -> str:
    started = time.monotonic()
    tag, rng, last_hour = unique("exactly-once"), random.Random(20261124), current_hour()
    first_hour = last_hour - (HOURS - 1) * HOUR
    customers = [_create(api, "/v1/customers", {"name": f"{tag} #{n}"}) for n in range(CUSTOMERS)]
    metrics = {
        "tokens": _create(api, "/v1/billable-metrics/create", {
            "name": f"{tag} tokens", "aggregation_type": "SUM", "aggregation_key": "tokens",
            "event_type_filter": {"in_values": [tag]}, "group_keys": [["model"]],
        }),
        "calls": _create(api, "/v1/billable-metrics/create", {
            "name": f"{tag} calls", "aggregation_type": "COUNT",
            "event_type_filter": {"in_values": [tag]}, "group_keys": [["region"]],
        }),
        "western cost": _create(api, "/v1/billable-metrics/create", {
            "name": f"{tag} western cost", "aggregation_type": "SUM", "aggregation_key": "cost",
            "event_type_filter": {"in_values": [tag]}, "property_filters": [{"name": "region", "in_values": ["eu", "us"]}],
        }),
    }

    # Given 10,000 events over six hours, and what each counter must hold, worked out from them alone.
    # Post p holds 100 events of customers p and p+1 (mod 20): every customer is in ten posts.
    events, truth = [], defaultdict(Decimal)  # (metric, customer, hour, group) -> value
    for n in range(EVENTS):
        post = n // PER_POST
        customer = customers[(post + rng.randrange(CUSTOMERS_PER_POST)) % CUSTOMERS]
        region, model = rng.choice(REGIONS), rng.choice(MODELS)
        timestamp = first_hour + rng.randrange(HOURS * 60) * HOUR / 60
        tokens, cents = rng.randrange(1, 1000), rng.randrange(1, 10_000)
        cost = cents / 100  # its JSON form is exactly the two-decimal amount
        assert Decimal(repr(cost)) == Decimal(cents) / 100
        events.append(usage_event(f"{tag}-{n}", customer, tag, timestamp, tokens=tokens, cost=cost, region=region, model=model))
        bucket = timestamp.strftime("%Y%m%d%H")
        truth[(metrics["tokens"], customer, bucket, (model,))] += tokens
        truth[(metrics["calls"], customer, bucket, (region,))] += 1
        if region in ("eu", "us"):
            truth[(metrics["western cost"], customer, bucket, ())] += Decimal(cents) / 100

    # When the whole set is posted twice, 100 events a post, from 8 threads, the copies interleaved.
    posts = [events[i : i + PER_POST] for i in range(0, EVENTS, PER_POST)] * 2
    rng.shuffle(posts)
    ingest_started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(lambda batch: api.post("/v1/ingest", json=batch), posts))
    ingest_seconds = time.monotonic() - ingest_started
    settle(timeout=1800)
    settled_seconds = time.monotonic() - ingest_started - ingest_seconds

    # Then every post is accepted, and exactly one receipt of each event counts.
    assert [r.status_code for r in responses] == [200] * len(posts), next(r.text for r in responses if r.status_code != 200)
    receipts = [r.json() for r in responses]
    assert all(r["accepted"] + r["duplicates"] == PER_POST for r in receipts)
    assert sum(r["accepted"] for r in receipts) == EVENTS
    assert sum(r["duplicates"] for r in receipts) == EVENTS

    # /v1/usage, hour by hour, per customer and metric, with the group breakdowns.
    response = api.post("/v1/usage", json={
        "starting_on": rfc3339(first_hour),
        "ending_before": rfc3339(last_hour + HOUR),
        "window_size": "HOUR",
        "customer_ids": customers,
        "billable_metrics": [
            {"id": metrics["tokens"], "group_by": {"key": "model"}},
            {"id": metrics["calls"], "group_by": {"key": "region"}},
            {"id": metrics["western cost"]},
        ],
    })
    assert response.status_code == 200, response.text
    windows = json.loads(response.text, parse_float=Decimal)["data"]
    assert len(windows) == CUSTOMERS * len(metrics) * HOURS
    for window in windows:
        metric, customer = window["billable_metric_id"], window["customer_id"]
        bucket = window["start_timestamp"][:13].replace("-", "").replace("T", "")
        in_hour = {group: value for (m, c, h, group), value in truth.items() if (m, c, h) == (metric, customer, bucket)}
        assert window["value"] == sum(in_hour.values(), Decimal(0)), window
        if metric != metrics["western cost"]:
            assert window["groups"] == {group[0]: value for group, value in in_hour.items()}, window

    # The counters table itself, item by item: no missing, extra or doubled counter.
    dynamodb = boto3.client("dynamodb", endpoint_url=local_stack.aws_endpoint, region_name="us-east-1")
    stored = {}
    for metric in metrics.values():
        for customer in customers:
            pages = dynamodb.get_paginator("query").paginate(
                TableName=local_stack.table("CountersTableName"),
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"m#{metric}#k#{customer}"}},
                ConsistentRead=True,
            )
            for item in (item for page in pages for item in page["Items"]):
                # an additive counter is written as sub-items, `<bucket>#<group JSON>~<n>`: added up
                bucket, _, group = item["sk"]["S"].partition("#")
                group, tilde, sub = group.rpartition("~")
                assert tilde and sub.isdigit(), item["sk"]
                key = (metric, customer, bucket, tuple(json.loads(group)))
                total, parts = stored.get(key, (Decimal(0), {}))
                for name, value in item.items():
                    if re.fullmatch(r"[hd]\d\d", name):
                        parts = parts | {name: parts.get(name, Decimal(0)) + Decimal(value["N"])}
                stored[key] = (total + Decimal(item["v"]["N"]), parts)
    # COUNT and SUM: a day counter ("D" + YYYYMMDD) with a part per hour, and a month counter
    # ("M" + YYYYMM) with a part per day; each total is the sum of its parts.
    expected: dict = {}
    for (m, c, h, g), v in truth.items():
        for key, part in (((m, c, "D" + h[:8], g), "h" + h[8:10]), ((m, c, "M" + h[:6], g), "d" + h[6:8])):
            total, parts = expected.get(key, (Decimal(0), {}))
            expected[key] = (total + v, parts | {part: parts.get(part, Decimal(0)) + v})
    assert stored == expected

    return f"ingest {ingest_seconds:.1f} s, settle {settled_seconds:.1f} s, total {time.monotonic() - started:.1f} s"
