"""Ingest, dedup, late metrics and aliases through the services, on moto's DynamoDB."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tally.adapters.dynamo.backfills import DynamoBackfillStore, DynamoSegmentScan
from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric, PropertyFilter
from tally.adapters.memory_backfill import MemoryBackfillQueue
from tally.services.aggregate import AggregateService
from tally.services.backfill import BackfillService
from tally.services.customers import CustomerService
from tally.services.ingest import IngestService
from tally.services.metrics import MetricService
from tally.services.usage import MetricQuery, UsageService, WindowSize
from tests.service.backfill_runner import run_backfills
from tests.service.conftest import NOW


@pytest.fixture()
def system(dynamo, clock):
    client = dynamo["client"]
    events = DynamoEventStore(dynamo["events"], client)
    counters = DynamoCounterStore(dynamo["counters"], client)
    billing = DynamoBillingStore(dynamo["billing"], client)
    metrics = DynamoMetricStore(billing)
    queue = MemoryBackfillQueue()
    backfills = BackfillService(
        metrics, DynamoSegmentScan(dynamo["events"], client), counters, DynamoBackfillStore(dynamo["billing"], client),
        queue, clock, settle=timedelta(seconds=30), segments=3, page_size=2,
    )

    class System:
        ingest = IngestService(events, clock)
        aggregate = AggregateService(counters, metrics)
        customers = CustomerService(billing, clock)
        metric_service = MetricService(metrics, clock, backfills)
        metric_service_backfills = backfills
        usage = UsageService(billing, metrics, counters)
        sequence = 0

        def backfill(self):
            """The backfill function, until the jobs' queue is empty (the clock passes the settle)."""
            return run_backfills(backfills, queue, clock)

        def stream(self):
            """Feed every original event stored so far (by scan) through the aggregator once."""
            batch = []
            for stored in events.scan_ingested_before(NOW + timedelta(days=365)):
                System.sequence += 1
                batch.append(StreamedEvent(sequence_key(10**20 + System.sequence), stored.event, stored.ingested_at))
            self.aggregate.apply_batch("shard-1", batch)

    return System()


def usage_event(i, customer="acme", tokens=1, minutes=0):
    return {
        "transaction_id": f"t{i}",
        "customer_id": customer,
        "event_type": "call",
        "timestamp": (NOW - timedelta(hours=1) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "properties": {"tokens": tokens},
    }


def sum_metric(system, clock):
    return system.metric_service.create(
        BillableMetric("", "tokens", Aggregation.SUM, "tokens", None, (PropertyFilter("tokens", exists=True),), ())
    )


def total(system, customer, metric):
    (window,) = system.usage.usage([customer], [MetricQuery(metric.id)], NOW - timedelta(days=1), NOW + timedelta(hours=1), WindowSize.NONE)
    return window.value


def test_duplicates_within_and_across_requests_are_accepted_but_stored_once(system, dynamo):
    first = system.ingest.ingest([usage_event(1), usage_event(2), usage_event(1, tokens=99)])
    second = system.ingest.ingest([usage_event(2, tokens=50), usage_event(3)])
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (second.accepted, second.duplicates) == (1, 1)
    originals = dynamo["client"].scan(TableName=dynamo["events"], FilterExpression="sk = :e", ExpressionAttributeValues={":e": {"S": "event"}})
    assert originals["Count"] == 3


def test_a_bad_event_stores_nothing_from_its_request(system, dynamo):
    with pytest.raises(InvalidInput) as error:
        system.ingest.ingest([usage_event(1), {**usage_event(2), "timestamp": "yesterday"}])
    assert error.value.field == "usage[1].timestamp"
    assert dynamo["client"].scan(TableName=dynamo["events"])["Count"] == 0


def test_a_metric_created_after_the_events_counts_them_once(system, clock):
    system.ingest.ingest([usage_event(1, tokens=3), usage_event(2, tokens=4)])
    clock.now = NOW + timedelta(seconds=5)
    metric = sum_metric(system, clock)  # returns at once; its job will count the two earlier events
    clock.now = NOW + timedelta(seconds=10)
    system.ingest.ingest([usage_event(3, tokens=5)])
    system.stream()  # the live path sees all three records; it must count only the third
    customer = system.customers.create("Acme", ["acme"], None, {})
    assert total(system, customer, metric) == Decimal(5)
    assert system.backfill() > 0
    assert total(system, customer, metric) == Decimal(12)
    system.metric_service_backfills.resume([metric.id])  # asked for again: nothing is left to add
    assert system.backfill() == 0
    assert total(system, customer, metric) == Decimal(12)


def test_usage_sent_under_an_alias_before_it_existed_counts_once_the_alias_is_set(system, clock):
    metric = sum_metric(system, clock)
    clock.now = NOW + timedelta(seconds=1)
    system.ingest.ingest([usage_event(1, customer="acme-prod", tokens=7), usage_event(2, customer="acme", tokens=1)])
    system.stream()
    customer = system.customers.create("Acme", ["acme"], None, {})
    assert total(system, customer, metric) == Decimal(1)
    customer = system.customers.set_ingest_aliases(customer.id, ["acme", "acme-prod"])
    assert total(system, customer, metric) == Decimal(8)


def test_an_alias_belongs_to_one_customer(system):
    system.customers.create("Acme", ["acme"], None, {})
    with pytest.raises(Conflict):
        system.customers.create("Other", ["acme"], None, {})
    with pytest.raises(NotFound):
        system.customers.get("nope")


def test_hourly_windows_split_usage_at_the_hour(system, clock):
    metric = sum_metric(system, clock)
    clock.now = NOW + timedelta(seconds=1)
    system.ingest.ingest([usage_event(1, tokens=2, minutes=10), usage_event(2, tokens=3, minutes=70)])
    system.stream()
    customer = system.customers.create("Acme", ["acme"], None, {})
    windows = system.usage.usage([customer], None, NOW - timedelta(hours=1), NOW + timedelta(hours=1), WindowSize.HOUR)
    assert [w.value for w in windows] == [Decimal(2), Decimal(3)]
