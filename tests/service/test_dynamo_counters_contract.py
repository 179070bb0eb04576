"""The DynamoDB counter store keeps the exactly-once contract on moto, under the same faults."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.memory import MemoryMetricStore
from tally.services.aggregate import AggregateService
from tests.conftest import examples
from tests.service.conftest import _table
from tests.service.exactly_once_harness import (
    METRICS,
    T0,
    FaultPlan,
    dynamo_counters_held,
    ground_truth,
    make_event,
    run_stream,
    stored_value,
    to_shards,
)


@pytest.fixture(scope="module")
def client():
    """One moto for the module: each example makes its own table (starting moto per example cost
    some 50 ms of each one's time)."""
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


class FaultyDynamoCounterStore(DynamoCounterStore):
    """The real adapter, with the harness's fault hook called before each write."""

    fail = None

    def _conditional_update(self, key, **kwargs):
        if self.fail is not None:
            self.fail(key)
        return super()._conditional_update(key, **kwargs)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    spec=st.lists(
        st.tuples(st.sampled_from(["acme", "globex"]), st.sampled_from(["eu", "us"]), st.integers(0, 5),
                  st.integers(0, 150), st.integers(0, 1)),
        min_size=1,
        max_size=40,
    ),
    data=st.data(),
)
def test_dynamo_counters_equal_ground_truth_under_faults(client, spec, data):
    table = _table(client, "counters")
    store = FaultyDynamoCounterStore(table, client)
    metrics = MemoryMetricStore()
    for m in METRICS:
        metrics.put(m)
    events = [make_event(i, c, region, n, minute) for i, (c, region, n, minute, _) in enumerate(spec)]
    shards = to_shards(events, [s for *_, s in spec], T0 + timedelta(minutes=1))

    run_stream(AggregateService(store, metrics), store, shards, FaultPlan(data.draw), st)

    by_id = {m.id: m for m in METRICS}
    truth = ground_truth(events)
    for key, expected in truth.items():
        assert stored_value(store, key, by_id[key.metric_id].aggregation_type) == expected, key
    assert len(dynamo_counters_held(client, table)) == len(truth)


def test_counter_reads_taken_as_raw_json_equal_botocores_parse_page_by_page():
    """The counters adapter reads pages as DynamoDB's JSON (a before-parse hook); a store that lets
    botocore parse reads the same rows, across pages, with parts, uniques and latest values, and
    the hook leaves every other call on the shared client alone."""
    from decimal import Decimal

    from tally.billing.counters import CounterRow, part_values

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = _table(client, "counters")
        raw, parsed = DynamoCounterStore(table, client), DynamoCounterStore(table, client, raw_reads=False)
        big = "x" * 900
        raw.page_limit = parsed.page_limit = 16  # pages of 16 items: every read spans pages
        rows = [
            CounterRow("M202611", (f"model-{i:03d}", big), Decimal(i * 3),
                       parts=part_values("M202611", {f"d{d:02d}": Decimal(i) + Decimal("0.5") + d for d in range(1, 31)}))
            for i in range(100)
        ]
        raw.put_rows("m1", "acme", rows)
        raw.put_rows("m2", "acme", [CounterRow("d20261103", ("eu",), uniques=frozenset({"a", "b"})),
                                    CounterRow("h2026110304", ("eu",), latest=("2026-11-03T04:05:00Z|t1", Decimal(7)))])
        for args in (("m1", "acme", "M202611", "M202611", True), ("m1", "acme", "M202611", "M202611", False),
                     ("m2", "acme", "d20261101", "d20261130", False), ("m2", "acme", "h2026110300", "h2026110323", False)):
            assert raw.read(*args) == parsed.read(*args)
        pages = []
        client.meta.events.register("before-call.dynamodb.Query", lambda **_: pages.append(1))
        assert len(raw.read("m1", "acme", "M202611", "M202611", True)) == 100
        assert len(pages) > 1, "the read should have spanned pages"
        assert raw.read("m1", "acme", "M202611", "M202611", True)[7].labelled_parts()[14] == ("d20261115", Decimal("22.5"))
        # Other calls on the same client are parsed by botocore: a binary value comes back as bytes.
        client.put_item(TableName=table, Item={"pk": {"S": "other"}, "sk": {"S": "x"}, "b": {"B": b"\x00\x01"}})
        page = client.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "other"}})
        assert page["Items"][0]["b"] == {"B": b"\x00\x01"}


