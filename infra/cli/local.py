"""`tally local`: the whole system on an emulated AWS (moto), in this process."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from infra.cli.errors import USAGE, UserError

local_app = typer.Typer(help="The whole system on an emulated AWS (moto), in this process.", no_args_is_help=True)
console = Console()


@local_app.command("up")
def local_up(
    host: str = typer.Option("127.0.0.1", help="Interface for the HTTP API and the AWS endpoint."),
    port: int = typer.Option(8787, help="Port of the Tally HTTP API."),
    aws_port: Optional[int] = typer.Option(
        None, "--aws-port", help="Port of the emulated AWS endpoint. Default: the API port + 1 (8788)."
    ),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="Bearer key to accept. Default: the key of the saved state, else a new one."
    ),
    state_dir: Path = typer.Option(
        Path(".tally"), "--state-dir", help="Folder the stack keeps its data in, restored on the next start."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Start empty: discard the state saved in --state-dir."),
    stripe: bool = typer.Option(
        False, "--stripe", help="Also start localstripe (a fake Stripe API) and deliver invoices to it, not to Stripe."
    ),
    stripe_port: Optional[int] = typer.Option(
        None, "--stripe-port", help="Port of localstripe with --stripe. Default: the API port + 2 (8789)."
    ),
) -> None:
    """Deploy the synthesized CDK template into moto and serve it until Ctrl-C (SIGINT) or SIGTERM.

    The data is saved in --state-dir every 2 seconds and on stop, and restored on the next start.
    """
    from contextlib import ExitStack

    from infra.cli.progress import long_step
    from infra.local.runtime import LocalStack, LocalStackError

    _log_requests()
    steps = ExitStack()

    def progress(step: str) -> None:
        steps.close()  # the previous step is done: its line shows how long it took
        steps.enter_context(long_step(step))

    if aws_port is None:
        aws_port = port + 1 if port else 0  # next to the API's; 0 (a free port) when the API's is free too
    stripe_url = _start_localstripe(host, stripe_port or (port + 2 if port else 0)) if stripe else None
    stack = LocalStack(host=host, port=port, api_key=api_key, moto_port=aws_port, state_dir=state_dir, fresh=fresh,
                       progress=progress)
    try:
        with steps:
            stack.start()
    except LocalStackError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        _end_children()
        os._exit(130)  # the CDK's jsii node process got the same SIGINT; skip its atexit hook
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    example = json.dumps(
        [{"transaction_id": "tx-1", "customer_id": "acme", "event_type": "api_call", "timestamp": now,
          "properties": {"tokens": 42}}]
    )
    print(f"Tally local stack ready at {stack.base_url}")
    print(f"  API key            {stack.api_key}")
    print(f"  AWS endpoint       {stack.aws_endpoint}  (any AWS client: --endpoint-url, region us-east-1)")
    print(f"  State              {stack.state_dir}")
    if stripe_url is not None:
        print(f"  Stripe (local)     {stripe_url}  (any secret key sk_test_...; invoices: GET {stripe_url}/v1/invoices)")
    print(f"  {stack.restored or ('started empty (--fresh)' if fresh else 'started empty')}")
    for name, value in stack.deployment.outputs.items():
        print(f"  {name:<18} {value}")
    print("Post an event:")
    print(
        f"  curl -s -X POST {stack.base_url}/v1/ingest -H 'Authorization: Bearer {stack.api_key}' "
        f"-H 'Content-Type: application/json' -d '{example}'",
        flush=True,
    )
    print("Close billing periods now (the hourly schedule also runs on its own):")
    print(f"  tally local close-periods --port {stack.http.port} --api-key {stack.api_key} --as-of {now}", flush=True)
    stopped.wait()
    print("stopping: saving the state...", flush=True)
    stack.stop()
    _end_children()
    # The CDK's jsii node process shared our terminal's SIGINT and is gone; skip its atexit hook.
    os._exit(0)


_children: list = []  # processes `tally local up` started (localstripe), ended before it exits


def _end_children() -> None:
    while _children:
        _children.pop().terminate()


def _start_localstripe(host: str, port: int) -> str:
    """localstripe in a child process that ends with this one; the delivery function's Stripe
    client is pointed at it (STRIPE_API_BASE, read by tally.settings)."""
    import atexit

    from infra.cli.progress import long_step
    from infra.local.runtime import ensure_free, free_port
    from infra.local.stripe_process import start_subprocess

    if port:
        ensure_free(host, port, "localstripe")
    else:
        port = free_port(host)
    with long_step("starting localstripe"):
        try:
            process = start_subprocess(host, port)
        except RuntimeError as exc:
            raise UserError(str(exc)) from None
    _children.append(process)
    atexit.register(_end_children)  # a failed start exits normally; os._exit paths call it themselves
    url = f"http://{host}:{port}"
    os.environ["STRIPE_API_BASE"] = url
    return url


def _log_requests() -> None:
    """Tally's API requests at INFO, one line each, on stderr; the emulator's own traffic stays at
    DEBUG (infra.local.aws), and other libraries speak up at WARNING."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("infra.local").setLevel(logging.INFO)


