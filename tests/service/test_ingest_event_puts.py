"""Ingest stores each event by its own conditional PutItem, concurrently (1 WRU per event, where a
transaction costs 2): first wins per transaction_id across racing requests, and a request cut short
by an outage is completed by its retry, each event stored and counted once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.dynamo.events import DynamoEventStore
from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.metrics import Aggregation, BillableMetric
from tally.services.aggregate import AggregateService
from tally.services.ingest import IngestService
from tally.services.metrics import MetricService
from tally.services.ports import StoreUnavailable
from tests.service.conftest import NOW


def event(i: int, customer: str = "acme") -> dict:
    return {"transaction_id": f"t{i}", "customer_id": customer, "event_type": "call",
            "timestamp": (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"), "properties": {}}


def originals(dynamo) -> list[str]:
    page = dynamo["client"].scan(TableName=dynamo["events"], FilterExpression="sk = :e",
                                 ExpressionAttributeValues={":e": {"S": "event"}})
    return sorted(item["pk"]["S"] for item in page["Items"])


class FailingPuts:
    """A client whose PutItems of the given transaction ids fail as an outage would (throttled past
    the client's retries); everything else goes through."""

    def __init__(self, client, failing: set[str]) -> None:
        self._client = client
        self.failing = failing
        self.puts = 0
        self.transactions = 0

    def put_item(self, **kwargs):
        self.puts += 1
        if kwargs["Item"]["pk"]["S"][4:] in self.failing:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem")
        return self._client.put_item(**kwargs)

    def transact_write_items(self, **kwargs):
        self.transactions += 1
        return self._client.transact_write_items(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_request_is_stored_by_one_conditional_put_per_event_and_no_transaction(dynamo, clock):
    client = FailingPuts(dynamo["client"], set())
    service = IngestService(DynamoEventStore(dynamo["events"], client), clock)
    result = service.ingest([event(i) for i in range(100)])
    assert (result.accepted, result.duplicates) == (100, 0)
    assert (client.puts, client.transactions) == (100, 0)
    assert len(originals(dynamo)) == 100


def test_racing_requests_store_each_transaction_id_once_and_the_first_wins(dynamo, clock):
    service = IngestService(DynamoEventStore(dynamo["events"], boto3.client("dynamodb", region_name="us-east-1")), clock)
    requests = [[event(i) for i in range(start, start + 20)] for start in (0, 10, 20, 0)]  # overlapping ids
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(service.ingest, requests))
    assert sum(r.accepted for r in results) == 40
    assert sum(r.accepted + r.duplicates for r in results) == 80
    assert originals(dynamo) == sorted(f"txn#t{i}" for i in range(40))


def test_a_request_cut_short_by_an_outage_raises_and_its_retry_stores_the_rest_counted_once(dynamo, clock):
    client = FailingPuts(dynamo["client"], {"t3", "t37"})
    events = DynamoEventStore(dynamo["events"], client)
    counters = DynamoCounterStore(dynamo["counters"], dynamo["client"])
    metrics = DynamoMetricStore(DynamoBillingStore(dynamo["billing"], dynamo["client"]))
    count = MetricService(metrics, clock).create(BillableMetric("", "calls", Aggregation.COUNT, None, None, (), ()))
    clock.now = NOW + timedelta(seconds=1)
    service = IngestService(events, clock)
    body = [event(i) for i in range(40)]

    with pytest.raises(StoreUnavailable):  # the client sees a 503, not a 200
        service.ingest(body)
    stored_first = len(originals(dynamo))
    assert 0 < stored_first < 40  # stored part-way (each slice of puts stops at its failure)

    client.failing.clear()
    retried = service.ingest(body)  # the client's retry of the same request
    assert (retried.accepted, retried.duplicates) == (40 - stored_first, stored_first)
    assert len(originals(dynamo)) == 40

    # The stream carries each original once; the counters count each event once.
    stored = [s for s in events.scan_ingested_before(clock.now + timedelta(days=1))]
    batch = [StreamedEvent(sequence_key(10**20 + n), s.event, clock.now) for n, s in enumerate(stored)]
    AggregateService(counters, metrics).apply_batch("shard-1", batch)
    month = "M" + NOW.strftime("%Y%m")
    assert [row.total for row in counters.read(count.id, "acme", month, month)] == [40]
