"""Customers: creation, lookup and ingest aliases."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Callable

from tally.billing.customers import Customer, validate_aliases
from tally.billing.errors import InvalidInput, NotFound
from tally.services.ports import CustomerStore, Page


class CustomerService:
    def __init__(self, store: CustomerStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def create(
        self,
        name: str,
        ingest_aliases: list[str],
        external_id: str | None,
        custom_fields: dict[str, str],
    ) -> Customer:
        if not name or not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        aliases = validate_aliases("ingest_aliases", ingest_aliases)
        if external_id is not None and not external_id.strip():
            raise InvalidInput("external_id", "must be a non-empty string when given")
        if external_id is not None and len(external_id) > 128:
            raise InvalidInput("external_id", "must be at most 128 characters")
        now = self._clock()
        customer = Customer(
            id=str(uuid.uuid4()),
            name=name,
            external_id=external_id,
            ingest_aliases=aliases,
            custom_fields=dict(custom_fields),
            created_at=now,
            updated_at=now,
        )
        self._store.create(customer)  # Conflict if an alias is taken; nothing is written then
        return customer

    def get(self, customer_id: str) -> Customer:
        customer = self._store.get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer

    def by_alias(self, alias: str) -> Customer | None:
        return self._store.by_alias(alias)

    def list(self, limit: int, cursor: str | None) -> Page:
        return self._store.list(limit, cursor)

    def set_ingest_aliases(self, customer_id: str, aliases: list[str]) -> Customer:
        before = self.get(customer_id)
        after = replace(
            before,
            ingest_aliases=validate_aliases("ingest_aliases", aliases),
            updated_at=self._clock(),
        )
        self._store.replace_aliases(before, after)
        return after
