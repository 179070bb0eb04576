"""Issue 18, customers: previewEvents and costs, priced from real counters (moto DynamoDB), the
contracts tests' fake catalog (API calls: 2 each until Nov 15, then 1 each for the first 100 of a
period, 0.5 beyond) and the real invoice service. Now is Nov 24 2026 12:00; the contract bills
monthly from Oct 1, so October (in its grace) and November are drafts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tally.adapters.dynamo.billing import DynamoMetricStore
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.adapters.memory import MemoryCounterStore, MemoryCustomerStore, MemoryEventStore, MemoryMetricStore
from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric
from tally.services.aggregate import AggregateService
from tally.services.breakdowns import BreakdownService
from tally.services.customer_costs import CustomerCostService
from tally.services.customers import CustomerService
from tally.services.event_preview import EventPreviewService
from tally.services.ingest import IngestService
from tally.services.rating_usage import CounterUsageSource
from tests.service.test_contracts_service import FakeCatalog
from tests.service.test_cycle_close import NOV, OCT, _contract, _world

UTC = timezone.utc
NOV_20, NOV_21, NOV_22 = (datetime(2026, 11, d, tzinfo=UTC) for d in (20, 21, 22))


def call(i, when, customer="acme"):
    return {"transaction_id": f"t{i}", "customer_id": customer, "event_type": "call",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {}}


@pytest.fixture()
def w(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    client = dynamo["client"]
    events, counters = DynamoEventStore(dynamo["events"], client), DynamoCounterStore(dynamo["counters"], client)
    metrics_box = {}
    world = _world(dynamo, clock, FakeCatalog(), lambda c: CounterUsageSource(c, metrics_box["m"], counters))
    metrics = metrics_box["m"] = DynamoMetricStore(world.billing)
    metrics.put(BillableMetric("m-calls", "calls", Aggregation.COUNT, None, None, (), (), activated_at=OCT))
    world.events, world.counters, world.metrics = events, counters, metrics
    world.ingest = IngestService(events, clock)
    world.preview = EventPreviewService(
        CustomerService(world.billing, clock), world.invoices, metrics, counters, events, MemoryCounterStore, clock
    )
    world.costs = CustomerCostService(BreakdownService(world.invoices))
    _contract(world)
    # Stored usage: 3 calls on Nov 20 (3 × 1) and 2 on Nov 21 (2 × 1).
    world.ingest.ingest([call(1, NOV_20), call(2, NOV_20), call(3, NOV_20), call(4, NOV_21), call(5, NOV_21)])
    streamed = [StreamedEvent(sequence_key(10**20 + n), s.event, s.ingested_at)
                for n, s in enumerate(events.scan_ingested_before(clock.now + timedelta(hours=1)))]
    AggregateService(counters, metrics).apply_batch("shard-1", streamed)
    return world


@pytest.fixture()
def bare(clock):
    """Validation alone, on memory stores: a refusal happens before anything is read or priced."""
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    customers = CustomerService(MemoryCustomerStore(), clock)
    customer = customers.create("Acme", ["acme"], None, {})
    events = MemoryEventStore()
    preview = EventPreviewService(customers, None, MemoryMetricStore(), MemoryCounterStore(), events, MemoryCounterStore, clock)
    return SimpleNamespace(customer=customer, preview=preview, ingest=IngestService(events, clock), costs=CustomerCostService(None))


def totals(drafts) -> list[tuple]:
    return [(d.invoice.starting_at, d.invoice.total) for d in drafts]


def preview_event(when=None, transaction_id=None, **more):
    event = {"event_type": "call", "properties": {}, **more}
    if when is not None:
        event["timestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if transaction_id is not None:
        event["transaction_id"] = transaction_id
    return event


def test_preview_prices_the_events_alone_or_merged_with_stored_usage_and_stores_nothing(w):
    cid = w.customer.id
    stored_before = totals(w.invoices.list(cid, status="DRAFT", newest_first=True)[0])
    assert stored_before == [(NOV, Decimal("5.00")), (OCT, Decimal("0.00"))]

    replaced = w.preview.preview(cid, [preview_event(NOV_22), preview_event(), preview_event(OCT + timedelta(days=30))], "replace")
    # Nov 22 and now (no timestamp: Nov 24 12:00) in November; Oct 31 at October's 2 each.
    assert totals(replaced) == [(NOV, Decimal("2.00")), (OCT, Decimal("2.00"))]

    merged = w.preview.preview(cid, [preview_event(NOV_22, "new-1"), preview_event(NOV_22, "t1")], "merge")
    # t1 is stored already: ingest would count it once, so only new-1 adds to the 5 stored calls.
    assert totals(merged) == [(NOV, Decimal("6.00")), (OCT, Decimal("0.00"))]

    assert totals(w.invoices.list(cid, status="DRAFT", newest_first=True)[0]) == stored_before
    assert w.events.find(["new-1"]) == []
    with pytest.raises(NotFound):
        w.preview.preview("nobody", [preview_event()], "replace")


@pytest.mark.parametrize(
    "events, mode, field",
    [
        ([preview_event(datetime(2026, 12, 26, tzinfo=UTC))], "replace", "events[0].timestamp"),  # > 24 h ahead
        ([preview_event(datetime(2026, 10, 1, tzinfo=UTC))], "replace", "events[0].timestamp"),  # > 34 days back
        ([preview_event(), {"event_type": "", "properties": {}}], "replace", "events[1].event_type"),
        ([preview_event(), preview_event(properties={"n": 10**40 + 1})], "replace", "events[1].properties.n"),
        ([preview_event(transaction_id="x"), preview_event(transaction_id="x")], "merge", "events[1].transaction_id"),
        ([dict(preview_event(), customer_id="acme")], "replace", "events[0].customer_id"),
        ([preview_event()] * 101, "replace", "events"),
        ([], "merge", "events"),
        ([preview_event()], "upsert", "mode"),
    ],
    ids=["too far ahead", "too old", "empty event type", "number DynamoDB cannot hold", "repeated transaction id",
         "a customer id", "more events than ingest takes", "merge with no events", "unknown mode"],
)
def test_preview_refuses_what_ingest_refuses_with_the_same_rule(bare, events, mode, field):
    w = bare
    with pytest.raises(InvalidInput) as refused:
        w.preview.preview(w.customer.id, events, mode)
    assert refused.value.field == field
    if field.startswith("events[") and not field.endswith("transaction_id") and not field.endswith("customer_id"):
        index = int(field[7])
        as_ingest = [dict(e, customer_id="acme", transaction_id=f"i{n}",
                          timestamp=e.get("timestamp", "2026-11-24T12:00:00Z")) for n, e in enumerate(events)]
        with pytest.raises(InvalidInput) as ingest_refused:
            w.ingest.ingest(as_ingest)
        assert ingest_refused.value.field == field.replace("events", "usage") and index >= 0
        assert ingest_refused.value.rule == refused.value.rule


def test_costs_are_per_day_by_credit_type_priced_as_the_invoices(w):
    days, next_page = w.costs.list(w.customer.id, starting_on=NOV_20, ending_before=NOV_22 + timedelta(days=1), limit=2)
    assert [(d.starting_at, d.ending_before) for d in days] == [(NOV_20, NOV_21), (NOV_21, NOV_22)]
    (usd,) = days[0].credit_types.values()
    assert (usd.credit_type.name, usd.cost, usd.lines) == ("USD (cents)", Decimal("3.00"), {("API calls", None, None): Decimal("3.00")})
    assert next(iter(days[1].credit_types.values())).cost == Decimal("2.00")
    assert next_page == "2"
    last, end = w.costs.list(w.customer.id, starting_on=NOV_20, ending_before=NOV_22 + timedelta(days=1), cursor=next_page)
    assert [(d.starting_at, d.credit_types) for d in last] == [(NOV_22, {})] and end is None


@pytest.mark.parametrize(
    "starting_on, ending_before, field",
    [
        (None, NOV_21, "starting_on"),
        (NOV_20, None, "ending_before"),
        (NOV_20 + timedelta(hours=1), NOV_21, "starting_on"),
        (NOV_21, NOV_20, "ending_before"),
        (OCT, OCT + timedelta(days=101), "ending_before"),
    ],
    ids=["no start", "no end", "start not at midnight", "end before start", "more than 100 days"],
)
def test_costs_refuse_a_range_they_cannot_answer(bare, starting_on, ending_before, field):
    w = bare
    with pytest.raises(InvalidInput) as refused:
        w.costs.list(w.customer.id, starting_on=starting_on, ending_before=ending_before)
    assert refused.value.field == field
