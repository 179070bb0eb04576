"""Figure 7 of `tally bench`: DynamoDB capacity per accepted event, by AWS's unit rules
(infra/bench/capacity.py), per path: ingest (HTTP post → events table), aggregation (events stream →
counters) and alerts (counters stream → alert evaluation), on the live local stack.

Side by side in the same run, the same posts with ingest as it was before (one conditional
TransactWriteItems per request, 2 WRU per event item) and as it is (one conditional PutItem per
event, sent concurrently, 1 WRU). Posts of 1 and of 100 events, to 5 metrics that all match (the
bench's COUNT, SUM, MAX, UNIQUE, LATEST) and to 1 (a COUNT of its own event type). The stream
pump is stopped while posting and drained after, so the aggregator gets batches of up to the
mapping's BatchSize (100), whatever the post size.

Figures (report.figures), for the capacity plan and the cost per million events:
`wru_per_event.<case>.<path>`, `rru_per_event.<case>.<path>`, `requests_per_event.<case>.<path>`,
`stream_records_per_event.<case>.<path>` with case `<5|1>m.<1|100>ev[.before]` and path ingest,
aggregation, alerts or total; `event_item_bytes` (mean stored event item).
"""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator
from unittest import mock

from infra.bench.capacity import CapacityMeter, PathUsage
from infra.bench.load import CUSTOMER_ALIAS, usage_events

WRU_GOAL = 1.1  # per accepted event, all paths, at 100-event posts
PATHS = ("ingest", "aggregation", "alerts")
ONE_METRIC_EVENT_TYPE = "bench_wru_call"
_FUNCTION_PATHS = {"functions.ingest.": "ingest", "functions.aggregate.": "aggregation", "functions.alerts.": "alerts"}


def _cases(quick: bool) -> list[tuple[int, int, bool, int]]:
    """(metrics, events per post, before, events). 1-event posts were one conditional PutItem
    before too (the transaction was for 2 or more), so they are measured once. Quick runs (the
    test suite's) keep 5 metrics at 100-event posts only."""
    if quick:
        return [(5, 100, True, 100), (5, 100, False, 100)]
    return [(metrics, per_post, before, 300 if per_post == 100 else 100)
            for metrics in (5, 1) for per_post, before in ((100, True), (100, False), (1, False))]


