"""Publishes envelopes to SNS: exact JSON body, string message attributes for filter policies."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tally.billing import exact_json
from tally.services.ports import StoreUnavailable

_RETRYABLE = {"Throttling", "ThrottlingException", "InternalError", "ServiceUnavailable", "KMSThrottlingException"}


@lru_cache(maxsize=1)
def sns_client():
    """One client per process (creating clients is slow, and they are thread-safe)."""
    return boto3.client("sns", config=Config(retries={"mode": "standard", "max_attempts": 5}))


class SnsPublisher:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else sns_client()

    def publish(self, topic_arn: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
        """Publish `message` (an envelope: id, type, properties) and return SNS's message id.

        Amounts stay exact: Decimals are written as JSON numbers with all their digits. Attributes
        are String attributes; empty values are left out (SNS rejects them)."""
        for required in ("id", "type", "properties"):
            if required not in message:
                raise ValueError(f"message has no {required!r}: it must be an envelope")
        try:
            response = self.client.publish(
                TopicArn=topic_arn,
                Message=exact_json.dumps(dict(message)),
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": str(value)}
                    for name, value in attributes.items()
                    if value is not None and str(value) != ""
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _RETRYABLE:
                raise StoreUnavailable(f"SNS is unavailable: {code}") from exc
            raise
        return response["MessageId"]
