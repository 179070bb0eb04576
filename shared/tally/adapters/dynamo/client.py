from __future__ import annotations

from functools import lru_cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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
