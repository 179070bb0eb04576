"""previewEvents: the draft invoices a customer would have with some events, nothing stored.

The events are validated exactly as ingest validates them (billing/events.py, the same 400s, named
`events[i]`), folded into counters kept in memory by the aggregator's own code, and the customer's
drafts are priced from those counters (`replace`) or from them and the stored ones (`merge`), by the
same InvoiceService that answers the invoice routes: contracts, commits and credits as they are.
Cost: the events (at most MAX_EVENTS_PER_REQUEST) plus one draft pricing; nothing is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput
from tally.billing.events import UsageEvent, parse_usage_batch
from tally.billing.time import format_rfc3339
from tally.services.aggregate import AggregateService
from tally.services.customers import CustomerService
from tally.services.invoices import DraftInvoice, InvoiceService
from tally.services.ports import CounterStore, EventStore, MetricStore
from tally.services.rating_usage import CounterUsageSource

MODES = ("replace", "merge")
MAX_PREVIEW_PERIODS = 100  # draft periods answered (newest first); a customer has one or two open


@dataclass(frozen=True, slots=True)
class _BothSums:
    """The sums of a counter range in two stores, added together (CounterSums)."""

    parts: tuple

    def add_totals(self, read, group_of, totals) -> None:
        for part in self.parts:
            part.add_totals(read, group_of, totals)


class MergedCounters:
    """The read side of a CounterStore over the stored counters and the preview's: every row of
    both (MAX, UNIQUE and LATEST combine rows as they combine buckets), every sum of both."""

    def __init__(self, stored: CounterStore, preview: CounterStore) -> None:
        self._stored = stored
        self._preview = preview

    def read(self, metric_id, ingest_key, first_bucket, last_bucket, parts=False):
        return [
            *self._stored.read(metric_id, ingest_key, first_bucket, last_bucket, parts),
            *self._preview.read(metric_id, ingest_key, first_bucket, last_bucket, parts),
        ]

    def sums(self, metric_id, ingest_key, first_bucket, last_bucket, parts):
        return _BothSums((
            self._stored.sums(metric_id, ingest_key, first_bucket, last_bucket, parts),
            self._preview.sums(metric_id, ingest_key, first_bucket, last_bucket, parts),
        ))


class EventPreviewService:
    def __init__(
        self,
        customers: CustomerService,
        invoices: InvoiceService,
        metrics: MetricStore,
        counters: CounterStore,
        events: EventStore,
        scratch_counters: Callable[[], CounterStore],
        clock: Callable[[], datetime],
    ) -> None:
        self._customers = customers
        self._invoices = invoices
        self._metrics = metrics
        self._counters = counters
        self._events = events
        self._scratch = scratch_counters  # a fresh in-memory CounterStore per preview
        self._clock = clock

    def preview(self, customer_id: str, events: list[Any], mode: str = "replace") -> list[DraftInvoice]:
        """The customer's draft invoices (newest period first) priced with `events` as its only
        usage (`replace`) or added to its usage (`merge`: an event whose transaction_id is already
        stored is left out, as ingest would count it once)."""
        if mode not in MODES:
            raise InvalidInput("mode", "must be replace or merge")
        customer = self._customers.get(customer_id)
        now = self._clock()
        parsed, given = self._parse(customer, events, mode, now)
        if mode == "merge" and given:  # only ids the client sent can match stored events
            known = {stored.event.transaction_id for stored in self._events.find(sorted(given))}
            parsed = [e for e in parsed if e.transaction_id not in known]
        if customer.archived_at is not None:  # as ingest: its events stop counting at the archive
            parsed = [e for e in parsed if e.timestamp < customer.archived_at]
        scratch = self._scratch()
        streamed = [StreamedEvent(sequence_key(i + 1), event, now) for i, event in enumerate(parsed)]
        AggregateService(scratch, self._metrics).apply_batch("preview", streamed)
        counters = scratch if mode == "replace" else MergedCounters(self._counters, scratch)

        def usage_for(member: Customer) -> CounterUsageSource:
            # Another member of a hierarchy is priced from its own stored usage.
            return CounterUsageSource(member, self._metrics, counters if member.id == customer.id else self._counters)

        drafts, _ = self._invoices.with_usage(usage_for).list(
            customer.id, status="DRAFT", limit=MAX_PREVIEW_PERIODS, newest_first=True
        )
        return drafts

    @staticmethod
    def _parse(customer: Customer, events: list[Any], mode: str, now: datetime) -> tuple[list[UsageEvent], set[str]]:
        """The events as ingest would take them, and the transaction ids the client gave."""
        if not isinstance(events, list):
            raise InvalidInput("events", "must be an array of events")
        if not events:
            if mode == "merge":
                raise InvalidInput("events", "must hold at least one event in merge mode")
            return [], set()
        raw, explicit = [], set()
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise InvalidInput(f"events[{index}]", "must be an object")
            if "customer_id" in event:
                raise InvalidInput(f"events[{index}].customer_id", "is not a field of a preview event (the path names the customer)")
            given = event.get("transaction_id")
            if isinstance(given, str):
                if given in explicit:
                    raise InvalidInput(f"events[{index}].transaction_id", "is repeated in this request")
                explicit.add(given)
            item = {"customer_id": customer.id, **event}
            item.setdefault("timestamp", format_rfc3339(now))  # Metronome: now when not given
            item.setdefault("transaction_id", f"preview-{uuid.uuid4()}")
            raw.append(item)
        # The ingest rules, word for word: the same bounds and the same 400s, named events[i].
        return parse_usage_batch(raw, now, field="events"), explicit
