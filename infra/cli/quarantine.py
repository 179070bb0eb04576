"""`tally quarantine`: the (record, metric) pairs a deployment's aggregator could not count, listed
and re-applied (tally.services.quarantine), through any AWS endpoint."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

quarantine_app = typer.Typer(
    help="Usage the aggregator could not count: list it, and re-apply it once its cause is fixed.",
    no_args_is_help=True,
)
console = Console()

STACK = typer.Option("Tally", help="CloudFormation stack whose table outputs to use.")
ENDPOINT = typer.Option(None, "--endpoint-url", help="AWS endpoint, e.g. the local stack's moto endpoint.")


def _service(stack: str, endpoint_url: Optional[str]):
    from infra.cli.aws import aws_session, stack_output
    from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
    from tally.adapters.dynamo.counters import DynamoCounterStore
    from tally.services.quarantine import QuarantineService

    session = aws_session(endpoint_url)
    counters_table = stack_output(session, stack, "CountersTableName", endpoint_url)
    billing_table = stack_output(session, stack, "BillingTableName", endpoint_url)
    client = session.client("dynamodb", endpoint_url=endpoint_url)
    counters = DynamoCounterStore(counters_table, client, raw_reads=False)
    metrics = DynamoMetricStore(DynamoBillingStore(billing_table, client))
    return QuarantineService(counters, metrics)


def _pair_json(pair) -> dict:
    from tally.billing.quarantine import event_json

    return {
        "metric_id": pair.metric_id,
        "transaction_id": pair.transaction_id,
        "state": pair.state,
        "reason": pair.reason,
        "counters": list(pair.buckets),
        "event": json.loads(event_json(pair.event)),
    }


@quarantine_app.command("list")
def quarantine_list(
    metric_id: Optional[str] = typer.Option(None, "--metric-id", help="Only this metric's pairs."),
    state: Optional[str] = typer.Option(None, help="Only pairs in this state: pending or applied."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, with the whole event."),
    stack: str = STACK,
    endpoint_url: Optional[str] = ENDPOINT,
) -> None:
    """List quarantined pairs: metric, event, the counters that miss it, the reason and the state."""
    pairs = _service(stack, endpoint_url).list(metric_id, state)
    if as_json:
        for pair in pairs:
            print(json.dumps(_pair_json(pair)))
        return
    if not pairs:
        console.print("no quarantined pairs")
        return
    table = Table("metric", "transaction_id", "customer", "timestamp", "state", "reason")
    for pair in pairs:
        table.add_row(pair.metric_id, pair.transaction_id, pair.event.customer_id,
                      pair.event.timestamp.isoformat(), pair.state, pair.reason)
    console.print(table)
    pending = sum(pair.state == "pending" for pair in pairs)
    console.print(f"{len(pairs)} pairs, {pending} pending")


@quarantine_app.command(
    "reapply",
    help="Re-apply a metric's pending pairs under the rules in force now. Each is counted once, ever; "
    "one still refused stays pending with its reason. Exit 1 if any is still refused.",
)
def quarantine_reapply(
    metric_id: str = typer.Argument(..., help="The metric whose pending pairs to re-apply."),
    transaction_ids: Optional[list[str]] = typer.Option(
        None, "--transaction-id", help="Only this event's pair (repeat the option for several)."
    ),
    stack: str = STACK,
    endpoint_url: Optional[str] = ENDPOINT,
) -> None:
    results = _service(stack, endpoint_url).reapply(metric_id, transaction_ids or None)
    for result in results:
        line = f"{result.pair.transaction_id}  {result.outcome}"
        console.print(line + (f": {result.reason}" if result.reason else ""), highlight=False)
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in ("reapplied", "already applied", "still refused")}
    console.print(", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    if counts["still refused"]:
        raise typer.Exit(1)
