"""Billing provider secrets (a Stripe secret key) in AWS Secrets Manager: never in a table, never
in a log. The API function writes them (create or put, by name); only the delivering function
reads them, under a role that grants GetSecretValue on Tally's secret prefix alone."""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tally.services.ports import StoreUnavailable

_RETRYABLE = {"ThrottlingException", "InternalServiceError", "ServiceUnavailable"}
CACHE_SECONDS = 300.0  # a warm function re-reads a rotated key within five minutes


@lru_cache(maxsize=1)
def secrets_client():
    return boto3.client("secretsmanager", config=Config(retries={"mode": "standard", "max_attempts": 5}))


class SecretsManagerVault:
    def __init__(self, client: Any = None, clock=time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else secrets_client()

    def put(self, name: str, value: str) -> None:
        """Create the secret, or store a new version of it. The value never reaches an exception
        message or a log line from here."""
        try:
            try:
                self.client.create_secret(Name=name, SecretString=value,
                                          Description="A Tally billing provider credential")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
                    raise
                self.client.put_secret_value(SecretId=name, SecretString=value)
        except ClientError as exc:
            raise _translate(exc, name) from None  # `from None`: the request (with the value) stays out of tracebacks
        with self._lock:
            self._cache.pop(name, None)

    def get(self, name: str) -> str:
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and self._clock() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            value = self.client.get_secret_value(SecretId=name)["SecretString"]
        except ClientError as exc:
            raise _translate(exc, name) from None
        with self._lock:
            self._cache[name] = (self._clock(), value)
        return value


class SecretMissing(Exception):
    """The secret a configuration names does not exist (deleted outside Tally)."""


def _translate(exc: ClientError, name: str) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in _RETRYABLE:
        return StoreUnavailable(f"Secrets Manager is unavailable: {code}")
    if code == "ResourceNotFoundException":
        return SecretMissing(f"secret {name} does not exist")
    return RuntimeError(f"Secrets Manager refused {code} on secret {name}")
