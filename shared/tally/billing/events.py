"""Usage events: the raw facts, and the rules a batch must pass before any of it is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tally.billing.errors import InvalidInput
from tally.billing import exact_json
from tally.billing.limits import (
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_REQUEST,
    MAX_ID_LENGTH,
    NUMBER_RULE,
    identifier_problem,
    size_problem,
    storable_number,
)
from tally.billing.time import parse_rfc3339

MAX_FUTURE = timedelta(hours=24)
MAX_AGE = timedelta(days=34)  # also the dedup window on transaction_id


@dataclass(frozen=True, slots=True)
class UsageEvent:
    transaction_id: str
    customer_id: str  # the ingest key as sent: a customer id or an ingest alias
    event_type: str
    timestamp: datetime  # event time, UTC
    properties: dict[str, Any] = field(default_factory=dict)  # numbers are int or Decimal


class UsageEventIn(BaseModel):
    """One event of an ingest request, as sent (also the request schema in tally.api.openapi)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transaction_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    event_type: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    timestamp: str
    properties: dict[str, Any] = Field(default_factory=dict)


_BATCH = TypeAdapter(list[UsageEventIn])


def _field_path(loc: tuple[Any, ...], path: str = "usage") -> str:
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse_usage_batch(raw: Any, now: datetime, body_bytes: int | None = None, field: str = "usage") -> list[UsageEvent]:
    """Validate a whole ingest request; raise on the first bad event, naming index and field.

    Nothing is returned unless every event passes, so a caller can never store half a batch.
    `body_bytes`, the request's size, spares measuring each event when no event can be too big.
    `field` names the events in errors (previewEvents sends the same events as `events`).
    """
    if not isinstance(raw, list):
        raise InvalidInput(field, "the body must be a JSON array of events")
    if not 1 <= len(raw) <= MAX_EVENTS_PER_REQUEST:
        raise InvalidInput(field, f"must hold between 1 and {MAX_EVENTS_PER_REQUEST} events, got {len(raw)}")
    try:
        parsed = _BATCH.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidInput(_field_path(first["loc"], field), first["msg"]) from exc

    events = []
    earliest, latest = now - MAX_AGE, now + MAX_FUTURE
    for index, item in enumerate(parsed):
        try:
            timestamp = parse_rfc3339(item.timestamp)
        except ValueError as exc:
            raise InvalidInput(f"{field}[{index}].timestamp", str(exc)) from exc
        if timestamp > latest:
            raise InvalidInput(f"{field}[{index}].timestamp", "must not be more than 24 hours in the future")
        if timestamp < earliest:
            raise InvalidInput(f"{field}[{index}].timestamp", "must not be more than 34 days in the past")
        for name in ("transaction_id", "customer_id", "event_type"):
            problem = identifier_problem(getattr(item, name))
            if problem:
                raise InvalidInput(f"{field}[{index}].{name}", problem)
        _check_properties(index, item.properties, field)
        if body_bytes is None or body_bytes > MAX_EVENT_BYTES:
            problem = size_problem(exact_json.dumps(raw[index]), MAX_EVENT_BYTES, "bytes")
            if problem:
                raise InvalidInput(f"{field}[{index}]", f"as JSON {problem}")
        events.append(
            UsageEvent(item.transaction_id, item.customer_id, item.event_type, timestamp, item.properties)
        )
    return events


def _check_properties(index: int, properties: dict[str, Any], field: str = "usage") -> None:
    # A counter fed by a number DynamoDB cannot hold would be refused in the aggregator, long after
    # the client was told its event was accepted.
    for key, value in properties.items():
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            continue
        if not storable_number(value):
            raise InvalidInput(f"{field}[{index}].properties.{key}", NUMBER_RULE)


def first_wins(events: list[UsageEvent]) -> tuple[list[UsageEvent], list[UsageEvent]]:
    """Split a batch into first occurrences and in-request duplicates of a transaction_id."""
    seen: set[str] = set()
    firsts, repeats = [], []
    for event in events:
        (repeats if event.transaction_id in seen else firsts).append(event)
        seen.add(event.transaction_id)
    return firsts, repeats
