"""Per-event units of the ingest → counters → alerts path, measured with the real handlers on an
in-process moto: the input of the cost per million events (cost.py) and of the capacity plan
(`tally capacity`, plan.py). Nothing here is assumed but the workload.

The workload is the bench's (infra/bench/load.py): one customer's LLM-API-call events in 100-event
posts, five billable metrics (COUNT, SUM, MAX, UNIQUE, LATEST) matching every event, and one usage
alert on the COUNT metric that crosses once during the run. Posts go through the ingest handler as
API Gateway payload-2.0 events; after each post the stream pump (infra/local/stream_pump.py, the
mappings' batch sizes from infra/settings.py) delivers the events stream to the aggregator and the
counters stream to the alerts function, as a live stream with no backlog would.

DynamoDB capacity is charged by AWS's unit rules by the bench's meter (infra/bench/capacity.py,
CapacityMeter), per path. By the functions' IAM policies each path writes one table only: ingest the
events table, aggregation the counters table, alerts the billing table (alert states).

Durations come from CPU time, not wall time (this machine is shared, and a Lambda does not wait
for other tenants' processes): each warm handler call's process CPU, split into the part inside
moto (the DynamoDB requests' server side) and the rest (the handler, boto3 included; a first post
is not counted, so imports and caches are warm). A Lambda gets CPU in proportion to its memory,
one vCPU at 1,769 MB (AWS Lambda developer guide, "Configure Lambda function memory"), so the
handler's part is stretched by 1,769 / memory below that; moto's part is kept as it is, standing in
for the round trips to DynamoDB the function waits for. Cold starts are not included.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

from infra.settings import ScaleSettings

PATHS = ("ingest", "aggregation", "alerts")
HANDLERS = {
    "api": "functions.api.handler.handler",
    "ingest": "functions.ingest.handler.handler",
    "aggregation": "functions.aggregate.handler.handler",
    "alerts": "functions.alerts.handler.handler",
}
WRITES_TABLE = {"ingest": "events", "aggregation": "counters", "alerts": "billing"}  # the IAM policies
EVENTS_PER_POST = 100
# DynamoDB bills storage on the item's size plus 100 bytes of overhead per item (its indexing).
ITEM_OVERHEAD_BYTES = 100
ONE_VCPU_MB = 1_769
UNITS_FILE = Path(__file__).resolve().parents[2] / ".build" / "bench" / "units.json"


@dataclass
class Units:
    """What one accepted event costs, by path (ingest, aggregation, alerts), from one measured run."""

    events: int
    events_per_post: int
    invocations_per_event: dict[str, float]
    cpu_ms_per_invocation: dict[str, float]  # median handler CPU, moto excluded
    moto_ms_per_invocation: dict[str, float]  # median CPU inside moto: the DynamoDB round trips' stand-in
    memory_mb: dict[str, int]  # the deployed defaults (infra/settings.py)
    wru_per_event: dict[str, float] = field(default_factory=dict)  # by path
    rru_per_event: dict[str, float] = field(default_factory=dict)  # by path
    event_item_bytes: float = 0.0  # mean stored size of a raw event item, overhead included
    counter_bytes_total: float = 0.0  # the counters table after the run (not per event: see cost.py)
    sns_publishes_per_event: float = 0.0
    events_per_aggregation_batch: float = 0.0
    events_pitr: bool = True  # the deployed setting: point-in-time recovery of the events table
    measured_at: str = ""
    quick: bool = False

    def lambda_ms(self, path: str) -> float:
        """The billed duration of one call: handler CPU at the function's CPU share, plus moto's."""
        share = min(1.0, self.memory_mb[path] / ONE_VCPU_MB)
        return self.cpu_ms_per_invocation[path] / share + self.moto_ms_per_invocation[path]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Units":
        return cls(**json.loads(text))

    def save(self, path: Path = UNITS_FILE) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


# -- the world ---------------------------------------------------------------------------------------
def _create_tables(client, prefix: str) -> dict[str, str]:
    """The three tables keyed and streamed as the CDK app defines them (infra/constructs/tables.py)."""
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
    names = {kind: f"{prefix}-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("events", "counters", "billing")}
    for kind, view in (("events", "NEW_IMAGE"), ("counters", "NEW_AND_OLD_IMAGES")):
        client.create_table(TableName=names[kind], KeySchema=keys, AttributeDefinitions=attributes,
                            BillingMode="PAY_PER_REQUEST",
                            StreamSpecification={"StreamEnabled": True, "StreamViewType": view})
    client.create_table(
        TableName=names["billing"], KeySchema=keys, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=attributes + [{"AttributeName": "gsi1pk", "AttributeType": "S"},
                                           {"AttributeName": "gsi1sk", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                               {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}],
    )
    return names


class _TimedLambdas:
    """LocalLambdas whose invocations are timed per function (process CPU, and the part inside
    moto), each charged to its path on the capacity meter."""

    def __init__(self, lambdas, emulated, meter) -> None:
        self._lambdas = lambdas
        self._emulated = emulated
        self._meter = meter
        self.counting = False
        self.cpu_ms: dict[str, list[float]] = {path: [] for path in HANDLERS}
        self.moto_ms: dict[str, list[float]] = {path: [] for path in HANDLERS}

    def invoke(self, name: str, event: Any) -> Any:
        # Process CPU: the handler's own threads count too (nothing else runs meanwhile).
        moto_before, began = self._emulated.cpu, time.process_time()
        try:
            with self._meter.path(name):
                return self._lambdas.invoke(name, event)
        finally:
            if self.counting:
                moto = (self._emulated.cpu - moto_before) * 1000
                self.cpu_ms[name].append((time.process_time() - began) * 1000 - moto)
                self.moto_ms[name].append(moto)


@contextmanager
def _world(settings: ScaleSettings) -> Iterator[tuple[Any, Any, dict[str, str], str]]:
    """moto in-process with the tables and the alerts topic, the four functions registered with
    their environment, the pump with the two stream mappings, and the capacity meter on the
    functions' DynamoDB client (attached by the caller). Yields (timed lambdas, pump, meter, api key)."""
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends

    from infra.bench.capacity import CapacityMeter
    from infra.bench.invoice import EmulatedAwsTime
    from infra.local import moto_patches
    from infra.local.lambdas import FunctionSpec, LocalLambdas
    from infra.local.stream_pump import MappingConfig, StreamPump
    from infra.stream_filters import COUNTER_WRITES, REAL_EVENT_INSERTS
    from tally import wiring

    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
           "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "LOG_LEVEL": "WARNING"}
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, env))
        stack.enter_context(mock_aws())
        client = boto3.client("dynamodb")
        tables = _create_tables(client, "tally-cost")
        topic = boto3.client("sns").create_topic(Name=f"tally-cost-alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
        backfills = boto3.client("sqs").create_queue(QueueName=f"tally-cost-backfill-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        os.environ.update({"EVENTS_TABLE": tables["events"], "COUNTERS_TABLE": tables["counters"],
                           "BILLING_TABLE": tables["billing"], "ALERTS_TOPIC_ARN": topic,
                           "BACKFILL_QUEUE_URL": backfills})  # metric create sends its job there (unread here)
        lambdas = LocalLambdas()
        memory = {"api": settings.api_memory_mb, "ingest": settings.ingest_memory_mb,
                  "aggregation": settings.aggregate_memory_mb, "alerts": settings.alerts_memory_mb}
        for name, handler in HANDLERS.items():
            lambdas.register(FunctionSpec(name=name, handler=handler, memory=memory[name]))
        moto_patches.install(lambdas)  # kept stream records with increasing sequence numbers
        emulated = stack.enter_context(EmulatedAwsTime().installed())
        meter = CapacityMeter(boto3.client("dynamodb"))  # a client of its own to peek at items, unmetered
        timed = _TimedLambdas(lambdas, emulated, meter)
        backend = dynamodb_backends["123456789012"]["us-east-1"].tables

        def shard_of(table: str):
            from types import SimpleNamespace

            shard = backend[table].stream_shard
            return SimpleNamespace(id=shard.id, items=moto_patches.committed_records(shard))

        pump = StreamPump(timed, shard_of, retry_delay=0)
        streams = {kind: client.describe_table(TableName=tables[kind])["Table"]["LatestStreamArn"]
                   for kind in ("events", "counters")}
        pump.add_mapping(MappingConfig(function="aggregation", table_name=tables["events"], stream_arn=streams["events"],
                                       batch_size=settings.aggregate_batch_size, bisect=True,
                                       report_item_failures=True, max_retries=8, filters=[REAL_EVENT_INSERTS]))
        pump.add_mapping(MappingConfig(function="alerts", table_name=tables["counters"], stream_arn=streams["counters"],
                                       batch_size=settings.alerts_batch_size, bisect=True,
                                       report_item_failures=True, max_retries=8, filters=[COUNTER_WRITES]))
        wiring.reset()
        stack.callback(wiring.reset)  # its clients belong to this moto
        token, _ = wiring.api_keys().create("cost bench")
        yield timed, pump, meter, token


