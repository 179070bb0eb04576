"""The rating engine priced from real counters: events in, metering pipeline, draft invoice out.
(Issue 3 is not behind the API yet; this pins the seam between metering and rating.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.metrics import Aggregation, BillableMetric, PropertyFilter
from tally.billing.pricing import (
    Contract,
    Period,
    Product,
    ProductType,
    ProductVersion,
    Rate,
    RateCard,
    RateType,
    Tier,
    build_draft_invoices,
)
from tally.services.customers import CustomerService
from tally.services.ingest import IngestService
from tally.services.aggregate import AggregateService
from tally.services.metrics import MetricService
from tally.services.rating_usage import CounterUsageSource

UTC = timezone.utc
NOV = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
PRICE_CHANGE = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_a_draft_invoice_prices_metered_usage_split_at_a_mid_month_price_change(dynamo, clock):
    client = dynamo["client"]
    events, counters = DynamoEventStore(dynamo["events"], client), DynamoCounterStore(dynamo["counters"], client)
    billing = DynamoBillingStore(dynamo["billing"], client)
    metrics = DynamoMetricStore(billing)
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    metric = MetricService(metrics, clock).create(
        BillableMetric("", "tokens", Aggregation.SUM, "tokens", None, (PropertyFilter("tokens", exists=True),), (("region",),))
    )
    clock.now += timedelta(seconds=1)
    customer = CustomerService(billing, clock).create("Acme", ["acme"], None, {})

    def usage(i, when, tokens, region):
        return {"transaction_id": f"t{i}", "customer_id": "acme", "event_type": "completion",
                "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {"tokens": tokens, "region": region}}

    IngestService(events, clock).ingest([
        usage(1, datetime(2026, 11, 20, 11, 30, tzinfo=UTC), 1000, "eu"),  # before the change
        usage(2, datetime(2026, 11, 20, 12, 0, tzinfo=UTC), 400, "eu"),  # at the change: new price
        usage(3, datetime(2026, 11, 23, 9, 0, tzinfo=UTC), 2500, "us"),
    ])
    streamed = [StreamedEvent(sequence_key(10**20 + n), s.event, s.ingested_at)
                for n, s in enumerate(events.scan_ingested_before(clock.now + timedelta(hours=1)))]
    AggregateService(counters, metrics).apply_batch("shard-1", streamed)

    product = Product("p-tokens", ProductType.USAGE, (ProductVersion(
        starting_at=datetime(2026, 1, 1, tzinfo=UTC), name="Tokens", billable_metric_id=metric.id),))
    card = RateCard("rc", "Standard", (
        Rate("p-tokens", datetime(2026, 1, 1, tzinfo=UTC), RateType.FLAT, price=Decimal("0.5"), ending_before=PRICE_CHANGE),
        Rate("p-tokens", PRICE_CHANGE, RateType.TIERED, tiers=(Tier(Decimal("0.4"), Decimal(1000)), Tier(Decimal("0.1")))),
    ))
    contract = Contract("c1", customer.id, datetime(2026, 11, 1, tzinfo=UTC), card)
    source = CounterUsageSource(customer, metrics, counters)

    (invoice,) = build_draft_invoices(contract, {"p-tokens": product}, NOV, source)

    # Hand-worked: 1,000 tokens before the change at 0.5 = 500. Tiers count over the whole period,
    # so the 2,900 tokens after the change start at position 1,000: past the 0.4 tier, all at 0.1
    # = 290. Total 790 cents.
    assert [(line.starting_at, line.quantity, line.total) for line in invoice.line_items] == [
        (NOV.starting_at, Decimal(1000), Decimal("500.00")),
        (PRICE_CHANGE, Decimal(2900), Decimal("290.00")),
    ]
    assert invoice.total == Decimal("790.00")
    assert source.reads <= 3  # one counter read per priced segment, whatever the event count


def test_group_values_come_from_the_counters(dynamo, clock):
    client = dynamo["client"]
    events, counters = DynamoEventStore(dynamo["events"], client), DynamoCounterStore(dynamo["counters"], client)
    billing = DynamoBillingStore(dynamo["billing"], client)
    metrics = DynamoMetricStore(billing)
    metric = MetricService(metrics, clock).create(
        BillableMetric("", "calls", Aggregation.COUNT, None, None, (), (("region",),))
    )
    clock.now += timedelta(seconds=1)
    customer = CustomerService(billing, clock).create("Acme", ["acme"], None, {})
    IngestService(events, clock).ingest([
        {"transaction_id": f"t{i}", "customer_id": "acme", "event_type": "call",
         "timestamp": "2026-11-24T10:00:00Z", "properties": {"region": region}}
        for i, region in enumerate(["eu", "us", "eu"])
    ])
    streamed = [StreamedEvent(sequence_key(10**20 + n), s.event, s.ingested_at)
                for n, s in enumerate(events.scan_ingested_before(clock.now + timedelta(hours=1)))]
    AggregateService(counters, metrics).apply_batch("shard-1", streamed)
    source = CounterUsageSource(customer, metrics, counters)

    assert source.group_values(metric.id, ["region"], NOV.starting_at, NOV.ending_before) == [{"region": "eu"}, {"region": "us"}]
    assert source.quantity(metric.id, {"region": "eu"}, NOV.starting_at, NOV.ending_before) == Decimal(2)
    assert source.quantity(metric.id, None, NOV.starting_at, NOV.ending_before) == Decimal(3)
