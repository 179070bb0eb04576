"""`tally keys`: API keys of a deployment, stored hashed in its billing table."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

keys_app = typer.Typer(help="API keys of a deployment (stored hashed in its billing table).", no_args_is_help=True)
console = Console()


def _billing_table(stack: str, table: Optional[str], endpoint_url: Optional[str]) -> tuple[str, Optional[str]]:
    if table:
        return table, endpoint_url
    import boto3

    outputs = boto3.client("cloudformation", endpoint_url=endpoint_url).describe_stacks(StackName=stack)["Stacks"][0]
    by_key = {o["OutputKey"]: o["OutputValue"] for o in outputs.get("Outputs", [])}
    return by_key["BillingTableName"], endpoint_url


def _key_service(stack: str, table: Optional[str], endpoint_url: Optional[str]):
    import boto3

    from tally.adapters.clock import system_clock
    from tally.adapters.dynamo.billing import DynamoApiKeyStore, DynamoBillingStore
    from tally.services.api_keys import ApiKeyService

    name, endpoint = _billing_table(stack, table, endpoint_url)
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    return ApiKeyService(DynamoApiKeyStore(DynamoBillingStore(name, client)), system_clock)


STACK = typer.Option("Tally", help="CloudFormation stack whose BillingTableName output to use.")
TABLE = typer.Option(None, help="Billing table name (skips the stack lookup).")
ENDPOINT = typer.Option(None, "--endpoint-url", help="AWS endpoint, e.g. the local stack's moto endpoint.")


@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="What the key is for."), stack: str = STACK,
                table: Optional[str] = TABLE, endpoint_url: Optional[str] = ENDPOINT) -> None:
    """Create a key. The plaintext is printed once; only its SHA-256 is stored."""
    token, record = _key_service(stack, table, endpoint_url).create(name)
    console.print(f"key id  {record.key_id}")
    print(token)


@keys_app.command("list")
def keys_list(stack: str = STACK, table: Optional[str] = TABLE, endpoint_url: Optional[str] = ENDPOINT) -> None:
    """List keys (ids and names; never secrets)."""
    for record in _key_service(stack, table, endpoint_url).list():
        state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "active"
        console.print(f"{record.key_id}  {record.name:<20} {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, stack: str = STACK, table: Optional[str] = TABLE,
                endpoint_url: Optional[str] = ENDPOINT) -> None:
    """Revoke a key by id. Running functions stop accepting it within 30 s (their verify cache)."""
    record = _key_service(stack, table, endpoint_url).revoke(key_id)
    console.print(f"revoked {record.key_id} ({record.name})")
