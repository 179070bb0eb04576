"""Ingest: validate a whole request, then store each new transaction_id exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from tally.billing.events import first_wins, parse_usage_batch
from tally.services.ports import EventStore

# The archive instants of the archived customers whose ids are among the given ingest keys.
ArchivedLookup = Callable[[set[str]], dict[str, datetime]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    ignored: int = 0  # accepted, but sent under an archived customer's id for a time from its archive on


class IngestService:
    def __init__(self, events: EventStore, clock: Callable[[], datetime], archived: ArchivedLookup | None = None) -> None:
        self._events = events
        self._clock = clock
        self._archived = archived

    def ingest(self, body: Any, body_bytes: int | None = None) -> IngestResult:
        now = self._clock()
        events = parse_usage_batch(body, now, body_bytes)  # raises before anything is written
        ignored = 0
        if self._archived is not None and events:
            # An archived customer's events stop counting from its archive instant: they are not
            # stored, so no counter, backfill or search ever sees them. (Its aliases were released
            # when it was archived, so only its own id can still name it.) One batched read a request.
            archived = self._archived({e.customer_id for e in events})
            if archived:
                kept = [e for e in events if not (e.customer_id in archived and e.timestamp >= archived[e.customer_id])]
                ignored, events = len(events) - len(kept), kept
        firsts, repeats = first_wins(events)
        already_known = self._events.put_new(firsts, ingested_at=now)
        duplicates = repeats + already_known
        if duplicates:
            self._events.put_duplicate_receipts(duplicates, ingested_at=now)
        return IngestResult(
            accepted=len(firsts) - len(already_known) + ignored, duplicates=len(duplicates), ignored=ignored
        )
