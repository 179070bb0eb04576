"""Issue 14: quarantined pairs are listed and, once their cause is fixed, re-applied exactly once:
never twice (a second re-apply, a concurrent one, a replay of the stream), never half."""

from __future__ import annotations

import threading
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from tally.adapters.dynamo.counters import DynamoCounterStore
from tally.adapters.memory import MemoryCounterStore, MemoryMetricStore
from tally.billing import quarantine
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.counters import counter_sub_item
from tally.billing.metrics import Aggregation
from tally.billing.quarantine import APPLIED, PENDING, QuarantinedPair
from tally.services.aggregate import AggregateService
from tally.services.quarantine import QuarantineService
from tests.service.conftest import _table
from tests.service.exactly_once_harness import metric
from tests.service.test_aggregator_quarantine import DAY, GROUPED, MONTH, SUMMED, streamed, total

LARGEST = metric("max-n", Aggregation.MAX, "n", [["region"]])
# A shard writing the sub-item that a re-apply of t1 adds to (each item holds +-1E19 exactly).
SHARD = next(f"shard-{n}" for n in range(1, 200) if counter_sub_item(f"shard-{n}") == counter_sub_item("t1"))
LONG_REGION = "x" * 2_000


@pytest.fixture(params=["memory", "dynamo"])
def store(request):
    if request.param == "memory":
        yield MemoryCounterStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield DynamoCounterStore(_table(client, "counters"), client)


def world(store, *metrics):
    catalog = MemoryMetricStore()
    for m in metrics:
        catalog.put(m)
    return AggregateService(store, catalog), QuarantineService(store, catalog)


def near_the_top(aggregate) -> list:
    """9e18 counted, then 2e18 (t1) quarantined: the sum would leave +-1E19 on the sub-item."""
    aggregate.apply_batch(SHARD, [streamed(0, n=Decimal("9e18"))])
    crossing = [streamed(1, n=Decimal("2e18"))]
    assert aggregate.apply_batch(SHARD, crossing).quarantined == 2
    return crossing


def test_a_pair_whose_cause_is_gone_is_reapplied_once_to_exactly_the_counters_that_missed_it(store):
    aggregate, quarantined = world(store, SUMMED)
    crossing = near_the_top(aggregate)
    aggregate.apply_batch(SHARD, [streamed(3, n=Decimal("-5e18"))])  # a correction makes room

    (first,) = quarantined.reapply(SUMMED.id)
    again = quarantined.reapply(SUMMED.id)
    named_again = quarantined.reapply(SUMMED.id, ["t1"])
    replay = aggregate.apply_batch(SHARD, crossing)

    assert (first.pair.transaction_id, first.outcome) == ("t1", "reapplied")
    assert again == [] and [r.outcome for r in named_again] == ["already applied"]
    assert replay.quarantined == 0 and replay.counters_written == 0
    assert total(store, SUMMED, MONTH) == total(store, SUMMED, DAY) == Decimal("6e18")
    assert [(p.transaction_id, p.state) for p in quarantined.list(SUMMED.id)] == [("t1", APPLIED)]
    assert quarantined.list(state="pending") == []


def test_a_pair_still_refused_stays_pending_with_its_reason_and_nothing_is_written(store):
    aggregate, quarantined = world(store, SUMMED)
    near_the_top(aggregate)

    (result,) = quarantined.reapply(SUMMED.id)

    assert result.outcome == "still refused" and "+-1E19" in result.reason
    assert total(store, SUMMED) == Decimal("9e18")
    assert [p.state for p in quarantined.list(SUMMED.id, "pending")] == [PENDING]


def test_concurrent_reapplies_of_one_pair_count_it_once():
    from infra.local.moto_patches import install_atomic_writes

    # DynamoDB runs each transaction atomically; moto checks conditions and then writes with no lock
    # between, so without this two threads could both pass the pending check (a moto race, not ours).
    install_atomic_writes(reads=True)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        store = DynamoCounterStore(_table(client, "counters"), client)
        aggregate, quarantined = world(store, SUMMED)
        near_the_top(aggregate)
        aggregate.apply_batch(SHARD, [streamed(3, n=Decimal("-5e18"))])
        outcomes: list[str] = []
        start = threading.Barrier(8)

        def reapply() -> None:
            start.wait()
            outcomes.extend(r.outcome for r in quarantined.reapply(SUMMED.id, ["t1"]))

        threads = [threading.Thread(target=reapply) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes) == ["already applied"] * 7 + ["reapplied"]
        assert total(store, SUMMED) == Decimal("6e18")


def test_an_idempotent_counter_takes_a_pair_once_even_if_the_reapply_crashes_before_marking_it(monkeypatch):
    store = MemoryCounterStore()
    aggregate, quarantined = world(store, LARGEST, GROUPED)
    aggregate.apply_batch(SHARD, [streamed(0, region="eu", n=5), streamed(1, region=LONG_REGION, n=7)])
    assert [p.transaction_id for p in quarantined.list(state="pending")] == ["t1", "t1"]
    # The cause is fixed (here: a store whose keys hold the long group; DynamoDB's cannot), then the
    # re-apply crashes after the counter took the pair and before the pair was marked applied.
    monkeypatch.setattr(quarantine, "MAX_GROUP_JSON_BYTES", 4_000)
    marking = store.mark_applied

    def crash(pair):
        raise ConnectionError("the function died")

    monkeypatch.setattr(store, "mark_applied", crash)
    with pytest.raises(ConnectionError):
        quarantined.reapply(LARGEST.id)
    monkeypatch.setattr(store, "mark_applied", marking)
    (result,) = quarantined.reapply(LARGEST.id)

    assert result.outcome == "reapplied"
    assert total(store, LARGEST, DAY.replace("D", "d"), (LONG_REGION,)) == 7
    assert [p.state for p in quarantined.list(LARGEST.id)] == [APPLIED]
    assert [p.state for p in quarantined.list(GROUPED.id)] == [PENDING]  # each metric on its own


def test_a_pair_an_idempotent_counter_refused_is_reapplied_to_it_and_marked_applied(store):
    _, quarantined = world(store, LARGEST)
    event = streamed(4, region="eu", n=9).event
    buckets = (DAY.replace("D", "d"),)  # as if the day's counter had refused it, the hour's not
    store.quarantine([QuarantinedPair(LARGEST.id, event, buckets, "the counter refused it", "0001")])

    (result,) = quarantined.reapply(LARGEST.id)
    again = quarantined.reapply(LARGEST.id, ["t4"])

    assert result.outcome == "reapplied" and [r.outcome for r in again] == ["already applied"]
    assert total(store, LARGEST, buckets[0], ("eu",)) == 9
    assert store.read(LARGEST.id, "acme", "h", "h~") == []  # only the counter that missed it
    assert [p.state for p in quarantined.list(LARGEST.id)] == [APPLIED]


def test_listing_and_reapplying_name_what_is_wrong(store):
    _, quarantined = world(store, SUMMED)

    with pytest.raises(NotFound, match="no-such-metric"):
        quarantined.list("no-such-metric")
    with pytest.raises(InvalidInput) as bad_state:
        quarantined.list(SUMMED.id, "lost")
    with pytest.raises(NotFound, match="t404"):
        quarantined.reapply(SUMMED.id, ["t404"])
    assert bad_state.value.field == "state"
