"""Starts a Lambda function asynchronously (InvocationType Event): Lambda queues the event and
retries it twice on error, so the caller returns at once."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tally.services.ports import StoreUnavailable


@lru_cache(maxsize=1)
def lambda_client():
    return boto3.client("lambda")


class AsyncInvoker:
    def __init__(self, function_name: str, client: Any = None) -> None:
        self._function_name = function_name
        self._client = client

    def invoke(self, payload: dict) -> None:
        client = self._client if self._client is not None else lambda_client()
        try:
            client.invoke(FunctionName=self._function_name, InvocationType="Event", Payload=json.dumps(payload).encode())
        except ClientError as exc:
            raise StoreUnavailable(f"could not start {self._function_name}: {exc}") from exc