@local_app.command("close-periods")
def local_close_periods(
    as_of: Optional[str] = typer.Option(
        None, "--as-of", help="ISO-8601 instant to close periods as of, e.g. 2025-02-02T00:00:00Z (default: now)."
    ),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Base URL of the local stack (overrides --port)."),
    port: int = typer.Option(8787, help="Port of the local stack's HTTP API on 127.0.0.1."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TALLY_API_KEY", help="The stack's API key."),
    timeout: float = typer.Option(300, help="Seconds to wait for the execution to end."),
) -> None:
    """Fire the close-billing-periods schedule of a running local stack and wait for its execution.

    The event is the one EventBridge would send at --as-of.

    Prints the execution's status and output as JSON; exits 1 unless it succeeded.
    """
    from infra.cli.aws import checked_url
    from infra.cli.progress import long_step

    if not api_key:
        raise UserError("--api-key (or TALLY_API_KEY) is required: the key `tally local up` printed", USAGE)
    when = _checked_as_of(as_of) if as_of is not None else datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = checked_url("--endpoint", endpoint) if endpoint else f"http://127.0.0.1:{port}"
    with long_step(f"closing billing periods as of {when}"):
        result = _post_json(f"{base}/local/schedules/close-billing-periods", {"time": when}, api_key, timeout)
    print(json.dumps(result, indent=2))
    if result.get("status") != "SUCCEEDED":
        detail = "".join(f": {part}" for part in (result.get("error"), result.get("cause")) if part)
        raise UserError(f"the close-billing-periods execution ended {result.get('status')}{detail}")


class Dashboard(str, Enum):
    """The dashboards `tally local dashboard` opens (POST /v1/dashboards/getEmbeddableUrl's `dashboard`)."""

    usage = "usage"
    invoices = "invoices"
    credits = "credits"
    commits_and_credits = "commits_and_credits"


@local_app.command("dashboard")
def local_dashboard(
    customer_id: str = typer.Argument(..., metavar="CUSTOMER_ID", help="The customer whose dashboard to open."),
    dashboard: Dashboard = typer.Option(Dashboard.usage, "--dashboard", help="Which dashboard."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Base URL of the local stack (overrides --port)."),
    port: int = typer.Option(8787, help="Port of the local stack's HTTP API on 127.0.0.1."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TALLY_API_KEY", help="The stack's API key."),
) -> None:
    """Print a signed URL of the customer's embeddable dashboard on a running local stack.

    Open it in a browser (no API key needed; it expires in an hour). Reload it to see new usage.
    """
    from infra.cli.aws import checked_url

    if not api_key:
        raise UserError("--api-key (or TALLY_API_KEY) is required: the key `tally local up` printed", USAGE)
    base = checked_url("--endpoint", endpoint) if endpoint else f"http://127.0.0.1:{port}"
    answer = _post_json(f"{base}/v1/dashboards/getEmbeddableUrl",
                        {"customer_id": customer_id, "dashboard": dashboard.value}, api_key, 60)
    print(answer["data"]["url"])


@local_app.command("invoice-page")
def local_invoice_page(
    customer_id: str = typer.Argument(..., help="The customer's id."),
    invoice_id: str = typer.Argument(..., help="The invoice's id (GET /v1/customers/CUSTOMER_ID/invoices lists them)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Base URL of the local stack (overrides --port)."),
    port: int = typer.Option(8787, help="Port of the local stack's HTTP API on 127.0.0.1."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TALLY_API_KEY", help="The stack's API key."),
    days: int = typer.Option(30, min=1, max=90, help="Days the link works."),
) -> None:
    """Print the URL of an invoice's hosted page on a running local stack: open it in a browser, no API key needed.

    The link is signed by the stack's page key and expires after --days (its PDF link is on the page).
    """
    from infra.cli.aws import checked_url

    if not api_key:
        raise UserError("--api-key (or TALLY_API_KEY) is required: the key `tally local up` printed", USAGE)
    base = checked_url("--endpoint", endpoint) if endpoint else f"http://127.0.0.1:{port}"
    answer = _post_json(f"{base}/v1/invoices/getHostedUrl",
                        {"customer_id": customer_id, "invoice_id": invoice_id, "expires_in_seconds": days * 86_400},
                        api_key, 60)
    print(answer["data"]["url"])


def _checked_as_of(as_of: str) -> str:
    """`as_of` unchanged if the schedule's own event model accepts it as `time`; a usage error otherwise."""
    from pydantic import ValidationError

    from tally.services.cycle_close_tasks import ScheduledEvent

    try:
        ScheduledEvent.model_validate({"time": as_of})
    except ValidationError as exc:
        rule = exc.errors()[0]["msg"]
        raise UserError(f"--as-of {as_of!r} is not an instant ({rule}): write it like 2025-02-02T00:00:00Z",
                        USAGE) from None
    return as_of


def _post_json(url: str, body: dict, api_key: str, timeout: float) -> dict:
    """POST `body` to a local stack route and return its JSON answer; a stack that is down or refuses is a UserError."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {api_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            text = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            pass
        raise UserError(f"{url} answered {exc.code}: {text}") from None
    except urllib.error.URLError as exc:
        hint = "is `tally local up` running? check --port or --endpoint"
        raise UserError(f"cannot reach {url}: {exc.reason} ({hint})") from None
    except TimeoutError:
        raise UserError(f"{url} did not answer within {timeout:g} s (--timeout): the run may still be going") from None


class Topic(str, Enum):
    """The topics `tally local tail` follows (TopicTail's TOPIC_OUTPUTS)."""

    alerts = "alerts"
    invoices = "invoices"


@local_app.command("tail")
def local_tail(
    topic: Topic = typer.Argument(..., metavar="TOPIC", help="Which topic to follow: alerts or invoices."),
    endpoint_url: Optional[str] = typer.Option(
        None, "--endpoint-url", help="AWS endpoint: the local stack's, as `tally local up` prints it."
    ),
    stack: str = typer.Option("Tally", help="CloudFormation stack whose topic ARN outputs to use."),
    customer_id: Optional[str] = typer.Option(None, "--customer-id", help="Only this customer's messages."),
    message_type: Optional[str] = typer.Option(None, "--type", help="Only this type, e.g. alerts.usage_threshold_reached."),
) -> None:
    """Subscribe a new SQS queue to the topic and print messages as they arrive.

    Ctrl-C stops, unsubscribes and deletes the queue. Filters are SNS filter policies on message attributes.
    """
    from infra.cli.tail import TopicTail

    policy = {k: [v] for k, v in (("customer_id", customer_id), ("type", message_type)) if v}
    tail = TopicTail(topic.value, stack, endpoint_url, policy or None)
    console.print(f"[dim]tailing {tail.topic_arn} through {tail.queue_url} (Ctrl-C to stop)[/dim]")
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())

    def show(message: dict) -> None:
        properties = message.get("properties", {})
        console.print(
            f"[bold]{message.get('type')}[/bold] [cyan]{message.get('id')}[/cyan] "
            f"customer={properties.get('customer_id')}"
        )
        console.print_json(json.dumps(message.get("properties", {}), default=str))

    from botocore.exceptions import EndpointConnectionError

    try:
        tail.follow(show, stopped.is_set)
        tail.close()
    except EndpointConnectionError:
        raise UserError("the AWS endpoint went away (was the local stack stopped?)") from None
