"""The DynamoDB counter store keeps the exactly-once contract on moto, under the same faults."""

from __future__ import annotations

from datetime import timedelta

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.memory import MemoryMetricStore
from tally.services.aggregate import AggregateService
from tests.service.conftest import _table
from tests.service.exactly_once_harness import (
    METRICS,
    T0,
    FaultPlan,
    ground_truth,
    make_event,
    run_stream,
    stored_value,
    to_shards,
)


class FaultyDynamoCounterStore(DynamoCounterStore):
    """The real adapter, with the harness's fault hook called before each write."""

    fail = None

    def _conditional_update(self, key, **kwargs):
        if self.fail is not None:
            self.fail(key)
        return super()._conditional_update(key, **kwargs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    spec=st.lists(
        st.tuples(st.sampled_from(["acme", "globex"]), st.sampled_from(["eu", "us"]), st.integers(0, 5),
                  st.integers(0, 150), st.integers(0, 1)),
        min_size=1,
        max_size=40,
    ),
    data=st.data(),
)
def test_dynamo_counters_equal_ground_truth_under_faults(spec, data):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
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
        stored = client.scan(TableName=table, Select="COUNT")["Count"]
        assert stored == len(truth)
