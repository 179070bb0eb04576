"""Marks of rotated stream shards are pruned once no record they guard can be delivered again,
and counters still equal the ground truth: shards rotate, lag, crash, are throttled and replay
anything still within the stream's 24 hours."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.memory import MemoryCounterStore
from tally.billing.counters import CounterKey, StreamedEvent, mark_created, mark_of, sequence_key
from tally.billing.limits import MARK_PRUNE_EVERY_S, MARK_PRUNE_MARGIN_S, STREAM_RECORD_RETENTION_S
from tally.services.aggregate import AggregateService
from tally.services.ports import StoreUnavailable
from tests.service.conftest import _table
from tests.service.exactly_once_harness import METRICS, T0, ground_truth, make_event, stored_value
from tests.service.test_exactly_once import metric_store

HOUR = 3_600
WINDOW = STREAM_RECORD_RETENTION_S + MARK_PRUNE_MARGIN_S
EPOCH = int(T0.timestamp())


class Crash(Exception):
    pass


class CheckedStore(MemoryCounterStore):
    """The memory store, checking that a removed mark was older than the window before the newest
    record delivered so far (`now`: the aggregator cannot know of anything newer)."""

    now = 0
    removed = 0

    def add(self, key, shard, parts, new_mark, *, below=None, expected=None, prune_before=None):
        before = dict(self.counters[key].marks) if key in self.counters else {}
        added = super().add(key, shard, parts, new_mark, below=below, expected=expected, prune_before=prune_before)
        for gone in set(before) - set(self.counters[key].marks):
            created = mark_created(before[gone])
            assert created is not None and created < self.now - WINDOW, (gone, before[gone], self.now)
            self.removed += 1
        return added


def rotating_shards(spec, periods) -> tuple[list, dict[str, list[StreamedEvent]]]:
    """Events `gap` minutes apart on lineage `lineage`, whose shard rotates every `periods[lineage]`
    hours; sequence numbers grow across the stream; each record carries its creation time."""
    events, shards, at = [], {}, 0
    for i, (customer, region, n, gap, lineage) in enumerate(spec):
        at += gap * 60
        event = make_event(i, customer, region, n, at // 60)
        events.append(event)
        shard = f"L{lineage}-g{at // (periods[lineage] * HOUR):04d}"
        shards.setdefault(shard, []).append(StreamedEvent(sequence_key(10**20 + i * 7), event, T0, EPOCH + at))
    return events, shards


def deliver(service, store: CheckedStore, shards: dict[str, list[StreamedEvent]], draw, budget: int = 14) -> None:
    """Lambda over the rotating stream: a child shard after its parent, batches within an hour of
    records, shards lagging each other by up to 12 h (the stream keeps 24), faults, and replays of
    anything delivered still within 24 h of the newest record."""
    position = {shard: 0 for shard in shards}
    lineage = lambda shard: shard.split("-")[0]  # noqa: E731
    now = None
    for _ in range(3_000):
        live = [s for s in shards if position[s] < len(shards[s])]
        if not live:
            return
        ready = [s for s in live if not any(o < s and lineage(o) == lineage(s) for o in live)]
        oldest = min(shards[s][position[s]].created_at for s in ready)
        if now is not None and oldest < now - 12 * HOUR:
            shard = min(s for s in ready if shards[s][position[s]].created_at == oldest)
        else:  # shards lag each other by up to 12 h
            shard = draw(st.sampled_from(sorted(s for s in ready if shards[s][position[s]].created_at <= oldest + 12 * HOUR)))
        records, start = shards[shard], position[shard]
        size = draw(st.integers(1, 8))
        end = start + 1
        while end < len(records) and end - start < size and records[end].created_at <= records[start].created_at + HOUR:
            end += 1
        fault = draw(st.sampled_from(["none", "none", "crash", "throttle", "replay"])) if budget > 0 else "none"
        if fault == "replay":
            budget -= 1
            shard = draw(st.sampled_from(sorted(shards)))
            records = shards[shard]
            horizon = (now or 0) - STREAM_RECORD_RETENTION_S
            kept = [i for i in range(position[shard]) if records[i].created_at >= horizon]
            if not kept:
                continue
            start = draw(st.sampled_from(kept))
            end = draw(st.integers(start + 1, position[shard]))
        batch = records[start:end]
        assert now is None or batch[0].created_at >= now - STREAM_RECORD_RETENTION_S, "the simulation broke the stream's premise"
        now = max(now or 0, batch[-1].created_at)
        store.now = now
        if fault == "crash":
            budget -= 1
            writes, limit = [0], draw(st.integers(0, 4))

            def crash(key, writes=writes, limit=limit):
                if writes[0] >= limit:
                    raise Crash()
                writes[0] += 1

            store.fail = crash
        elif fault == "throttle":
            budget -= 1
            victim = draw(st.sampled_from([m.id for m in METRICS]))

            def throttle(key, victim=victim):
                if key.metric_id == victim:
                    raise StoreUnavailable("throttled")

            store.fail = throttle
        try:
            outcome = service.apply_batch(shard, batch)
        except Crash:
            continue  # the whole batch comes again
        finally:
            store.fail = None
        if outcome.first_failed_sequence is not None:
            position[shard] = next(i for i, r in enumerate(records) if r.sequence == outcome.first_failed_sequence)
        elif fault != "replay":
            position[shard] = end
    raise AssertionError("the simulation did not converge")


def check_truth(store, events) -> None:
    by_id = {m.id: m for m in METRICS}
    truth = ground_truth(events)
    for key, expected in truth.items():
        assert stored_value(store, key, by_id[key.metric_id].aggregation_type) == expected, key
    assert set(store.counters) == set(truth)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.lists(
        st.tuples(st.sampled_from(["acme", "globex"]), st.sampled_from(["eu", "us"]), st.integers(0, 5),
                  st.integers(0, 360), st.integers(0, 2)),
        min_size=12,  # with gaps of up to 6 h: some 1 to 6 days, past the window
        max_size=50,
    ),
    periods=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    data=st.data(),
)
def test_rotating_shards_replaying_within_the_window_never_double_count_while_marks_are_pruned(spec, periods, data):
    events, shards = rotating_shards(spec, periods)
    store = CheckedStore()

    deliver(AggregateService(store, metric_store()), store, shards, data.draw)

    check_truth(store, events)


def test_three_days_of_rotations_keep_a_month_counter_to_the_window_s_marks_and_replays_add_nothing():
    # 3 lineages rotating every 2 h, an event every 20 minutes for 3 days, all one month counter
    spec = [("acme", "eu", 1, 20, i % 3) for i in range(3 * 72)]
    events, shards = rotating_shards(spec, (2, 2, 2))
    store = CheckedStore()
    service = AggregateService(store, metric_store())
    order = sorted(((r.created_at, shard, r) for shard, records in shards.items() for r in records), key=lambda x: x[0])
    for created, shard, record in order:
        store.now = created
        service.apply_batch(shard, [record])
        # the stream resends the last 23 hours of this lineage (closed shards' records too)
        if created % (6 * HOUR) == 0:
            for old_shard, records in shards.items():
                again = [r for r in records if created - 23 * HOUR <= r.created_at <= created]
                if again and old_shard[:2] == shard[:2]:
                    service.apply_batch(old_shard, again)

    check_truth(store, events)
    month = next(k for k in store.counters if k.metric_id == "count-by-region" and k.bucket.startswith("M"))
    shards_open_in_window = 3 * ((WINDOW + MARK_PRUNE_EVERY_S) // (2 * HOUR) + 2)
    assert 0 < store.removed and len(store.counters[month].marks) <= shards_open_in_window
    assert len(shards) >= 3 * 36  # without pruning, the month counter would hold a mark of each


@pytest.fixture
def dynamo():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield client, DynamoCounterStore(_table(client, "counters"), client)


def _marks(client, store, key) -> dict[str, str]:
    item = client.get_item(TableName=store._table, Key={"pk": {"S": f"m#{key.metric_id}#k#{key.ingest_key}"},
                                                         "sk": {"S": key.bucket + "#[]"}})["Item"]
    return {name[3:]: value["S"] for name, value in item.items() if name.startswith("mk_")}


def test_dynamo_add_removes_only_stale_timed_marks_of_other_shards(dynamo):
    client, store = dynamo
    key = CounterKey("sum-n", "acme", "M202611", ())
    now = EPOCH + 40 * HOUR
    seq = lambda n: sequence_key(10**20 + n)  # noqa: E731
    assert store.add(key, "legacy", {"d01": Decimal(1)}, seq(1))  # a mark from before marks had a time
    assert store.add(key, "just-past", {"d01": Decimal(1)}, mark_of(seq(2), now - WINDOW - 1))
    assert store.add(key, "edge", {"d01": Decimal(1)}, mark_of(seq(3), now - WINDOW))  # exactly the window: kept
    assert store.add(key, "young", {"d01": Decimal(1)}, mark_of(seq(4), now - HOUR))
    assert store.add(key, "new", {"d01": Decimal(1)}, mark_of(seq(5), now), prune_before=now - WINDOW)
    # one stale mark only just past the window waits for company (a removal write an hour at most)
    assert set(_marks(client, store, key)) == {"legacy", "just-past", "edge", "young", "new"}
    assert store.add(key, "old", {"d01": Decimal(1)}, mark_of(seq(6), now - WINDOW - MARK_PRUNE_EVERY_S - 1))

    assert store.add(key, "new", {"d01": Decimal(1)}, mark_of(seq(7), now), below=seq(7), prune_before=now - WINDOW)

    assert set(_marks(client, store, key)) == {"legacy", "edge", "young", "new"}
    assert store.additive_state(key, "new").total == 7
    # a replay under a kept mark still adds nothing: the time does not change how marks compare
    assert not store.add(key, "young", {"d01": Decimal(1)}, mark_of(seq(4), now), below=seq(4))
    assert store.add(key, "young", {"d01": Decimal(1)}, mark_of(seq(8), now), below=seq(8))


def test_dynamo_prune_keeps_a_mark_that_moved_since_the_write_read_it(dynamo):
    client, store = dynamo
    key = CounterKey("sum-n", "acme", "M202611", ())
    now = EPOCH + 40 * HOUR
    stale = mark_of(sequence_key(10**20 + 1), now - WINDOW - MARK_PRUNE_EVERY_S - 1)
    store.add(key, "s1", {"d01": Decimal(1)}, stale)
    item = client.get_item(TableName=store._table, Key={"pk": {"S": "m#sum-n#k#acme"}, "sk": {"S": "M202611#[]"}})["Item"]
    # the shard writes again between the item coming back and the follow-up removal
    store.add(key, "s1", {"d01": Decimal(1)}, mark_of(sequence_key(10**20 + 9), now), below=sequence_key(10**20 + 9))

    store._prune(key, "s2", item, now - WINDOW)

    assert _marks(client, store, key) == {"s1": mark_of(sequence_key(10**20 + 9), now)}
