"""`tally keys`: API keys of a deployment, stored hashed in its billing table."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import typer
from rich.console import Console

from infra.cli.errors import USAGE, UserError

keys_app = typer.Typer(help="API keys of a deployment (stored hashed in its billing table).", no_args_is_help=True)
console = Console()


@contextmanager
def _key_service(stack: str, table: Optional[str], endpoint_url: Optional[str]) -> Iterator:
    """The deployment's ApiKeyService; a missing billing table is a UserError naming it."""
    from botocore.exceptions import ClientError

    from infra.cli.aws import aws_session, stack_output, where
    from tally.adapters.clock import system_clock
    from tally.adapters.dynamo.billing import DynamoApiKeyStore, DynamoBillingStore
    from tally.services.api_keys import ApiKeyService

    session = aws_session(endpoint_url)
    name = table or stack_output(session, stack, "BillingTableName", endpoint_url)
    client = session.client("dynamodb", endpoint_url=endpoint_url)
    try:
        yield ApiKeyService(DynamoApiKeyStore(DynamoBillingStore(name, client)), system_clock)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        raise UserError(f"billing table {name!r} not found {where(session, endpoint_url)}: check --table") from exc


STACK = typer.Option("Tally", help="CloudFormation stack whose BillingTableName output names the table.")
TABLE = typer.Option(None, help="Billing table name (skips the stack lookup).")
ENDPOINT = typer.Option(
    None, "--endpoint-url",
    help="AWS endpoint, e.g. the local stack's as `tally local up` prints it (no AWS set-up needed then).",
)


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., metavar="NAME", help="What the key is for, e.g. backend."),
    stack: str = STACK, table: Optional[str] = TABLE, endpoint_url: Optional[str] = ENDPOINT,
) -> None:
    """Create a key. The plaintext is printed once; only its SHA-256 is stored."""
    if not name.strip():
        raise UserError("NAME must not be empty: say what the key is for", USAGE)
    with _key_service(stack, table, endpoint_url) as keys:
        token, record = keys.create(name)
    console.print(f"key id  {record.key_id}")
    print(token)


@keys_app.command("list")
def keys_list(stack: str = STACK, table: Optional[str] = TABLE, endpoint_url: Optional[str] = ENDPOINT) -> None:
    """List keys (ids and names; never secrets)."""
    with _key_service(stack, table, endpoint_url) as keys:
        records = keys.list()
    for record in records:
        state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "active"
        console.print(f"{record.key_id}  {record.name:<20} {state}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., metavar="KEY_ID", help="Id of the key, as `tally keys list` shows it."),
    stack: str = STACK, table: Optional[str] = TABLE, endpoint_url: Optional[str] = ENDPOINT,
) -> None:
    """Revoke a key by id. Running functions stop accepting it within 30 s (their verify cache)."""
    with _key_service(stack, table, endpoint_url) as keys:
        record = keys.revoke(key_id)
    console.print(f"revoked {record.key_id} ({record.name})")
