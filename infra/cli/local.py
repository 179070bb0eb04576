"""`tally local`: the whole system on an emulated AWS (moto), in this process."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import datetime, timezone
from typing import Optional

import typer
from rich.console import Console

local_app = typer.Typer(help="The whole system on an emulated AWS (moto), in this process.", no_args_is_help=True)
console = Console()


@local_app.command("up")
def local_up(
    host: str = typer.Option("127.0.0.1", help="Interface for the HTTP API and the moto endpoint."),
    port: int = typer.Option(8787, help="Port of the Tally HTTP API."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Bearer key to accept; generated if omitted."),
    moto_port: int = typer.Option(0, help="Port of the emulated AWS endpoint (0 picks a free one)."),
) -> None:
    """Deploy the synthesized CDK template into moto and serve it until SIGINT or SIGTERM."""
    from infra.local.runtime import LocalStack

    console.print("[dim]synthesizing the CDK app and deploying it into moto...[/dim]")
    stack = LocalStack(host=host, port=port, api_key=api_key, moto_port=moto_port).start()
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
    print("stopping...", flush=True)
    stack.stop()
    # The CDK's jsii node process shared our terminal's SIGINT and is gone; skip its atexit hook.
    os._exit(0)


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
    """Fire the close-billing-periods schedule of a running local stack, with the event EventBridge
    would send at --as-of; print the execution's status and output (exit 1 unless it succeeded)."""
    import urllib.error
    import urllib.request

    if not api_key:
        console.print("[red]--api-key (or TALLY_API_KEY) is required[/red]")
        raise typer.Exit(2)
    base = (endpoint or f"http://127.0.0.1:{port}").rstrip("/")
    when = as_of or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = urllib.request.Request(
        f"{base}/local/schedules/close-billing-periods",
        data=json.dumps({"time": when}).encode(),
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {api_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        console.print(f"[red]{exc.code}[/red] {exc.read().decode(errors='replace')}")
        raise typer.Exit(1) from exc
    except urllib.error.URLError as exc:
        console.print(f"[red]cannot reach {base}: {exc.reason}[/red] (is `tally local up` running?)")
        raise typer.Exit(1) from exc
    print(json.dumps(result, indent=2))
    if result.get("status") != "SUCCEEDED":
        raise typer.Exit(1)


@local_app.command("tail")
def local_tail(
    topic: str = typer.Argument(..., help="alerts or invoices"),
    endpoint_url: Optional[str] = typer.Option(
        None, "--endpoint-url", help="AWS endpoint: the local stack's, as `tally local up` prints it."
    ),
    stack: str = typer.Option("Tally", help="CloudFormation stack whose topic ARN outputs to use."),
    customer_id: Optional[str] = typer.Option(None, "--customer-id", help="Only this customer's messages."),
    message_type: Optional[str] = typer.Option(None, "--type", help="Only this type, e.g. alerts.usage_threshold_reached."),
) -> None:
    """Subscribe a new SQS queue to the topic and print messages as they arrive (Ctrl-C stops,
    unsubscribes and deletes the queue). Filters are SNS filter policies on message attributes."""
    from infra.cli.tail import TopicTail

    policy = {k: [v] for k, v in (("customer_id", customer_id), ("type", message_type)) if v}
    tail = TopicTail(topic, stack, endpoint_url, policy or None)
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
        console.print("[red]the AWS endpoint went away[/red] (was the local stack stopped?)")
        raise typer.Exit(1) from None
