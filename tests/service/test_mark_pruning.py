"""Marks of rotated stream shards are pruned once no record they guard can be delivered again,
and counters still equal the ground truth: shards rotate, lag, crash, are throttled and replay
anything still within the stream's 24 hours; across the deploy that brought sub-items (an earlier
version wrote unsuffixed counter items, and marks without a time before that)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.memory import MemoryCounterStore
from tally.billing.counters import CounterKey, StreamedEvent, counter_sub_item, mark_created, mark_of, mark_sequence, sequence_key
from tally.billing.limits import LEGACY_COUNTER_WRITES_GRACE_S, MARK_PRUNE_EVERY_S, MARK_PRUNE_MARGIN_S, STREAM_RECORD_RETENTION_S
from tally.services.aggregate import AggregateService
from tally.services.ports import StoreUnavailable
from tests.service.conftest import _table
from tests.service.exactly_once_harness import METRICS, T0, check_sub_items, ground_truth, make_event, stored_value
from tests.service.test_exactly_once import metric_store

HOUR = 3_600
WINDOW = STREAM_RECORD_RETENTION_S + MARK_PRUNE_MARGIN_S
EPOCH = int(T0.timestamp())


class Crash(Exception):
    pass


class CheckedStore(MemoryCounterStore):
    """The memory store, checking that a removed mark was older than the window before the newest
    record delivered so far (`now`: the aggregator cannot know of anything newer), and that an
    untimed mark re-stamped by another shard's write got a time no earlier than the creation of
    any record under it (`created`: shard -> [(sequence, creation time)] of its records)."""

    now = 0
    removed = 0
    restamped = 0
    created: dict[str, list[tuple[str, int]]] = {}

    def add(self, key, shard, parts, new_mark, *, below=None, expected=None, prune_before=None, mark_required=False):
        before = dict(self.counters[key].marks) if key in self.counters else {}
        added = super().add(
            key, shard, parts, new_mark, below=below, expected=expected, prune_before=prune_before, mark_required=mark_required
        )
        after = self.counters[key].marks
        for gone in set(before) - set(after):
            created = mark_created(before[gone])
            assert created is not None and created < self.now - WINDOW, (gone, before[gone], self.now)
            self.removed += 1
        for other, mark in before.items():
            if other != shard and mark_created(mark) is None and other in after and after[other] != mark:
                stamp = mark_created(after[other])
                under = [at for sequence, at in self.created.get(other, []) if sequence <= mark_sequence(mark)]
                assert stamp is not None and mark_sequence(after[other]) == mark and stamp >= max(under), (other, stamp)
                self.restamped += 1
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


def deliver(
    service, store: CheckedStore, shards: dict[str, list[StreamedEvent]], draw, budget: int = 14, deploys=None
) -> None:
    """Lambda over the rotating stream: a child shard after its parent, batches within an hour of
    records, shards lagging each other by up to 12 h (the stream keeps 24), faults, and replays of
    anything delivered still within 24 h of the newest record. `deploys` (untimed_until,
    sub_items_at), creation times: records created before the first are applied without their
    creation time (as before marks carried one), and until the newest record delivered reaches
    the second, the version before sub-items writes unsuffixed items; the service then restarts."""
    position = {shard: 0 for shard in shards}
    store.created = {shard: [(r.sequence, r.created_at) for r in records] for shard, records in shards.items()}
    untimed_until, sub_items_at = deploys or (None, None)
    earlier_version = mock.patch("tally.services.aggregate.sub_item_key", lambda key, shard: key)
    earlier = [sub_items_at is not None]  # the version before sub-items runs
    if earlier[0]:
        earlier_version.start()
    try:
        _deliver(service, store, shards, draw, budget, position, untimed_until, sub_items_at, earlier_version, earlier)
    finally:
        if earlier[0]:
            earlier_version.stop()


def _deliver(service, store, shards, draw, budget, position, untimed_until, sub_items_at, earlier_version, earlier) -> None:
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
        if sub_items_at is not None and now >= sub_items_at:  # the deploy: a new process
            earlier_version.stop()
            earlier[0] = False
            service = AggregateService(store, service._metrics, unsuffixed_until=now + LEGACY_COUNTER_WRITES_GRACE_S)
            sub_items_at = None
        if untimed_until is not None:
            batch = [r if r.created_at >= untimed_until else replace(r, created_at=None) for r in batch]
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


def check_truth(store, events, unsuffixed: bool = False) -> None:
    """Counters equal the truth; `unsuffixed`: an earlier version wrote unsuffixed items too."""
    by_id = {m.id: m for m in METRICS}
    truth = ground_truth(events)
    for key, expected in truth.items():
        assert stored_value(store, key, by_id[key.metric_id].aggregation_type) == expected, key
    if unsuffixed:
        assert {replace(key, sub=0) for key in store.counters} == set(truth)
    else:
        assert check_sub_items(store) == set(truth)


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


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.lists(
        st.tuples(st.sampled_from(["acme", "globex"]), st.sampled_from(["eu", "us"]), st.integers(0, 5),
                  st.integers(0, 240), st.integers(0, 2)),
        min_size=12,
        max_size=50,
    ),
    periods=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    untimed_hours=st.integers(0, 30),
    sub_items_hours=st.integers(0, 30),
    data=st.data(),
)
def test_across_the_deploys_of_mark_times_and_sub_items_nothing_is_counted_twice(
    spec, periods, untimed_hours, sub_items_hours, data
):
    # Before one instant records are applied without their creation time (untimed marks, later
    # re-stamped and pruned); before another, by the version without sub-items (unsuffixed items,
    # whose marks a shard's first write to a sub-item honours). Crashes and replays straddle both.
    events, shards = rotating_shards(spec, periods)
    store = CheckedStore()

    deliver(AggregateService(store, metric_store()), store, shards, data.draw,
            deploys=(EPOCH + untimed_hours * HOUR, EPOCH + sub_items_hours * HOUR))

    check_truth(store, events, unsuffixed=True)
    for key, counter in store.counters.items():  # a sub-item holds the marks of its own shards only
        assert not key.sub or all(counter_sub_item(shard) == key.sub for shard in counter.marks), key


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


def test_dynamo_sub_items_sum_with_the_unsuffixed_item_honour_its_marks_and_restamp_untimed_ones(dynamo):
    client, store = dynamo
    key = CounterKey("sum-n", "acme", "M202611", ())
    seq = lambda n: sequence_key(10**20 + n)  # noqa: E731
    # written before sub-items: the unsuffixed item, shard s1 up to record 5, untimed
    assert store.add(key, "s1", {"d01": Decimal(5)}, seq(5))
    event = make_event(0, "acme", "eu", 3, 0)
    records = [StreamedEvent(seq(n), replace(event, transaction_id=f"t{n}"), T0, EPOCH + n) for n in range(4, 8)]
    metric = type("Metrics", (), {"all": staticmethod(lambda: [m for m in METRICS if m.id == "sum-n"])})()
    service = AggregateService(store, metric, unsuffixed_until=EPOCH + 5)

    service.apply_batch("s1", records)  # a retry across the deploy: records 4 and 5 are in already
    service.apply_batch("s1", records)  # and a replay under the sub-item's own mark

    (row,) = store.read("sum-n", "acme", "M202611", "M202611")
    assert row.total == 5 + 3 + 3  # the unsuffixed item and the sub-item, records 6 and 7 once
    sub = replace(key, sub=counter_sub_item("s1"))
    assert store.high_water_mark(sub, "s1") == mark_of(seq(7), EPOCH + 7)
    # another shard's untimed mark on the sub-item is re-stamped by a pruning write, then pruned
    other = next(f"o{n}" for n in range(100) if counter_sub_item(f"o{n}") == sub.sub)
    store.add(sub, other, {"d01": Decimal(1)}, seq(1))
    now = EPOCH + 40 * HOUR
    store.add(sub, "s1", {"d01": Decimal(1)}, mark_of(seq(20), now), below=seq(20), prune_before=now - WINDOW)
    assert store.high_water_mark(sub, other) == mark_of(seq(1), now + STREAM_RECORD_RETENTION_S)
    later = now + STREAM_RECORD_RETENTION_S + WINDOW + MARK_PRUNE_EVERY_S + 1
    store.add(sub, "s1", {"d01": Decimal(1)}, mark_of(seq(21), later), below=seq(21), prune_before=later - WINDOW)
    assert store.high_water_mark(sub, other) is None
    (row,) = store.read("sum-n", "acme", "M202611", "M202611", parts=True)
    assert row.parts[0] == 5 + 3 + 3 + 1 + 1 + 1
