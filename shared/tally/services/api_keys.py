"""API keys: bearer tokens, stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from datetime import datetime
from typing import Callable

from tally.billing.errors import NotFound, Unauthorized
from tally.services.ports import ApiKeyRecord, ApiKeyStore

KEY_PREFIX = "tally_"
# A verified key is trusted for this long without a read; revocation takes effect within it.
VERIFY_CACHE_SECONDS = 30.0


def hash_api_key(token: str) -> str:
    """Keys are 256-bit random, so a fast hash is enough (no dictionary to guard against)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyService:
    def __init__(self, store: ApiKeyStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self._verified: dict[str, tuple[float, str]] = {}  # key hash -> (checked at, key id)

    def create(self, name: str, token: str | None = None) -> tuple[str, ApiKeyRecord]:
        """Create a key; the plaintext is returned once and never stored."""
        token = token or new_api_key()
        record = ApiKeyRecord(
            key_id=str(uuid.uuid4()), key_hash=hash_api_key(token), name=name, created_at=self._clock()
        )
        self._store.put(record)
        return token, record

    def verify(self, authorization: str | None) -> str:
        """Accept `Bearer <key>` for a known, unrevoked key and return its id; raise Unauthorized
        otherwise."""
        if not authorization:
            raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <api key>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
        key_hash = hash_api_key(token)
        checked = self._verified.get(key_hash)
        if checked is not None and time.monotonic() - checked[0] < VERIFY_CACHE_SECONDS:
            return checked[1]
        record = self._store.by_hash(key_hash)
        if record is None or record.revoked_at is not None:
            self._verified.pop(key_hash, None)
            raise Unauthorized("the API key is not valid")
        self._verified[key_hash] = (time.monotonic(), record.key_id)
        return record.key_id

    def list(self) -> list[ApiKeyRecord]:
        return self._store.list()

    def revoke(self, key_id: str) -> ApiKeyRecord:
        try:
            return self._store.revoke(key_id, self._clock())
        except KeyError as exc:
            raise NotFound(f"api key {key_id} not found") from exc
