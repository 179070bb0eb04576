"""`tally bench`: the cost figures of the ingest → counters path, each beside a baseline measured in
the same run. These machines are noisy, so the ratios are the figures to read, not the absolutes.

1. Ingest handler CPU per event (100-event posts, DynamoDB stubbed) vs a plain `json.loads`.
2. DynamoDB items written per accepted event (raw + counters, 5 matching metrics) vs the naive 6.
3. Local end-to-end events/s, HTTPS post → counters applied, vs bare moto BatchWriteItem.
4. Freshness: ingest 200 → visible in POST /v1/usage, p50/p99 on the live local stack.
5. The draft invoice of a 50-product × 100-model contract after 1,000 and after 1,000,000 events:
   DynamoDB reads, CPU excluding AWS, wall time (infra/bench/invoice.py).
6. Alert latency: ingest 200 → the alert's SNS message on an SQS subscription, p50/p99, live local
   stack, vs a bare SNS → SQS delivery (infra/bench/alerts.py).

Figures 1 and 5 run first, without the local stack: it sets process-wide AWS settings when it starts.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.table import Table

from infra.bench.alerts import figure_alert_latency
from infra.bench.invoice import Shape, figure_invoice
from infra.bench.report import OFFLINE_FIGURES, STACK_FIGURES, Report, Row, registered
from infra.bench.load import (
    CUSTOMER_ALIAS,
    FRESHNESS_ALIAS,
    TallyClient,
    WriteCounter,
    bare_batch_write,
    build_raw_items,
    create_bare_table,
    usage_events,
)


@dataclass(frozen=True)
class Sizes:
    cpu_rounds: int  # figure 1: handler calls of 100 events each
    write_events: int  # figure 2: events per post shape
    e2e_events: int  # figure 3
    e2e_threads: int
    fresh_events: int  # figure 4
    invoice_events: tuple[int, int]  # figure 5: events fed to the counters before the draft, few and many
    invoice_shape: Shape  # figure 5: the contract's products × models
    invoice_repeats: int

    @classmethod
    def for_run(cls, quick: bool) -> "Sizes":
        # Local posts of 100 events slow down as the events table grows (see figure 3's note), so the
        # local figures stay small; writes per event do not depend on the count beyond whole batches.
        if quick:
            return cls(cpu_rounds=40, write_events=200, e2e_events=400, e2e_threads=4, fresh_events=20,
                       invoice_events=(1_000, 5_000), invoice_shape=Shape(families=2, models=20), invoice_repeats=1)
        return cls(cpu_rounds=300, write_events=500, e2e_events=1_000, e2e_threads=4, fresh_events=200,
                   invoice_events=(1_000, 1_000_000), invoice_shape=Shape(), invoice_repeats=3)


# -- figure 1: ingest handler CPU -------------------------------------------------------------------
CPU_GOAL_US = 30.0
CPU_CHUNK = 10  # handler and json.loads alternate in chunks of rounds, so both see the same noise


class StubDynamoClient:
    """Stands in for the boto3 DynamoDB client on the ingest path: API keys are readable, event
    writes are accepted and dropped. Only the calls the ingest function makes exist."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], dict] = {}
        self.event_items_written = 0
        self.batch_gets = 0

    def put_item(self, TableName: str, Item: dict, **_: Any) -> dict:  # noqa: N803 - boto3's names
        if Item["pk"]["S"].startswith("apikey#"):
            self._keys[(Item["pk"]["S"], Item["sk"]["S"])] = Item
        else:
            self.event_items_written += 1
        return {}

    def get_item(self, TableName: str, Key: dict, **_: Any) -> dict:  # noqa: N803
        item = self._keys.get((Key["pk"]["S"], Key["sk"]["S"]))
        return {"Item": item} if item else {}

    def batch_get_item(self, RequestItems: dict, **_: Any) -> dict:  # noqa: N803
        # Ingest's one archive check per request: the bench's customers are live (no archived_at).
        self.batch_gets += 1
        return {"Responses": {table: [] for table in RequestItems}, "UnprocessedKeys": {}}

    def transact_write_items(self, TransactItems: list[dict], **_: Any) -> dict:  # noqa: N803
        self.event_items_written += len(TransactItems)
        return {}

    def batch_write_item(self, RequestItems: dict, **_: Any) -> dict:  # noqa: N803
        self.event_items_written += sum(len(r) for r in RequestItems.values())
        return {"UnprocessedItems": {}}


