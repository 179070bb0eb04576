from __future__ import annotations

from functools import lru_cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tally.billing.errors import Conflict
from tally.services.ports import StoreUnavailable

_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
}


@lru_cache(maxsize=1)
def dynamodb():
    """One client per process (creating clients is slow, and they are thread-safe).

    Client-side parameter validation is off: the adapters build every request themselves, DynamoDB
    validates again on the server, and botocore's check cost more CPU than the whole ingest path."""
    return boto3.client(
        "dynamodb",
        config=Config(
            retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32, parameter_validation=False
        ),
    )


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def translate(exc: ClientError) -> Exception:
    """Map a ClientError to StoreUnavailable when it is worth retrying; otherwise keep it."""
    if error_code(exc) in _RETRYABLE:
        return StoreUnavailable(f"DynamoDB is unavailable: {error_code(exc)}")
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
