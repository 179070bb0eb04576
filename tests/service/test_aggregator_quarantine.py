"""Issue 14, findings 1, 5, 6 and 8: a (record, metric) pair no counter can take is quarantined
with its reason; every other pair of the batch, and every other metric, counts exactly once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from infra.local.moto_item_size import install_item_size_limit
from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.memory import MemoryCounterStore, MemoryMetricStore
from tally.billing.counters import CounterKey, CounterRow, StreamedEvent, combine, sequence_key
from tally.billing.events import UsageEvent
from tally.billing.limits import MAX_GROUP_JSON_BYTES, MAX_ID_LENGTH
from tally.billing.metrics import Aggregation
from tally.billing.quarantine import PENDING, group_json
from tally.services.aggregate import AggregateService
from tests.service.conftest import _table
from tests.service.exactly_once_harness import T0, metric

GROUPED = metric("count-by-region", Aggregation.COUNT, None, [["region"]])
SUMMED = metric("sum-n", Aggregation.SUM, "n")
UNIQUE = metric("unique-n", Aggregation.UNIQUE, "n")
HEALTHY = metric("count", Aggregation.COUNT, None)
DAY, MONTH = "D" + T0.strftime("%Y%m%d"), "M" + T0.strftime("%Y%m")


@pytest.fixture(params=["memory", "dynamo"])
def store(request):
    if request.param == "memory":
        yield MemoryCounterStore()
        return
    install_item_size_limit()  # as DynamoDB: an update past 400 KB is refused, not stored
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield DynamoCounterStore(_table(client, "counters"), client)


def service(store, *metrics):
    catalog = MemoryMetricStore()
    for m in metrics:
        catalog.put(m)
    return AggregateService(store, catalog)


def streamed(index: int, **properties) -> StreamedEvent:
    event = UsageEvent(f"t{index}", "acme", "call", T0 + timedelta(minutes=index), properties)
    return StreamedEvent(sequence_key(10**20 + index), event, T0)


def total(store, m, bucket=MONTH, group=()):
    rows = [r for r in store.read(m.id, "acme", bucket, bucket) if r.group == group]
    return rows[0].total if rows else None


def test_a_group_value_longer_than_a_counter_key_holds_is_quarantined_and_the_rest_counts(store):
    batch = [streamed(0, region="eu", n=1), streamed(1, region="x" * 2_000, n=1), streamed(2, region="eu", n=1)]

    outcome = service(store, GROUPED, HEALTHY).apply_batch("shard-1", batch)

    assert outcome.first_failed_sequence is None and outcome.quarantined == 1
    assert total(store, GROUPED, group=("eu",)) == 2
    assert total(store, HEALTHY) == 3
    (pair,) = store.quarantined(GROUPED.id)
    assert pair.transaction_id == "t1" and pair.buckets == (DAY, MONTH) and pair.state == PENDING
    assert "take 2,004 bytes as JSON; a counter key holds 1,009" in pair.reason


@pytest.mark.parametrize(
    "value,rule",
    [("1e-19", "more than 18 decimal places"), ("12345678901234567890123456789012345678", "exceeds 1E19")],
    ids=["finer than the exact grid", "a 38-digit integer"],
)
def test_a_summed_value_off_the_exact_grid_is_quarantined_never_rounded(store, value, rule):
    batch = [streamed(0, n=Decimal("1e18")), streamed(1, n=Decimal(value)), streamed(2, n=Decimal("0.5"))]

    outcome = service(store, SUMMED).apply_batch("shard-1", batch)

    assert outcome.quarantined == 1
    assert total(store, SUMMED) == Decimal("1000000000000000000.5")
    (pair,) = store.quarantined(SUMMED.id)
    assert pair.transaction_id == "t1" and rule in pair.reason


def test_a_sum_that_would_leave_the_exact_range_is_quarantined_once_and_a_replay_adds_nothing(store):
    aggregate = service(store, SUMMED)
    aggregate.apply_batch("shard-1", [streamed(0, n=Decimal("9e18"))])
    crossing = [streamed(1, n=Decimal("2e18")), streamed(2, n=Decimal("1e17"))]

    first = aggregate.apply_batch("shard-1", crossing)
    replay = aggregate.apply_batch("shard-1", crossing)
    aggregate.apply_batch("shard-1", [streamed(3, n=Decimal("1"))])

    assert first.quarantined == 4  # two records, each refused by its day and its month counter
    assert replay.quarantined == 0 and replay.first_failed_sequence is None
    assert total(store, SUMMED) == Decimal("9000000000000000001")
    pairs = store.quarantined(SUMMED.id)
    assert [(p.transaction_id, p.buckets) for p in pairs] == [("t1", (DAY, MONTH)), ("t2", (DAY, MONTH))]
    assert all("would leave +-1E19" in p.reason for p in pairs)


def test_hundreds_of_distinct_long_unique_values_in_a_day_fit_one_counter(store):
    batch = [streamed(i % 60, n=f"{i:04d}" + "v" * 1_000) for i in range(700)]
    for index, item in enumerate(batch):  # 700 records, one a minute is enough for the counters
        batch[index] = StreamedEvent(sequence_key(10**20 + index), item.event, T0)

    outcome = service(store, UNIQUE).apply_batch("shard-1", batch)

    assert outcome.quarantined == 0 and outcome.first_failed_sequence is None
    day = [r for r in store.read(UNIQUE.id, "acme", "d" + T0.strftime("%Y%m%d"), "d" + T0.strftime("%Y%m%d"))]
    assert len(day[0].uniques) == 700


def test_a_unique_counter_past_one_item_spills_and_still_counts_every_distinct_value_once(store):
    # 9,000 distinct 64-character values in one day: about 600 KB of members, 1.5 items' worth.
    values = [f"{i:05d}" + "u" * 59 for i in range(9_000)]
    aggregate = service(store, UNIQUE)
    for start in range(0, len(values), 1_500):
        batch = [
            StreamedEvent(sequence_key(10**20 + start + j), UsageEvent(f"t{start + j}", "acme", "call", T0, {"n": v}), T0)
            for j, v in enumerate(values[start : start + 1_500])
        ]
        outcome = aggregate.apply_batch("shard-1", batch)
        assert outcome.quarantined == 0 and outcome.first_failed_sequence is None
    replay = [StreamedEvent(sequence_key(1), UsageEvent("again", "acme", "call", T0, {"n": v}), T0) for v in values[:300]]
    aggregate.apply_batch("shard-1", replay)  # values already counted, some in the counter, some spilled

    day = "d" + T0.strftime("%Y%m%d")
    rows = store.read(UNIQUE.id, "acme", day, day)
    assert combine(Aggregation.UNIQUE, rows) == 9_000
    assert {(r.bucket, r.group) for r in rows} == {(rows[0].bucket, ())}
    if isinstance(store, DynamoCounterStore):
        assert len(rows) > 1  # the counter's own item and its spills, read as one counter


def test_the_longest_accepted_unique_group_values_spill_and_count_on_dynamodb():
    # Group JSON as long as a counter admits, in 4-byte characters, from an ingest key as long as
    # an id may be: the hour and day counters are filled to near 400 KB, so the batch spills, and
    # every spill item's sort key (`<bucket>#<group JSON>~<n>`) must still fit 1,024 bytes.
    grouped = metric("unique-by-region", Aggregation.UNIQUE, "n", [["region"]])
    region = "😀" * ((MAX_GROUP_JSON_BYTES - 4) // 4) + "a" * ((MAX_GROUP_JSON_BYTES - 4) % 4)
    assert len(group_json((region,)).encode("utf-8")) == MAX_GROUP_JSON_BYTES
    customer = "😀" * MAX_ID_LENGTH
    hour, day = "h" + T0.strftime("%Y%m%d%H"), "d" + T0.strftime("%Y%m%d")
    held = [f"{i:05d}" + "u" * 59 for i in range(6_100)]  # ~397 KB of members
    install_item_size_limit()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        store = DynamoCounterStore(_table(client, "counters"), client)
        store.put_rows(grouped.id, customer, [CounterRow(b, (region,), uniques=frozenset(held)) for b in (hour, day)])
        batch = [
            StreamedEvent(sequence_key(10**20 + i), UsageEvent(f"t{i}", customer, "call", T0, {"n": f"new{i:05d}" + "v" * 56, "region": region}), T0)
            for i in range(300)
        ]

        outcome = service(store, grouped).apply_batch("shard-1", batch)

        assert outcome.quarantined == 0 and outcome.first_failed_sequence is None
        assert store.quarantined(grouped.id) == []
        for bucket in (hour, day):
            rows = store.read(grouped.id, customer, bucket, bucket)
            assert len(rows) > 1  # the counter's own item and its spill items
            assert {r.group for r in rows} == {(region,)}
            assert combine(Aggregation.UNIQUE, rows) == 6_400
