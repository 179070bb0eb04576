"""The local stack keeps its data across a stop and a start, and across a crash (SIGKILL).

Each stack here has its own state folder, in a process of its own (the session's stack may be up in
this one). The template is synthesized once per state folder and then reused from it, so a restart
costs a deploy, not a synth.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest

from infra.local.runtime import LocalStack, free_port
from infra.local.state import SAVE_INTERVAL
from tests.system.own_process import in_own_process
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system

KEY = "tally_state_tests_key"
PRICE = 2  # cents per token
CREDIT = 300  # cents of free credit, for the balance


def _client(stack: LocalStack, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def _created(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def _world(api: httpx.Client, tag: str, start) -> dict:
    """A customer on a contract with a token price and a credit, and two usage alerts on the tokens."""
    ids = {"tag": tag}
    ids["metric"] = _created(api.post("/v1/billable-metrics/create", json={
        "name": f"{tag} tokens", "aggregation_type": "SUM", "aggregation_key": "tokens",
        "event_type_filter": {"in_values": [tag]}}))
    ids["product"] = _created(api.post("/v1/contract-pricing/products/create", json={
        "name": f"{tag} tokens", "type": "USAGE", "billable_metric_id": ids["metric"]}))
    grant = _created(api.post("/v1/contract-pricing/products/create", json={"name": f"{tag} credit", "type": "FIXED"}))
    card = _created(api.post("/v1/contract-pricing/rate-cards/create", json={"name": f"{tag} card"}))
    assert api.post("/v1/contract-pricing/rate-cards/addRate", json={
        "rate_card_id": card, "product_id": ids["product"], "entitled": True, "rate_type": "FLAT", "price": PRICE,
        "starting_at": rfc3339(start - DAY)}).status_code == 200
    ids["customer"] = _created(api.post("/v1/customers", json={"name": tag, "ingest_aliases": [tag]}))
    _created(api.post("/v1/contracts/create", json={
        "customer_id": ids["customer"], "rate_card_id": card, "starting_at": rfc3339(start),
        "usage_statement_schedule": {"frequency": "MONTHLY", "day": "CONTRACT_START"}}))
    _created(api.post("/v1/contracts/customerCredits/create", json={
        "customer_id": ids["customer"], "product_id": grant, "priority": 1, "name": "Welcome credit",
        "access_schedule": {"schedule_items": [{"amount": CREDIT, "starting_at": rfc3339(start),
                                                "ending_before": rfc3339(start + 31 * DAY)}]}}))
    for threshold in (50, 100):
        ids[f"alert {threshold}"] = _created(api.post("/v1/alerts/create", json={
            "alert_type": "usage_threshold_reached", "name": f"{threshold} tokens", "threshold": threshold,
            "customer_id": ids["customer"], "billable_metric_id": ids["metric"]}))
    return ids


def _ingest(api: httpx.Client, tag: str, batch: str, count: int, tokens: int, at) -> None:
    events = [usage_event(f"{tag}-{batch}-{n}", tag, tag, at, tokens=tokens) for n in range(count)]
    response = api.post("/v1/ingest", json=events)
    assert response.status_code == 200 and response.json() == {"accepted": count, "duplicates": 0}, response.text


def _tokens(api: httpx.Client, world: dict, start) -> Decimal:
    response = api.post("/v1/usage", json={
        "starting_on": rfc3339(start), "ending_before": rfc3339(start + DAY), "window_size": "NONE",
        "customer_ids": [world["customer"]], "billable_metrics": [{"id": world["metric"]}]})
    assert response.status_code == 200, response.text
    (window,) = json.loads(response.text, parse_float=Decimal)["data"]
    return Decimal(window["value"] or 0)


def _bill(api: httpx.Client, world: dict) -> tuple[Decimal, Decimal, Decimal]:
    """(draft invoice subtotal, its total, the customer's net balance) in cents."""
    invoices = json.loads(api.get(f"/v1/customers/{world['customer']}/invoices").text, parse_float=Decimal)["data"]
    (draft,) = [i for i in invoices if i["status"] == "DRAFT" and i["type"] == "USAGE"]
    balance = api.post("/v1/contracts/customerBalances/getNetBalance", json={"customer_id": world["customer"]})
    assert balance.status_code == 200, balance.text
    return Decimal(draft["subtotal"]), Decimal(draft["total"]), json.loads(balance.text, parse_float=Decimal)["data"]["balance"]


def _invoice_page_path(api: httpx.Client, world: dict) -> str:
    """The path of the draft invoice's hosted page, as POST /v1/invoices/getHostedUrl signs it."""
    invoices = api.get(f"/v1/customers/{world['customer']}/invoices").json()["data"]
    (draft,) = [i for i in invoices if i["status"] == "DRAFT" and i["type"] == "USAGE"]
    minted = api.post("/v1/invoices/getHostedUrl", json={"customer_id": world["customer"], "invoice_id": draft["id"]})
    assert minted.status_code == 200, minted.text
    return "/pages/" + minted.json()["data"]["url"].split("/pages/", 1)[1]


def _expected_bill(tokens: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    subtotal = PRICE * tokens
    applied = min(subtotal, Decimal(CREDIT))
    return subtotal, subtotal - applied, CREDIT - applied


class _AlertQueue:
    """An SQS queue subscribed to the alerts topic through the local AWS endpoint, raw delivery."""

    def __init__(self, stack: LocalStack, customer: str) -> None:
        import boto3

        options = {"endpoint_url": stack.aws_endpoint, "region_name": "us-east-1"}
        self.sqs, sns = boto3.client("sqs", **options), boto3.client("sns", **options)
        self.url = self.sqs.create_queue(QueueName=unique("state-alerts"))["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=stack.deployment.outputs["AlertsTopicArn"], Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"customer_id": [customer]})})

    def ids(self) -> list[str]:
        received = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return sorted(json.loads(m["Body"])["id"] for m in received.get("Messages", []))


def _stop_and_start(state_dir) -> dict:
    """Given a world and three batches (one aggregated, one aggregated but not checkpointed, one not
    aggregated), when the stack stops and starts again (and then once more with --fresh): what is
    seen. Runs in a process of its own (see _in_own_process)."""
    tag, start = unique("state"), current_hour() - 3 * HOUR
    at, seen = start + HOUR, {}
    # The pump runs only when drained, so the test decides what is aggregated before the stop.
    stack = LocalStack(api_key=KEY, state_dir=state_dir, live_pump=False).start()
    try:
        seen["first start"] = (stack.restored, stack.state_dir)
        with _client(stack) as api:
            world = seen["world"] = _world(api, tag, start)
            _ingest(api, tag, "first", 10, 3, at)  # 30 tokens: the 50-token alert stays ok
            stack.pump.drain()
            # The second batch reaches the counters, but the snapshot sees the checkpoints from
            # before it, as if the stack had died between the counter writes and the checkpoint:
            # restoring replays it, and the counters' marks must refuse it.
            before_second = stack.pump.checkpoints()
            _ingest(api, tag, "second", 7, 5, at)  # 65 tokens: the 50-token alert fires here
            stack.pump.drain()
            stack.pump.checkpoints = lambda: before_second
            _ingest(api, tag, "third", 4, 11, at)  # acknowledged, never aggregated before the stop
            seen["tokens at the stop"] = _tokens(api, world, start)
            page_link = _invoice_page_path(api, world)  # signed by this stack's page key
        seen["outputs before"] = dict(stack.deployment.outputs)
    finally:
        stack.stop()

    restarted = LocalStack(state_dir=state_dir, live_pump=False).start()  # no key given: the saved one
    try:
        seen["restored"], seen["api key"] = restarted.restored, restarted.api_key
        seen["outputs after"], seen["aws endpoint"] = dict(restarted.deployment.outputs), restarted.aws_endpoint
        alerts = _AlertQueue(restarted, world["customer"])
        restarted.pump.drain()
        with _client(restarted) as api:
            seen["tokens"], seen["bill"] = _tokens(api, world, start), _bill(api, world)
            seen["alerts"] = alerts.ids()
            _ingest(api, tag, "after", 2, 13, at)
            restarted.pump.drain()
            seen["tokens after"], seen["bill after"] = _tokens(api, world, start), _bill(api, world)
            seen["posted again"] = api.post("/v1/ingest", json=[usage_event(f"{tag}-first-0", tag, tag, at, tokens=3)]).json()
            seen["alerts after"] = alerts.ids()
            seen["page after"] = httpx.get(f"{restarted.base_url}{page_link}").status_code  # the key was kept
    finally:
        restarted.stop()

    fresh = LocalStack(state_dir=state_dir, fresh=True).start()
    try:
        with _client(fresh) as api:
            seen["fresh"] = (fresh.restored, api.get("/v1/customers").status_code)
            seen["page fresh"] = httpx.get(f"{fresh.base_url}{page_link}").status_code  # a new key: the link is dead
    finally:
        fresh.stop()
    return seen


def test_a_stop_and_a_start_keep_usage_invoices_balances_and_deliver_what_was_not_aggregated_once(tmp_path):
    seen = in_own_process(_stop_and_start, tmp_path)
    world = seen["world"]

    assert seen["first start"] == (None, tmp_path.resolve())
    assert seen["tokens at the stop"] == 30 + 35
    assert seen["restored"].startswith("restored state as of ") and "stream records to deliver" in seen["restored"]
    assert seen["api key"] == KEY
    # Same template, same physical names: saved AWS commands still name the right table.
    tables = [k for k in seen["outputs before"] if k.endswith("TableName")]
    assert tables and all(seen["outputs after"][k] == seen["outputs before"][k] for k in tables)
    assert seen["outputs after"]["AggregatorDlqUrl"].startswith(seen["aws endpoint"] + "/")

    assert seen["tokens"] == 30 + 35 + 44  # the replayed second batch counted once, the third once
    assert seen["bill"] == _expected_bill(seen["tokens"])
    # The 50-token crossing was published before the stop and is not again; the 100-token one
    # happens on the replayed third batch, once.
    assert seen["alerts"] == [f"{world['alert 100']}:{world['customer']}:1"]

    assert seen["tokens after"] == seen["tokens"] + 26
    assert seen["bill after"] == _expected_bill(seen["tokens after"])
    assert seen["posted again"] == {"accepted": 0, "duplicates": 1}  # deduplication survived too
    assert seen["alerts after"] == []
    assert seen["fresh"] == (None, 401)  # --fresh: nothing restored, and the old key went with the data
    assert (seen["page after"], seen["page fresh"]) == (200, 403)  # the page signing key: kept, then not


# -- a crash, through the CLI ---------------------------------------------------------------------
class _Cli:
    """`tally local up` in a subprocess; its output goes to files (a full pipe would block it)."""

    def __init__(self, tmp_path, name: str, *args: str) -> None:
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "infra.cli", "local", "up", *args],
                                            stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def ready(self, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while "ready at" not in self.out.read_text():
            assert self.process.poll() is None, self.err.read_text()[-3000:]
            assert time.monotonic() < deadline, "the local stack did not start in time"
            time.sleep(0.5)
        return self.out.read_text()

    def kill(self, sig: int) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=120)


def _settled_tokens(api: httpx.Client, world: dict, start, expected) -> Decimal:
    """Poll until the usage is `expected(value)` or 60 s passed (the live pump is a thread away)."""
    deadline = time.monotonic() + 60
    while True:
        value = _tokens(api, world, start)
        if expected(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _with_this_process_synth(state_dir) -> None:
    """Leave in `state_dir` the CDK app this process synthesized (the cache a second `tally local up`
    of that folder finds), so that the CLI under test starts without a synth of its own (some 6 s)."""
    from infra.local import runtime

    template, assembly = runtime._synthesize(None, lambda _: None)
    kept = state_dir / "synth" / runtime.synth_key()
    shutil.copytree(assembly, kept)
    (kept / "template.json").write_text(json.dumps(template))


def test_after_a_sigkill_every_event_acknowledged_before_the_last_save_interval_counts_exactly_once(tmp_path):
    tag, start = unique("crash"), current_hour() - 3 * HOUR
    at = start + HOUR
    port, aws_port, state = free_port(), free_port(), tmp_path / "state"
    _with_this_process_synth(state)
    args = ["--state-dir", str(state), "--port", str(port), "--aws-port", str(aws_port)]
    first = _Cli(tmp_path, "first", *args, "--api-key", KEY)
    try:
        first.ready()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        world = _world(api, tag, start)
        _ingest(api, tag, "early", 40, 1, at)  # 40 tokens, acknowledged well before the kill
        assert _settled_tokens(api, world, start, lambda v: v == 40) == 40
        time.sleep(2 * SAVE_INTERVAL + 1)
        _ingest(api, tag, "late", 5, 1000, at)  # acknowledged just before the kill: may be lost, never doubled
        assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    finally:
        first.process.kill()

    second = _Cli(tmp_path, "second", *args)  # no --api-key: the saved one
    try:
        banner = second.ready()
        assert "restored state as of " in banner and f"State              {state.resolve()}" in banner
        assert f"API key            {KEY}" in banner
        assert f"AWS endpoint       http://127.0.0.1:{aws_port}" in banner
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        restored = _settled_tokens(api, world, start, lambda v: v % 1000 == 40 and v >= 40)
        late = (restored - 40) / 1000
        assert restored % 1000 == 40 and 0 <= late <= 5, restored  # every early event once; late ones at most once
        again = api.post("/v1/ingest", json=[usage_event(f"{tag}-early-{n}", tag, tag, at, tokens=1) for n in range(40)])
        assert again.json() == {"accepted": 0, "duplicates": 40}

        _ingest(api, tag, "after", 3, 7, at)
        assert _settled_tokens(api, world, start, lambda v: v == restored + 21) == restored + 21
        assert second.kill(signal.SIGINT) == 0
        assert "Traceback" not in second.err.read_text()
    finally:
        second.process.kill()


@pytest.mark.parametrize("busy", ["the AWS endpoint", "the state folder"])
def test_a_busy_aws_port_or_state_folder_is_one_clear_line_before_any_synth(tmp_path, busy):
    import fcntl
    import socket

    state = tmp_path / "state"
    state.mkdir()
    with socket.socket() as listener, open(state / "lock", "w") as lock:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        aws_port = listener.getsockname()[1] if busy == "the AWS endpoint" else free_port()
        if busy == "the state folder":
            fcntl.flock(lock, fcntl.LOCK_EX)  # as a running stack holds it
        run = subprocess.run(
            [sys.executable, "-m", "infra.cli", "local", "up", "--state-dir", str(state), "--port", str(free_port()),
             "--aws-port", str(aws_port)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    (line,) = [line for line in run.stderr.splitlines() if line.strip()]
    assert (f"127.0.0.1:{aws_port} is in use" if busy == "the AWS endpoint" else f"another local stack is using {state}") in line
