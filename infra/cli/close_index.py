"""`tally close-index`: the cycle-close wake index (tally.adapters.dynamo.close_index) of a
deployment, through any AWS endpoint."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

close_index_app = typer.Typer(help="The cycle-close wake index: which customers a run reads.", no_args_is_help=True)
console = Console()


@close_index_app.command(
    "backfill",
    help="Index the contracts and customer-level commits and credits stored before the wake index "
    "existed (once, after the upgrade that adds it): each becomes due at once, and the next cycle close "
    "run reads its customer once and puts it to sleep until its next period end. Safe to run again.",
)
def close_index_backfill(
    every: bool = typer.Option(False, "--all", help="Make every entry due, not only the missing ones (after "
                               "shortening the grace period: an entry holds a period end plus the grace it was set with)."),
    stack: str = typer.Option("Tally", help="CloudFormation stack whose table outputs to use."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="AWS endpoint, e.g. the local stack's."),
) -> None:
    from infra.cli.aws import aws_session, stack_output
    from tally.adapters.dynamo.close_index import DynamoCloseIndex

    session = aws_session(endpoint_url)
    table = stack_output(session, stack, "BillingTableName", endpoint_url)
    added = DynamoCloseIndex(table, session.client("dynamodb", endpoint_url=endpoint_url)).backfill(every)
    console.print(f"{added} documents indexed")