def offline_boto3_dynamodb():
    """A real boto3 client (validation, serialization, signing, parsing) whose requests are answered
    `200 {}` in-process: nothing leaves the process and no process settings change."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    client = boto3.session.Session().client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        endpoint_url="https://dynamodb.us-east-1.amazonaws.com",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, account_id_endpoint_mode="disabled"),
    )

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self._body = body

        def stream(self, **_: Any):
            yield self._body

    keys: dict[str, dict] = {}  # API key items, so that verification reads back what was created

    def answer(request, **_: Any) -> AWSResponse:
        operation = request.headers["X-Amz-Target"].decode().rpartition(".")[2]
        body = b"{}"
        if operation in ("PutItem", "GetItem"):
            params = json.loads(request.body)
            if operation == "PutItem" and params["Item"]["pk"]["S"].startswith("apikey#"):
                keys[params["Item"]["pk"]["S"]] = params["Item"]
            elif operation == "GetItem" and params["Key"]["pk"]["S"] in keys:
                body = json.dumps({"Item": keys[params["Key"]["pk"]["S"]]}).encode()
        return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, _Raw(body))

    client.meta.events.register("before-send.dynamodb", answer)
    return client


class _Context:
    """The Lambda context attributes Powertools' Logger reads."""

    function_name = "tally-ingest-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tally-ingest-bench"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/tally-ingest-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_api_event(path: str, body: str, api_key: str) -> dict:
    """An API Gateway HTTP API payload-format-2.0 event, as API Gateway sends it."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "authorization": f"Bearer {api_key}",
            "content-length": str(len(body)),
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "metronome-sdk/python",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "metronome-sdk/python",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"POST {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


@contextmanager
def stubbed_ingest_wiring(client) -> Iterator[str]:
    """Point the ingest function's wiring at DynamoDB stores built on `client`; yields an API key.

    The real stores, services, resolver and handler run; only the client is replaced."""
    from unittest import mock

    from tally import wiring
    from tally.adapters.dynamo.billing import DynamoBillingStore
    from tally.adapters.dynamo.events import DynamoEventStore

    billing = DynamoBillingStore("tally-bench-billing", client=client)
    events = DynamoEventStore("tally-bench-events", client=client)
    wiring.reset()
    try:
        with mock.patch.object(wiring, "billing_store", lambda: billing), mock.patch.object(
            wiring, "event_store", lambda: events
        ):
            token, _ = wiring.api_keys().create("bench")
            yield token
    finally:
        wiring.reset()


def _ingest_bodies(rounds: int, now: datetime) -> list[str]:
    return [json.dumps(usage_events(100, CUSTOMER_ALIAS, now, random.Random(r))) for r in range(rounds)]


def measure_ingest_cpu(rounds: int, client) -> tuple[float, float, int]:
    """(handler µs/event, json.loads µs/event, events accepted), medians over interleaved chunks."""
    from functions.ingest.handler import handler

    with stubbed_ingest_wiring(client) as token:
        now = datetime.now(timezone.utc)
        warm = [http_api_event("/v1/ingest", b, token) for b in _ingest_bodies(5, now)]
        for event in warm:  # imports, key verification (then cached 30 s, as in a warm Lambda)
            _check_accepted(handler(event, _Context()), 100)
        bodies = _ingest_bodies(rounds, now)
        events = [http_api_event("/v1/ingest", b, token) for b in bodies]
        contexts = [_Context() for _ in events]
        handler_us, loads_us, accepted = [], [], 0
        for start in range(0, rounds, CPU_CHUNK):
            chunk = range(start, min(start + CPU_CHUNK, rounds))
            began = time.process_time()
            responses = [handler(events[i], contexts[i]) for i in chunk]
            handler_us.append((time.process_time() - began) * 1e6 / (100 * len(chunk)))
            began = time.process_time()
            for i in chunk:
                json.loads(bodies[i])
            loads_us.append((time.process_time() - began) * 1e6 / (100 * len(chunk)))
            accepted += sum(_check_accepted(r, 100) for r in responses)
    return statistics.median(handler_us), statistics.median(loads_us), accepted


def _check_accepted(response: dict, expected: int) -> int:
    if response.get("statusCode") != 200:
        raise RuntimeError(f"ingest answered {response.get('statusCode')}: {response.get('body')}")
    accepted = json.loads(response["body"])["accepted"]
    if accepted != expected:
        raise RuntimeError(f"ingest accepted {accepted} of {expected} fresh events")
    return accepted


def figure_ingest_cpu(report: Report, sizes: Sizes) -> None:
    handler_us, loads_us, _ = measure_ingest_cpu(sizes.cpu_rounds, StubDynamoClient())
    boto_us, boto_loads_us, _ = measure_ingest_cpu(max(sizes.cpu_rounds // 3, CPU_CHUNK), offline_boto3_dynamodb())
    report.figures |= {
        "ingest_cpu_us_per_event": handler_us,
        "json_loads_us_per_event": loads_us,
        "ingest_cpu_vs_json_loads": handler_us / loads_us,
        "ingest_cpu_with_boto3_us_per_event": boto_us,
        "ingest_cpu_with_boto3_vs_json_loads": boto_us / boto_loads_us,
    }
    report.rows.append(
        Row("1  ingest CPU, DynamoDB stubbed", f"{handler_us:.1f} µs/event", f"json.loads {loads_us:.2f} µs",
            f"{handler_us / loads_us:.0f}×", f"≤ {CPU_GOAL_US:.0f} µs", _verdict(handler_us <= CPU_GOAL_US))
    )
    report.rows.append(
        Row("1b ingest CPU, real boto3 (no network)", f"{boto_us:.1f} µs/event",
            f"json.loads {boto_loads_us:.2f} µs", f"{boto_us / boto_loads_us:.0f}×", "", "")
    )
    report.notes.append(
        f"1: 100-event posts through functions.ingest.handler (resolver, auth, parsing, validation, item "
        f"building); process CPU, median of chunks of {CPU_CHUNK} calls, fresh transaction ids each call, "
        "API key verified once then cached as in a warm Lambda. 1 replaces the DynamoDB client with a "
        "stub; 1b keeps boto3 (validation, serialization, signing) and answers its requests in-process."
    )


# -- figures 2-4: the local stack -------------------------------------------------------------------
NAIVE_WRITES_PER_EVENT = 6.0  # 1 raw item + 1 update per matching metric, per event
WRITES_GOAL = 1.1
FRESHNESS_GOAL_MS = 1_000.0
FRESHNESS_POLL_S = 0.010
FRESHNESS_TIMEOUT_S = 10.0


def figure_writes(report: Report, sizes: Sizes, tally: TallyClient, stack) -> None:
    """Items written per accepted event; the pump is stopped, so posting then draining fixes the
    batch shapes (up to BatchSize 100, in sequence order)."""
    stack.pump.stop()
    for thread in threading.enumerate():
        if thread.name == "stream-pump":
            thread.join(timeout=10)
    stack.pump.drain()
    per_shape: dict[int, WriteCounter] = {}
    for per_post in (1, 100):
        with WriteCounter(stack) as writes:
            accepted = 0
            for _ in range(0, sizes.write_events, per_post):
                accepted += tally.ingest(usage_events(per_post, CUSTOMER_ALIAS, tally.now(), tally.rng))
            stack.pump.drain()
        if accepted != sizes.write_events:
            raise RuntimeError(f"expected {sizes.write_events} accepted events, got {accepted}")
        per_shape[per_post] = writes
    for per_post, writes in per_shape.items():
        per_event = writes.total / sizes.write_events
        report.figures[f"writes_per_event_{per_post}_event_posts"] = per_event
        report.figures[f"raw_wcu_per_event_{per_post}_event_posts"] = writes.raw_wcu / sizes.write_events
        report.rows.append(
            Row(f"2  items written/event, {per_post}-event posts",
                f"{per_event:.3f} = ({writes.raw}+{writes.counters})/{sizes.write_events}",
                f"naive {NAIVE_WRITES_PER_EVENT:.0f}", f"{per_event / NAIVE_WRITES_PER_EVENT:.3f}×",
                f"≤ {WRITES_GOAL}" if per_post == 100 else "",
                _verdict(per_event <= WRITES_GOAL) if per_post == 100 else "")
        )
    report.figures["writes_per_event_vs_naive"] = report.figures["writes_per_event_100_event_posts"] / NAIVE_WRITES_PER_EVENT
    wcu_1, wcu_100 = (report.figures[f"raw_wcu_per_event_{p}_event_posts"] for p in (1, 100))
    report.notes.append(
        "2: (raw + counter) write requests the functions sent to the events and counters tables, per "
        "accepted event, with 5 metrics (COUNT, SUM, MAX, UNIQUE, LATEST, no group keys) matching every "
        "event of one customer in one hour. Counted in the shared boto3 client: PutItem, UpdateItem, each "
        "item of TransactWriteItems and BatchWriteItem, conditional failures included; reads excluded. "
        "Posted with the pump stopped, then drained in batches of up to 100. Items, not capacity (figure 7 "
        f"counts capacity by AWS's rules): raw writes cost {wcu_1:.1f} WCU/event in 1-event posts and "
        f"{wcu_100:.1f} in 100-event posts, counting a transactional put as 2."
    )


def figure_end_to_end(report: Report, sizes: Sizes, tally: TallyClient, stack) -> None:
    """HTTPS posts → counters applied with the live pump, against bare BatchWriteItem of the same raw
    items. The two alternate in halves so that both see the same drift of a noisy machine."""
    import boto3

    client = boto3.client("dynamodb")  # the stack's in-process moto
    table = create_bare_table(client)
    e2e_seconds = bare_seconds = 0.0
    half = sizes.e2e_events // 200 * 100
    for _ in range(2):
        posts = [usage_events(100, CUSTOMER_ALIAS, tally.now(), tally.rng) for _ in range(half // 100)]
        items = build_raw_items([event for post in posts for event in post])
        bare_seconds += bare_batch_write(client, table, items)
        e2e_seconds += tally.post_concurrently_then_drain(posts, sizes.e2e_threads, stack.pump)
    events = 2 * half
    e2e_rate, bare_rate = events / e2e_seconds, events / bare_seconds
    report.figures |= {
        "e2e_events_per_s": e2e_rate,
        "bare_batch_write_events_per_s": bare_rate,
        "e2e_vs_bare_batch_write": e2e_rate / bare_rate,
    }
    report.rows.append(
        Row(f"3  local e2e, post → counters ({sizes.e2e_threads} threads)", f"{e2e_rate:,.1f} events/s",
            f"moto BatchWriteItem {bare_rate:,.0f}/s", f"{e2e_rate / bare_rate:.4f}×", "", "")
    )
    report.notes.append(
        f"3: {events:,} events in 100-event posts over HTTP; wall time from the first post until the "
        "pump's drain returns, the live pump aggregating meanwhile. Baseline: the same raw items (built "
        "by the events adapter, untimed) written 25 at a time to a stream-less table of the same "
        "in-process moto. Tally's side also pays a conditional put per event, the stream "
        "pump and the aggregator's counter writes (two counters per metric: a day and a month counter for COUNT and SUM, an hour and a day counter for the others)."
    )


def figure_freshness(report: Report, sizes: Sizes, tally: TallyClient, stack) -> None:
    """Ingest 200 → the event counted in POST /v1/usage, one event at a time, live pump."""
    customer_id = tally.create_customer("bench freshness", FRESHNESS_ALIAS)
    metric_id = tally.metric_ids["COUNT"]
    seen = tally.usage(customer_id, metric_id)
    lags_ms: list[float] = []
    polls_ms: list[float] = []
    batches_before = stack.pump.delivered_batches
    with WriteCounter(stack) as writes:
        for _ in range(sizes.fresh_events):
            tally.ingest(usage_events(1, FRESHNESS_ALIAS, tally.now(), tally.rng))
            accepted_at = time.perf_counter()
            while True:
                asked = time.perf_counter()
                value = tally.usage(customer_id, metric_id)
                answered = time.perf_counter()
                polls_ms.append((answered - asked) * 1000)
                if value > seen:
                    lags_ms.append((answered - accepted_at) * 1000)
                    seen = value
                    break
                if answered - accepted_at > FRESHNESS_TIMEOUT_S:
                    raise RuntimeError(f"an event was not visible in /v1/usage after {FRESHNESS_TIMEOUT_S} s")
                time.sleep(FRESHNESS_POLL_S)
    batches = stack.pump.delivered_batches - batches_before
    p50, p99 = _percentile(lags_ms, 50), _percentile(lags_ms, 99)
    poll_p50 = _percentile(polls_ms, 50)
    report.figures |= {
        "freshness_p50_ms": p50,
        "freshness_p99_ms": p99,
        "usage_poll_p50_ms": poll_p50,
        "writes_per_event_one_at_a_time": writes.total / sizes.fresh_events,
    }
    report.rows.append(
        Row(f"4  freshness p50 / p99 ({sizes.fresh_events} events)", f"{p50:.0f} / {p99:.0f} ms",
            f"usage poll p50 {poll_p50:.0f} ms", "", f"p99 ≤ {FRESHNESS_GOAL_MS:.0f} ms",
            _verdict(p99 <= FRESHNESS_GOAL_MS))
    )
    report.notes.append(
        f"4: single events posted one at a time; time from the ingest 200 to the first POST /v1/usage "
        f"answer that counts the event, polling every {FRESHNESS_POLL_S * 1000:.0f} ms plus the poll's own "
        f"round trip (p50 {poll_p50:.0f} ms). Live pump; it caps the mapping's batching window (1 s on "
        f"AWS) at 0.2 s. {batches} aggregator batches for {sizes.fresh_events} events, so one at a time "
        f"an event costs {writes.total / sizes.fresh_events:.2f} writes."
    )


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(pct / 100 * len(ordered)) - 1)  # nearest-rank
    return ordered[rank]


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


# -- orchestration ----------------------------------------------------------------------------------
PARTS = ("all", "offline", "stack")


def run_all(quick: bool, console: Console, part: str = "all") -> dict[str, float]:
    """Measure every figure, print the table, and return the figures by name. `part` picks the
    figures measured without the local stack ("offline") or on it ("stack"): the two can run as
    separate processes side by side (the CI smoke test does), each ratio still within one run."""
    from infra.local.runtime import LocalStack
    from tally import wiring

    sizes = Sizes.for_run(quick)
    began = time.perf_counter()
    report = Report()
    if part in ("all", "offline"):
        _step(console, "1 ingest handler CPU, DynamoDB stubbed", lambda: figure_ingest_cpu(report, sizes))
        _step(console, "9 invoice PDF", lambda: __import__("infra.bench.pdf").bench.pdf.figure_pdf(report, quick))
        _step(console, "5 draft invoice from the counters (moto in-process)",
              lambda: figure_invoice(report, sizes, lambda text: console.print(f"[dim]  {text}[/dim]")))
        for label, name in OFFLINE_FIGURES:
            _step(console, label, lambda name=name: registered(name)(report, quick))
    if part in ("all", "stack"):
        console.print("[dim]starting the local stack (CDK synth, moto deploy)...[/dim]")
        stack = LocalStack(port=0).start()  # default: the live stream pump runs
        try:
            tally = TallyClient(stack.base_url, stack.api_key)
            try:
                tally.setup_metrics()
                _step(console, "3 end-to-end throughput", lambda: figure_end_to_end(report, sizes, tally, stack))
                _step(console, "4 freshness", lambda: figure_freshness(report, sizes, tally, stack))
                _step(console, "6 alert latency", lambda: figure_alert_latency(report, quick, tally, stack, Row, _percentile))
                # Last, because it stops the live pump to fix the batch shapes.
                _step(console, "2 writes per accepted event", lambda: figure_writes(report, sizes, tally, stack))
                for label, name in STACK_FIGURES:
                    _step(console, label, lambda name=name: registered(name)(report, quick, tally, stack))
            finally:
                tally.close()
        finally:
            stack.stop()
            wiring.reset()  # its cached client belongs to the stopped moto
    report.rows.sort(key=lambda row: row.figure)
    report.notes.sort()
    report.figures["runtime_s"] = time.perf_counter() - began
    _print(console, report, quick)
    return report.figures


def _step(console: Console, label: str, measure: Callable[[], None]) -> None:
    from infra.cli.progress import long_step

    if not console.is_terminal:
        console.print(f"[dim]{label}...[/dim]")  # a log still says which step is running
    with long_step(label, console):  # a spinner with the elapsed time, then "<label>: <s> s"
        measure()


MIN_WIDTH = 140


def _print(console: Console, report: Report, quick: bool) -> None:
    title = "Tally benchmarks" + (" (quick)" if quick else "") + f", {report.figures['runtime_s']:.0f} s"
    table = Table(title=title)
    for column, style in (("Figure", "bold"), ("Tally", "cyan"), ("Baseline (same run)", ""),
                          ("Ratio", "magenta"), ("Goal", "")):
        table.add_column(column, style=style)
    marks = {"met": " [green]met[/green]", "missed": " [red]MISSED[/red]", "": ""}
    for row in report.rows:
        table.add_row(row.figure, row.measured, row.baseline, row.ratio, row.goal + marks[row.verdict])
    if console.width < MIN_WIDTH:  # piped output defaults to 80 columns: too narrow for the table
        console = Console(file=console.file, width=MIN_WIDTH, color_system=console.color_system,
                          force_terminal=console.is_terminal)
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]{note}[/dim]")