def transactional_put_new(self, events, ingested_at):
    """Before (baseline only): the request's new events in one conditional TransactWriteItems,
    2 WRU per item; duplicates found by the cancellation dropped and the rest sent again."""
    from botocore.exceptions import ClientError

    from tally.adapters.dynamo.events import ORIGINAL, event_item, stamps

    pending, known = list(events), []
    ingested, expires_at = stamps(ingested_at)
    request_id = uuid.uuid4().hex
    while pending:
        items = [event_item(e, ingested, expires_at, ORIGINAL, f"{request_id}{i:03d}") for i, e in enumerate(pending)]
        puts = [{"Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
                for item in items]
        try:
            if len(items) == 1:
                self._client.put_item(**puts[0]["Put"])
            else:
                self._client.transact_write_items(TransactItems=puts)
            return known
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                codes = ["ConditionalCheckFailed"]
            elif code == "TransactionCanceledException":
                codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            else:
                raise
            if "ConditionalCheckFailed" not in codes:
                raise
            known += [e for e, code in zip(pending, codes) if code == "ConditionalCheckFailed"]
            pending = [e for e, code in zip(pending, codes) if code != "ConditionalCheckFailed"]
    return known


@contextmanager
def _paths_by_function(meter: CapacityMeter) -> Iterator[None]:
    """Charge what each local function does to its path, and count the stream records it is given."""
    from infra.local.lambdas import LocalLambdas

    original = LocalLambdas.invoke

    def invoke(self, name_or_arn: str, event: Any) -> Any:
        handler = self.spec(name_or_arn).handler
        path = next((p for prefix, p in _FUNCTION_PATHS.items() if handler.startswith(prefix)), "other")
        if isinstance(event, dict) and event.get("Records"):
            meter.add_stream_records(path, len(event["Records"]))
        with meter.path(path):
            return original(self, name_or_arn, event)

    with mock.patch.object(LocalLambdas, "invoke", invoke):
        yield


def _stop_pump(stack) -> None:
    stack.pump.stop()
    for thread in threading.enumerate():
        if thread.name == "stream-pump":
            thread.join(timeout=10)
    stack.pump.drain()


def measure(tally, stack, meter: CapacityMeter, events: int, per_post: int, event_type: str | None,
            before: bool) -> dict[str, PathUsage]:
    """Post `events` fresh events in posts of `per_post`, drain the streams; capacity per path."""
    from tally.adapters.dynamo.events import DynamoEventStore

    posts = []
    for _ in range(events // per_post):
        post = usage_events(per_post, CUSTOMER_ALIAS, tally.now(), tally.rng)
        if event_type:
            for event in post:
                event["event_type"] = event_type
        posts.append(post)
    meter.reset()
    patch = mock.patch.object(DynamoEventStore, "put_new", transactional_put_new) if before else nullcontext()
    with patch:
        accepted = sum(tally.ingest(post) for post in posts)
        stack.pump.drain()
    if accepted != events:
        raise RuntimeError(f"expected {events} accepted events, got {accepted}")
    return meter.paths()


def figure_wru(report: Any, quick: bool, tally: Any, stack: Any) -> None:
    """Runs with the stream pump stopped (it stops it if needed)."""
    import boto3

    from infra.bench.report import Row
    from tally.adapters.dynamo.client import dynamodb

    _stop_pump(stack)
    # Its create backfills over every stored event: only when a case needs it (not in quick runs).
    if any(metrics == 1 for metrics, *_ in _cases(quick)) and "WRU_ONE" not in tally.metric_ids:
        tally.metric_ids["WRU_ONE"] = tally._post("/v1/billable-metrics/create", {
            "name": "bench wru calls", "aggregation_type": "COUNT",
            "event_type_filter": {"in_values": [ONE_METRIC_EVENT_TYPE]}})["data"]["id"]
    peek = boto3.client("dynamodb")  # the stack's moto, without the meter's hooks
    meter = CapacityMeter(peek, tables={stack.table("EventsTableName"): "ingest",
                                        stack.table("CountersTableName"): "aggregation"})
    sizes: list[int] = []
    counts: dict[int, int] = {1: 0}
    with meter.attached(dynamodb()), _paths_by_function(meter):
        for metrics, per_post, before, events in _cases(quick):
            usage = measure(tally, stack, meter, events, per_post, None if metrics == 5 else ONE_METRIC_EVENT_TYPE, before)
            case = f"{metrics}m.{per_post}ev"
            counts[per_post] = events
            # A 1-event post was the same PutItem before: its figures are its baseline's too.
            suffixes = (".before",) if before else ("", ".before") if per_post == 1 else ("",)
            total = PathUsage()
            for path in PATHS:
                spent = usage.get(path, PathUsage())
                total = total.merged(spent)
                for suffix in suffixes:
                    _put(report, case + suffix, path, spent, events)
                if path == "ingest" and not before:
                    sizes += spent.write_sizes
            for suffix in suffixes:
                _put(report, case + suffix, "total", total, events)
    report.figures["event_item_bytes"] = sum(sizes) / max(1, len(sizes))
    for metrics, per_post, before, _ in _cases(quick):
        if before:
            continue
        case = f"{metrics}m.{per_post}ev"
        after, previous = (report.figures[f"wru_per_event.{c}.total"] for c in (case, case + ".before"))
        parts = " + ".join(f"{report.figures[f'wru_per_event.{case}.{p}']:.2f}" for p in PATHS)
        base_parts = " + ".join(f"{report.figures[f'wru_per_event.{case}.before.{p}']:.2f}" for p in PATHS)
        goal = per_post == 100
        baseline = f"before {previous:.3f} = {base_parts}" if per_post > 1 else "before: the same PutItem"
        report.rows.append(Row(
            f"7  WRU/event, {metrics}m, {per_post}/post",
            f"{after:.3f} = {parts}", baseline, f"{after / previous:.2f}×",
            f"≤ {WRU_GOAL}" if goal else "", ("met" if after <= WRU_GOAL + 1e-9 else "missed") if goal else ""))
    rru = report.figures["rru_per_event.5m.100ev.total"]  # every run has this case
    report.rows.append(Row("7b RRU/event, 5m, 100/post",
                           f"{rru:.3f} = " + " + ".join(f"{report.figures[f'rru_per_event.5m.100ev.{p}']:.3f}" for p in PATHS),
                           f"before {report.figures['rru_per_event.5m.100ev.before.total']:.3f}", "", "", ""))
    report.notes.append(
        f"7: DynamoDB capacity per accepted event by AWS's rules (infra/bench/capacity.py: 1 KB write units per "
        f"item, transactions double, failed conditions still charged; 4 KB read units, eventually consistent "
        f"half), as ingest + aggregation + alerts; 5m/1m: 5 metrics matching every event, or 1. Fresh events "
        f"over HTTP, one customer, current hour: {counts[100]} per case in 100-event posts"
        + (f", {counts[1]} in 1-event posts" if counts[1] else " (quick: no 1-event posts)") +
        f"; the pump stopped while posting, then drained in batches of up to 100. Before: "
        f"ingest as one conditional TransactWriteItems per request (a lone event was a PutItem then too); after: "
        f"one conditional PutItem per event, concurrent. Mean event item {report.figures['event_item_bytes']:.0f} "
        f"bytes. One stream shard locally: on AWS a customer's events spread over every shard, so aggregation's "
        f"batches per shard are smaller (figure 8)."
    )


def _put(report: Any, case: str, path: str, usage: PathUsage, events: int) -> None:
    report.figures[f"wru_per_event.{case}.{path}"] = usage.wru / events
    report.figures[f"rru_per_event.{case}.{path}"] = usage.rru / events
    report.figures[f"requests_per_event.{case}.{path}"] = sum(usage.requests.values()) / events
    report.figures[f"stream_records_per_event.{case}.{path}"] = usage.stream_records / events