def _call(timed: _TimedLambdas, path: str, route: str, body: Any, token: str) -> dict:
    from infra.bench.figures import http_api_event

    response = timed.invoke(path, http_api_event(route, json.dumps(body), token))
    if response.get("statusCode") != 200:
        raise RuntimeError(f"{route} answered {response.get('statusCode')}: {str(response.get('body'))[:300]}")
    return json.loads(response["body"])


def measure_units(quick: bool, settings: ScaleSettings | None = None) -> Units:
    """Post 100-event posts through ingest → aggregation → alerts and return the per-event units.

    Two phases, so that neither disturbs the other: timed posts (CPU per call, invocations per
    event), then metered posts (the capacity meter reads items to size them, which costs moto time).
    The usage alert crosses in the first metered post: one SNS publish per run."""
    from infra.bench.load import CUSTOMER_ALIAS, METRICS, usage_events
    from tally.adapters.dynamo.client import dynamodb
    from tally.adapters.sns import SnsPublisher

    settings = settings or ScaleSettings.defaults()
    timed_posts, metered_posts = (1, 1) if quick else (20, 10)
    rng = random.Random(20)
    publishes = 0
    original_publish = SnsPublisher.publish

    def counted_publish(self, *args: Any, **kwargs: Any) -> str:
        nonlocal publishes
        publishes += 1
        return original_publish(self, *args, **kwargs)

    def post() -> None:
        _post_and_drain(timed, pump, token, usage_events(EVENTS_PER_POST, CUSTOMER_ALIAS, now, rng))

    with _world(settings) as (timed, pump, meter, token), mock.patch.object(SnsPublisher, "publish", counted_publish):
        acme = _call(timed, "api", "/v1/customers", {"name": "cost bench", "ingest_aliases": [CUSTOMER_ALIAS]},
                     token)["data"]["id"]
        metric_ids = {kind: _call(timed, "api", "/v1/billable-metrics/create", body, token)["data"]["id"]
                      for kind, body in METRICS.items()}
        _call(timed, "api", "/v1/alerts/create", {
            "alert_type": "usage_threshold_reached", "name": "cost bench", "customer_id": acme,
            "billable_metric_id": metric_ids["COUNT"], "threshold": (1 + timed_posts + 1) * EVENTS_PER_POST}, token)
        now = datetime.now(timezone.utc)
        post()  # warm-up, not counted: imports, caches and the first shard lookup, as a warm Lambda
        timed.counting = True
        for _ in range(timed_posts):
            post()
        timed.counting = False
        publishes = 0
        with meter.attached(dynamodb()):
            for _ in range(metered_posts):
                post()
        usage = {path: meter.usage(path) for path in PATHS}
        counter_bytes = _table_bytes(os.environ["COUNTERS_TABLE"])

    timed_events, metered_events = timed_posts * EVENTS_PER_POST, metered_posts * EVENTS_PER_POST
    counts = {path: len(timed.cpu_ms[path]) for path in PATHS}
    written = usage["ingest"].write_sizes  # the event items, as billed
    return Units(
        events=timed_events + metered_events,
        events_per_post=EVENTS_PER_POST,
        invocations_per_event={path: counts[path] / timed_events for path in PATHS},
        cpu_ms_per_invocation={path: statistics.median(timed.cpu_ms[path]) for path in PATHS if counts[path]},
        moto_ms_per_invocation={path: statistics.median(timed.moto_ms[path]) for path in PATHS if counts[path]},
        memory_mb={"ingest": settings.ingest_memory_mb, "aggregation": settings.aggregate_memory_mb,
                   "alerts": settings.alerts_memory_mb},
        wru_per_event={path: usage[path].wru / metered_events for path in PATHS},
        rru_per_event={path: usage[path].rru / metered_events for path in PATHS},
        event_item_bytes=statistics.fmean(written) + ITEM_OVERHEAD_BYTES if written else 0.0,
        counter_bytes_total=counter_bytes,
        sns_publishes_per_event=publishes / metered_events,
        events_per_aggregation_batch=timed_events / counts["aggregation"] if counts["aggregation"] else 0.0,
        events_pitr=settings.events_point_in_time_recovery,
        measured_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        quick=quick,
    )


def _post_and_drain(timed: _TimedLambdas, pump, token: str, events: list[dict]) -> None:
    accepted = _call(timed, "ingest", "/v1/ingest", events, token)["accepted"]
    if accepted != len(events):
        raise RuntimeError(f"ingest accepted {accepted} of {len(events)} fresh events")
    pump.drain()
    if pump.failed_batches:
        raise RuntimeError(f"{pump.failed_batches} stream batches failed: the measurement would be wrong")


def _table_bytes(table: str) -> float:
    """A table's stored size: each item's size by DynamoDB's rules plus its 100-byte overhead."""
    import boto3

    from infra.bench.capacity import item_size

    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return float(sum(item_size(item) + ITEM_OVERHEAD_BYTES for page in pages for item in page["Items"]))
