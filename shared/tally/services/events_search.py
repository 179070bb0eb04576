"""Looking events up by transaction id: what was stored, and what it matched."""

from __future__ import annotations

from dataclasses import dataclass

from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput
from tally.billing.metrics import BillableMetric
from tally.billing.backfill import BackfillStatus
from tally.services.backfill import BackfillService
from tally.services.ports import CustomerStore, EventStore, MetricStore, StoredEvent

MAX_TRANSACTION_IDS = 100


@dataclass(frozen=True, slots=True)
class SearchHit:
    stored: StoredEvent
    matched_customer: Customer | None
    matched_metrics: list[BillableMetric]


class EventSearchService:
    def __init__(
        self, events: EventStore, customers: CustomerStore, metrics: MetricStore, backfills: BackfillService | None = None
    ) -> None:
        self._events = events
        self._customers = customers
        self._metrics = metrics
        self._backfills = backfills

    def search(self, transaction_ids: list[str]) -> list[SearchHit]:
        if not transaction_ids:
            raise InvalidInput("transactionIds", "must hold at least one transaction id")
        if len(transaction_ids) > MAX_TRANSACTION_IDS:
            raise InvalidInput("transactionIds", f"must hold at most {MAX_TRANSACTION_IDS} ids")
        metrics = self._metrics.all()
        # An event ingested before a metric's activation counts for it once its backfill job has
        # completed. A metric with no job was backfilled within its create request (before jobs).
        views = self._backfills.views(metrics) if self._backfills is not None else {}
        backfilled = {m.id for m in metrics if m.id not in views or views[m.id].status is BackfillStatus.COMPLETED}
        customers: dict[str, Customer | None] = {}
        hits = []
        for stored in self._events.find(transaction_ids):
            key = stored.event.customer_id
            if key not in customers:
                customers[key] = self._customers.get(key) or self._customers.by_alias(key)
            matched = [] if stored.is_duplicate else [
                m for m in metrics if m.counts_ingested_at(stored.ingested_at) or (m.id in backfilled and _backfilled(m, stored))
            ]
            matched = [m for m in matched if m.contribution(stored.event) is not None]
            hits.append(SearchHit(stored, customers[key], matched))
        return hits


def _backfilled(metric: BillableMetric, stored: StoredEvent) -> bool:
    return metric.activated_at is not None and stored.ingested_at < metric.activated_at
