"""Counters equal the ground truth recomputed from the raw events, whatever the stream does:
overlapping replays, bisected retries, partial batch failures and crashes part-way through a batch."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.adapters.memory import MemoryCounterStore, MemoryMetricStore
from tally.services.aggregate import AggregateService

from tests.service.exactly_once_harness import (
    METRICS,
    POISON_REGION,
    poison_pairs,
    T0,
    FaultPlan,
    check_sub_items,
    ground_truth,
    make_event,
    run_stream,
    stored_value,
    to_shards,
)

events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["acme", "globex"]),
        st.sampled_from(["eu", "us"]),
        st.integers(0, 5),
        st.integers(0, 150),  # minutes after T0: spans three hours
        st.integers(0, 1),  # shard
    ),
    min_size=1,
    max_size=60,
)


def metric_store():
    store = MemoryMetricStore()
    for m in METRICS:
        store.put(m)
    return store


def check_counters_match_truth(store, events) -> None:
    truth = ground_truth(events)
    by_id = {m.id: m for m in METRICS}
    for key, expected in truth.items():
        assert stored_value(store, key, by_id[key.metric_id].aggregation_type) == expected, key
    assert check_sub_items(store) == set(truth), "a counter exists that no event justifies"


def stream_with_faults(spec, data) -> tuple[MemoryCounterStore, list]:
    """The events `spec` draws, delivered through the faulty stream to a fresh store."""
    events = [make_event(i, c, region, n, minute) for i, (c, region, n, minute, _) in enumerate(spec)]
    shards = to_shards(events, [s for *_, s in spec], T0 + timedelta(minutes=1))
    store = MemoryCounterStore()
    run_stream(AggregateService(store, metric_store()), store, shards, FaultPlan(data.draw), st)
    return store, events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=events_strategy, data=st.data())
def test_counters_equal_ground_truth_under_replays_bisects_partial_failures_and_crashes(spec, data):
    store, events = stream_with_faults(spec, data)

    check_counters_match_truth(store, events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.lists(
        st.tuples(
            st.sampled_from(["acme", "globex"]),
            st.sampled_from(["eu", "us", POISON_REGION]),
            st.integers(0, 5),
            st.integers(0, 150),
            st.integers(0, 1),
        ),
        min_size=1,
        max_size=40,
    ),
    data=st.data(),
)
def test_poison_records_are_quarantined_once_and_healthy_counters_still_equal_the_truth(spec, data):
    store, events = stream_with_faults(spec, data)

    check_counters_match_truth(store, events)
    quarantined = {(m.id, pair.transaction_id) for m in METRICS for pair in store.quarantined(m.id)}
    assert quarantined == poison_pairs(events)


def test_a_clean_stream_needs_one_write_per_counter_and_grain_per_batch():
    events = [make_event(i, "acme", "eu", 1, 5) for i in range(100)]
    shards = to_shards(events, [0] * 100, T0)
    store = MemoryCounterStore()
    outcome = AggregateService(store, metric_store()).apply_batch("shard-0", shards["shard-0"])
    assert outcome.first_failed_sequence is None
    assert store.writes == 2 * len(METRICS)  # 100 events, 5 metrics, an hour and a day counter each
    check_counters_match_truth(store, events)


def test_replaying_a_whole_batch_adds_nothing():
    events = [make_event(i, "acme", "us", i % 4, i) for i in range(30)]
    batch = to_shards(events, [0] * 30, T0)["shard-0"]
    store = MemoryCounterStore()
    service = AggregateService(store, metric_store())
    service.apply_batch("shard-0", batch)
    service.apply_batch("shard-0", batch)
    service.apply_batch("shard-0", batch[10:20])
    check_counters_match_truth(store, events)
