"""Ingest: validate a whole request, then store each new transaction_id exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from tally.billing.events import first_wins, parse_usage_batch
from tally.services.ports import EventStore


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


class IngestService:
    def __init__(self, events: EventStore, clock: Callable[[], datetime]) -> None:
        self._events = events
        self._clock = clock

    def ingest(self, body: Any, body_bytes: int | None = None) -> IngestResult:
        now = self._clock()
        events = parse_usage_batch(body, now, body_bytes)  # raises before anything is written
        firsts, repeats = first_wins(events)
        already_known = self._events.put_new(firsts, ingested_at=now)
        duplicates = repeats + already_known
        if duplicates:
            self._events.put_duplicate_receipts(duplicates, ingested_at=now)
        return IngestResult(accepted=len(firsts) - len(already_known), duplicates=len(duplicates))
