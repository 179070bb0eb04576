"""Ingest: validate a whole request, then store each new transaction_id exactly once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable

from tally.billing.customers import KeyHandover
from tally.billing.events import first_wins, parse_usage_batch
from tally.services.ports import EventStore

# The keys among the given ingest keys whose events are not simply stored under them: archived
# customers' ids and aliases released in the last hour (KeyHandover).
HandoverLookup = Callable[[set[str]], dict[str, KeyHandover]]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    ignored: int = 0  # accepted, not stored: timed where the key counts for no one (KeyHandover)


class IngestService:
    def __init__(self, events: EventStore, clock: Callable[[], datetime], handovers: HandoverLookup | None = None) -> None:
        self._events = events
        self._clock = clock
        self._handovers = handovers

    def ingest(self, body: Any, body_bytes: int | None = None) -> IngestResult:
        now = self._clock()
        events = parse_usage_batch(body, now, body_bytes)  # raises before anything is written
        ignored = 0
        if self._handovers is not None and events:
            # An archived customer's events stop counting from its archive instant, and a released
            # alias's events in its handover hour count for its new owner only: decided here, before
            # storing, so no counter, backfill or search ever sees them otherwise. One batched read.
            handovers = self._handovers({e.customer_id for e in events})
            if handovers:
                kept = []
                for event in events:
                    handover = handovers.get(event.customer_id)
                    key = event.customer_id if handover is None else handover.route(event.timestamp, event.customer_id)
                    if key is not None:
                        kept.append(event if key == event.customer_id else replace(event, customer_id=key))
                ignored, events = len(events) - len(kept), kept
        firsts, repeats = first_wins(events)
        already_known = self._events.put_new(firsts, ingested_at=now)
        duplicates = repeats + already_known
        if duplicates:
            self._events.put_duplicate_receipts(duplicates, ingested_at=now)
        return IngestResult(
            accepted=len(firsts) - len(already_known) + ignored, duplicates=len(duplicates), ignored=ignored
        )