_PART_VALUE = st.one_of(
    st.integers(-10**6, 10**12).map(str),  # counts and whole sums: summed as integers
    st.decimals(-10**6, 10**6, places=3, allow_nan=False, allow_infinity=False).map(str),  # fractions
    st.sampled_from(["1E+3", "-0", "0.000", "12.50"]),  # exponents and zeros, as a store may hold them
)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counters=st.lists(
        st.tuples(st.sampled_from(["D20261114", "D20261115", "D20261116"]), st.sampled_from(["eu", "us", "apac"]),
                  st.sampled_from(["a", "b"]), st.dictionaries(st.integers(0, 23), _PART_VALUE, max_size=24)),
        max_size=30,
    ),
    months=st.lists(st.tuples(st.sampled_from(["M202610", "M202611"]), st.sampled_from(["eu", "us"]),
                              st.dictionaries(st.integers(1, 30), _PART_VALUE, min_size=1, max_size=30)), max_size=8),
    cut=st.tuples(st.integers(0, 23), st.integers(0, 23)),
)
def test_the_stores_sums_from_dynamodbs_items_equal_the_sums_of_its_rows(client, counters, months, cut):
    """CounterStore.sums on DynamoDB sums the items as DynamoDB returns them (integers as
    integers, every other text as a Decimal): the same totals, group by group and in the same
    order, as CounterRead.add_totals over the rows `read` makes, for reads of parts cut at any
    hour across days, and of whole months, with and without a projection of the groups."""
    from decimal import Decimal

    from tally.billing.counters import CounterRead, CounterRow, RowSums, part_values, row_label

    def parts_of(bucket, values, prefix):
        return part_values(bucket, {f"{prefix}{k:02d}": Decimal(v) for k, v in values.items()})

    store = DynamoCounterStore(_table(client, "counters"), client)
    store.page_limit = 7  # reads span pages
    days = {(bucket, (region, model)): CounterRow(bucket, (region, model), parts=parts_of(bucket, values, "h"))
            for bucket, region, model, values in counters}
    whole = {(bucket, (region, "a")): CounterRow(bucket, (region, "a"), sum(map(Decimal, values.values()), Decimal(0)),
                                                 parts=parts_of(bucket, values, "d"))
             for bucket, region, values in months}
    store.put_rows("m", "acme", list(days.values()) + list(whole.values()))
    low, high = sorted(cut)
    reads = [
        CounterRead("D20261114", "D20261116", True, f"h20261114{low:02d}", f"h20261116{high:02d}"),
        CounterRead("D20261115", "D20261115", True, f"h20261115{low:02d}", f"h20261115{high:02d}"),
        CounterRead("M202610", "M202611", True, f"d202610{low + 1:02d}", f"d202611{high + 1:02d}"),
        CounterRead("M202610", "M202611", False, row_label("M202611"), row_label("M202611")),
        CounterRead("M202610", "M202611", False, row_label("M202610"), row_label("M202611")),
    ]
    for read in reads:
        for group_of in (None, lambda group: group[:1]):
            expected: dict = {}
            RowSums(store.read("m", "acme", read.first, read.last, read.parts)).add_totals(read, group_of, expected)
            summed: dict = {}
            store.sums("m", "acme", read.first, read.last, read.parts).add_totals(read, group_of, summed)
            assert list(summed.items()) == list(expected.items()), read
            assert [str(v) for v in summed.values()] == [str(v) for v in expected.values()], read
