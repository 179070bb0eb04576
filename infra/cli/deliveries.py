"""`tally deliveries`: invoice deliveries parked in the delivery DLQ (a billing provider kept
failing, invoice.billing_provider_error was published), listed and sent back once the cause is
fixed. A redelivered invoice resumes from what the provider already holds: never a second one."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

deliveries_app = typer.Typer(
    help="Invoice deliveries to billing providers that failed: list them, and redeliver them.",
    no_args_is_help=True,
)
console = Console()

STACK = typer.Option("Tally", help="CloudFormation stack whose queue outputs to use.")
ENDPOINT = typer.Option(None, "--endpoint-url", help="AWS endpoint, e.g. the local stack's moto endpoint.")


def _queues(stack: str, endpoint_url: Optional[str]):
    from infra.cli.aws import aws_session, stack_output

    session = aws_session(endpoint_url)
    dlq = stack_output(session, stack, "InvoiceDeliveryDlqUrl", endpoint_url)
    queue = stack_output(session, stack, "InvoiceDeliveryQueueUrl", endpoint_url)
    return session.client("sqs", endpoint_url=endpoint_url), dlq, queue


def _invoice_id(body: str) -> str:
    try:
        properties = json.loads(body)["properties"]
        if "invoice_id" not in properties and "workflow_id" in properties:
            # a STRIPE payment gate's crossing still waiting for its charge (payment_gate.threshold_reached)
            return f"threshold-billing workflow {properties['workflow_id']}"
        return str(properties["invoice_id"])
    except (ValueError, KeyError, TypeError):
        return "(not an invoice message)"


def _drain(sqs, url: str, visibility: int):
    """Every message of the queue, each received once (hidden for `visibility` seconds)."""
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                       WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return
        yield from messages


@deliveries_app.command("list")
def deliveries_list(stack: str = STACK, endpoint_url: Optional[str] = ENDPOINT) -> None:
    """The invoice ids waiting in the delivery DLQ (they stay there)."""
    sqs, dlq, _ = _queues(stack, endpoint_url)
    messages = list(_drain(sqs, dlq, visibility=60))
    for message in messages:  # seen, not taken: visible again at once
        sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    for message in messages:
        print(_invoice_id(message["Body"]))
    console.print(f"{len(messages)} parked", style="dim")


@deliveries_app.command("redrive")
def deliveries_redrive(stack: str = STACK, endpoint_url: Optional[str] = ENDPOINT) -> None:
    """Send every parked delivery back to the delivery queue.

    Each leaves the DLQ only once the queue has it, so a failure part-way loses nothing.
    """
    sqs, dlq, queue = _queues(stack, endpoint_url)
    moved = 0
    for message in _drain(sqs, dlq, visibility=60):
        sqs.send_message(QueueUrl=queue, MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
        moved += 1
    print(f"redelivered {moved} invoice deliveries")
