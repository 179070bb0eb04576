from __future__ import annotations

from functools import lru_cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tally.billing.errors import Conflict
from tally.services.ports import StoreRefused, StoreUnavailable
from tally.services.together import POOL_LEVELS, READS_IN_FLIGHT

_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",  # a single write racing a transaction on its item (adapters/dynamo/audit.py)
}


@lru_cache(maxsize=1)
def dynamodb():
    """One client per process (creating clients is slow, and they are thread-safe).

    Client-side parameter validation is off: the adapters build every request themselves, DynamoDB
    validates again on the server, and botocore's check cost more CPU than the whole ingest path.

    Wrapped so that, inside an API request, each write to the billing table carries the request's
    audit entry in the same transaction (adapters/dynamo/audit.py)."""
    from tally.adapters.dynamo.audit import AuditedClient
    from tally.settings import get_settings

    client = boto3.client(
        "dynamodb",
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=READS_IN_FLIGHT * POOL_LEVELS,  # services/together.py: a connection per thread
            parameter_validation=False,
        ),
    )
    return AuditedClient(client, lambda: get_settings().require("billing_table"))


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


# DynamoDB's words when an item, a key or a number is more than it holds: the caller's input was
# too big (limits.py should have caught it first), never a reason to retry or to answer 500.
_REFUSED = ("item size", "size of hashkey", "size of rangekey", "size limit", "number overflow", "number underflow")


def refusal(exc: ClientError) -> str | None:
    """DynamoDB's reason when it refused a write for what the item would hold, else None."""
    messages = [exc.response.get("Error", {}).get("Message", "")]
    messages += [reason.get("Message") or "" for reason in exc.response.get("CancellationReasons") or []]
    for message in messages:
        if any(words in message.lower() for words in _REFUSED):
            return message
    return None


def translate(exc: ClientError) -> Exception:
    """Map a ClientError to StoreUnavailable when it is worth retrying, to StoreRefused when the
    item would hold more than DynamoDB allows; otherwise keep it."""
    if error_code(exc) in _RETRYABLE:
        return StoreUnavailable(f"DynamoDB is unavailable: {error_code(exc)}")
    reason = refusal(exc)
    if reason is not None:
        return StoreRefused("body", f"holds more than DynamoDB can store ({reason})")
    return exc


def claim(table: str, pk: str, **attributes: str) -> dict:
    """A transaction Put that takes `pk` only if nobody holds it: a uniqueness key, say."""
    item = {"pk": {"S": pk}, "sk": {"S": "#"}, **{name: {"S": value} for name, value in attributes.items()}}
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def transact_or_conflict(client, actions: list[dict], conflict: str) -> None:
    """All the actions or none; a failed condition is a Conflict with this message, not a 500."""
    try:
        client.transact_write_items(TransactItems=actions)
    except ClientError as exc:
        reasons = exc.response.get("CancellationReasons") or []
        if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
            raise Conflict(conflict) from exc
        raise translate(exc) from exc
