"""Customers and the ingest keys their usage arrives under."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH, MAX_INGEST_ALIASES as MAX_ALIASES, identifier_problem, size_problem


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    external_id: str | None
    ingest_aliases: tuple[str, ...]
    custom_fields: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived_at: datetime | None = None
    salesforce_account_id: str | None = None

    @property
    def ingest_keys(self) -> tuple[str, ...]:
        """Every customer_id value under which this customer's events may have been sent.
        An archived customer has released its aliases (another customer may own them now)."""
        if self.archived_at is not None:
            return (self.id,)
        keys = [self.id, *self.ingest_aliases]
        if self.external_id:
            keys.append(self.external_id)
        return tuple(dict.fromkeys(keys))

    @property
    def claimed_aliases(self) -> tuple[str, ...]:
        """Aliases that must be unique across customers (external_id is a deprecated alias).
        An archived customer claims none: archiving releases them for other customers."""
        if self.archived_at is not None:
            return ()
        return tuple(key for key in self.ingest_keys if key != self.id)


def validate_aliases(field_name: str, aliases: list[str]) -> tuple[str, ...]:
    if len(aliases) > MAX_ALIASES:
        raise InvalidInput(field_name, f"must hold at most {MAX_ALIASES} aliases, got {len(aliases):,}")
    for index, alias in enumerate(aliases):
        if not isinstance(alias, str):
            raise InvalidInput(f"{field_name}[{index}]", "must be a string")
        problem = identifier_problem(alias) or size_problem(alias, MAX_ID_LENGTH)
        if problem:  # an alias is an ingest key, held to an event's customer_id rules
            raise InvalidInput(f"{field_name}[{index}]", problem)
    return tuple(dict.fromkeys(aliases))
