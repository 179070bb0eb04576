"""Offset lifecycle notifications for occurrences written when already due (services/notifications.py,
"Occurrences written late"): sent late, once, at the next run, unless written more than LATE_BOUND
after their event; and a claim a crashed run holds stops later runs until its lease ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.adapters.dynamo.documents import DynamoContractStore
from tally.adapters.dynamo.notifications import DynamoLifecycleIndex, DynamoNotificationStore
from tally.billing.notifications import LATE_BOUND, Occurrence, contract_occurrences, delivery_id, late_for, parse_offset
from tally.billing.time import parse_rfc3339
from tally.services.notifications import NotificationService, Watermark
from tests.conftest import examples
from tests.service.conftest import _table
from tests.service.test_notifications import TOPIC, Inbox, _contract

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


class Crash(BaseException):
    """The delivering function dying between its claim and its publish (no handler runs)."""


class CrashingInbox(Inbox):
    def __init__(self) -> None:
        super().__init__()
        self.crash = 0

    def publish(self, topic_arn, message, attributes):
        if self.crash:
            self.crash -= 1
            raise Crash()
        return super().publish(topic_arn, message, attributes)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_world(client, table: str) -> SimpleNamespace:
    clock = Clock(T0)
    inbox = CrashingInbox()
    contracts = DynamoContractStore(table, client, clock)
    service = NotificationService(
        DynamoNotificationStore(table, client), inbox, lambda: TOPIC, clock,
        contracts=contracts.get, invoices=lambda invoice_id: None, lease=LEASE,
    )
    return SimpleNamespace(client=client, table=table, clock=clock, inbox=inbox, contracts=contracts, service=service)


def world_of(dynamo) -> SimpleNamespace:
    return make_world(dynamo["client"], dynamo["billing"])


def deliver(world, as_of: datetime | None = None) -> dict:
    summary = world.service.deliver_due(as_of or world.clock.now).summary()
    assert summary["failed"] == [], summary
    return summary


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_contract_created_inside_the_offset_window_is_notified_late_once_at_the_next_run(dynamo):
    world = world_of(dynamo)
    config = world.service.create("renewal", "contract.end", "-P7D")
    world.clock.now = T0 + timedelta(hours=1)
    assert deliver(world)["delivered"] == 0  # the watermark is now past every end within 7 days
    world.contracts.create(_contract(end=T0 + timedelta(days=3)))  # already 4 days past its due instant
    assert deliver(world)["delivered"] == 1  # the next run, at the same instant even
    world.clock.now += timedelta(hours=1)
    assert deliver(world)["delivered"] == 0
    (message,) = world.inbox.of_type("contract.end")
    assert message["id"] == delivery_id(config["id"], f"contract.end|c1|c1|{at(72)}")
    assert message["properties"]["event_timestamp"] == at(72)
    assert message["properties"]["timestamp"] == at(72 - 7 * 24)  # when it was due, not when it went
    late = world.client.query(TableName=world.table, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": f"notification_late#{config['id']}"}})
    assert late["Items"] == []  # drained


def test_an_edit_that_moves_the_end_inside_the_window_is_notified_late_and_the_old_end_never(dynamo):
    world = world_of(dynamo)
    world.service.create("renewal", "contract.end", "-P7D")
    world.contracts.create(_contract(end=T0 + timedelta(days=30)))
    world.clock.now = T0 + timedelta(days=1)
    assert deliver(world)["delivered"] == 0
    world.contracts.replace(world.contracts.get("c1") | {"ending_before": at(24 + 48)})  # ends in 2 days now
    assert deliver(world)["delivered"] == 1
    world.clock.now = T0 + timedelta(days=31)
    summary = deliver(world)
    assert (summary["delivered"], summary["stale"]) == (0, 1)  # the old end: no longer the contract's
    (message,) = world.inbox.messages
    assert message["message"]["properties"]["event_timestamp"] == at(72)


def test_an_occurrence_written_longer_than_the_bound_after_its_event_is_never_sent(dynamo):
    world = world_of(dynamo)
    world.service.create("welcome", "contract.start", "PT0S")
    world.clock.now = T0 + timedelta(days=2)
    deliver(world)
    backdated = _contract("old") | {"starting_at": at(48 - 24 * 3)}  # started 3 days before it was written
    recent = _contract("new") | {"starting_at": at(48 - 2)}  # 2 hours before
    world.contracts.create(backdated)
    world.contracts.create(recent)
    assert LATE_BOUND < timedelta(days=3)
    assert deliver(world)["delivered"] == 1
    world.clock.now += timedelta(days=5)
    assert deliver(world)["delivered"] == 0
    (message,) = world.inbox.of_type("contract.start")
    assert message["properties"]["contract_id"] == "new"


def test_a_late_occurrence_due_within_the_skew_of_its_write_goes_once_when_due(dynamo):
    world = world_of(dynamo)
    world.service.create("renewal", "contract.end", "-P7D")
    deliver(world)
    world.contracts.create(_contract(end=T0 + timedelta(days=7, minutes=30)))  # due in 30 minutes
    assert deliver(world)["delivered"] == 0  # not due yet: the late entry stays
    world.clock.now += timedelta(minutes=30)
    assert deliver(world)["delivered"] == 1  # the walk or the late partition, whichever first
    world.clock.now += timedelta(hours=1)
    assert deliver(world)["delivered"] == 0


def test_a_claim_a_crashed_run_holds_stops_later_runs_until_its_lease_ends(dynamo):
    world = world_of(dynamo)
    world.service.create("renewal", "contract.end", "-P3D")
    world.contracts.create(_contract(end=T0 + timedelta(days=10)))
    world.clock.now = T0 + timedelta(days=7)
    world.inbox.crash = 1
    try:
        world.service.deliver_due(world.clock.now)
    except Crash:
        pass
    summary = deliver(world)  # the task's retry, seconds later: the claim is still leased
    assert (summary["delivered"], summary["held"]) == (0, 1)
    world.clock.now += timedelta(hours=1)  # the next run, past the lease
    assert deliver(world)["delivered"] == 1
    world.clock.now += timedelta(hours=1)
    assert deliver(world)["delivered"] == 0
    assert len(world.inbox.messages) == 1


CONFIGS = (("contract.end", "-P7D"), ("contract.end", "PT0S"), ("contract.start", "PT0S"), ("contract.end", "P1D"))
action = st.one_of(
    st.tuples(st.just("write"), st.integers(-60, 10), st.integers(-40, 400)),  # start, end - write time (hours)
    st.tuples(st.just("edit"), st.integers(0, 5), st.integers(-40, 400)),  # which contract, new end - now (hours)
    st.tuples(st.just("run"), st.sampled_from(["ok", "sns down", "crash"]), st.just(0)),
    st.tuples(st.just("retry"), st.just(0), st.just(0)),  # the same run again at once (within the lease)
    st.tuples(st.just("tick"), st.integers(1, 96), st.just(0)),  # hours
)


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(action, min_size=1, max_size=12))
def test_writes_runs_and_crashes_interleaved_deliver_each_occurrence_exactly_once(dynamo, plan):
    """Given configurations before and after contract events, when contracts are written and edited
    at any time (inside their offset windows too), runs happen with SNS failing or the function
    dying after its claim, and the same run is retried at once, then after the runs catch up every
    configuration x current occurrence is published exactly once if it was due after the watermark
    it was written behind, or late and written at most LATE_BOUND after its event; never
    otherwise, and nothing twice."""
    world = make_world(dynamo["client"], _table(dynamo["client"], "billing", gsi=True))
    configs = [world.service.create(f"c{n}", type_, offset) for n, (type_, offset) in enumerate(CONFIGS)]
    written: dict[str, tuple[datetime, dict]] = {}  # occurrence key -> when it was written, each watermark then
    store = world.service._store

    def now_and_marks() -> tuple[datetime, dict]:
        return world.clock.now, {
            c["id"]: store.watermark(store.get(c["id"])) or Watermark(parse_rfc3339(c["created_at"])) for c in configs
        }

    contracts: list[str] = []
    used_ends: dict[str, set[int]] = {}
    last_as_of = T0
    for kind, a, b in plan:
        now_hours = int((world.clock.now - T0).total_seconds() // 3600)
        if kind == "write":
            contract_id = f"k{len(contracts)}"
            start, end = now_hours + a, now_hours + max(b, a + 1)
            world.contracts.create(_contract(contract_id) | {"starting_at": at(start), "ending_before": at(end)})
            contracts.append(contract_id)
            used_ends[contract_id] = {end}
            written[f"contract.start|{contract_id}|{contract_id}|{at(start)}"] = now_and_marks()
            written[f"contract.end|{contract_id}|{contract_id}|{at(end)}"] = now_and_marks()
        elif kind == "edit" and contracts:
            contract_id = contracts[a % len(contracts)]
            current = world.contracts.get(contract_id)
            start = int((datetime.fromisoformat(current["starting_at"].replace("Z", "+00:00")) - T0).total_seconds() // 3600)
            end = max(now_hours + b, start + 1)
            if end in used_ends[contract_id]:
                continue  # a new end each time: an end moved back is the same occurrence, written twice
            used_ends[contract_id].add(end)
            world.contracts.replace(current | {"ending_before": at(end)})
            written[f"contract.end|{contract_id}|{contract_id}|{at(end)}"] = now_and_marks()
        elif kind in ("run", "retry"):
            world.inbox.fail = int(a == "sns down")
            world.inbox.crash = int(a == "crash")
            try:
                world.service.deliver_due(world.clock.now)
            except Crash:
                pass
            world.inbox.fail = world.inbox.crash = 0
            last_as_of = world.clock.now
        elif kind == "tick":
            world.clock.now += timedelta(hours=a)

    # The runs catch up: hourly, past every lease, until well after every due instant.
    world.clock.now = max(world.clock.now, last_as_of) + timedelta(days=20)
    for _ in range(2):
        deliver(world)
        world.clock.now += timedelta(hours=1)

    ids = [m["message"]["id"] for m in world.inbox.messages]
    assert len(ids) == len(set(ids)), "a notification was published twice"
    expected = set()
    for contract_id in contracts:
        document = world.contracts.get(contract_id)
        for config in configs:
            type_, offset = config["policy"]["type"], config["policy"]["offset"]
            instant = datetime.fromisoformat(document["ending_before" if type_ == "contract.end" else "starting_at"].replace("Z", "+00:00"))
            key = f"{type_}|{contract_id}|{contract_id}|{instant.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            due = instant + {"-P7D": -timedelta(days=7), "PT0S": timedelta(0), "P1D": timedelta(days=1)}[offset]
            written_at, marks = written[key]
            # Walked if due past the watermark it was written behind; else late, if written in time.
            if not marks[config["id"]].covers(due, key) or late_for(parse_offset(offset), Occurrence(type_, instant, "", None, ""), written_at):
                expected.add(delivery_id(config["id"], key))
    current = {delivery_id(c["id"], k) for c in configs for k in written}  # moved ends may have gone before the move
    assert expected <= set(ids), "a notification was never published"
    assert not (set(ids) - current)
    for message in world.inbox.messages:
        properties = message["message"]["properties"]
        key = f"{message['message']['type']}|{properties['contract_id']}|{properties['contract_id']}|{properties['event_timestamp']}"
        if delivery_id(properties["notification_id"], key) not in expected:  # an end moved after it went
            assert message["message"]["type"] == "contract.end"
            assert world.contracts.get(properties["contract_id"])["ending_before"] != properties["event_timestamp"]


def test_a_system_notification_turned_off_and_on_again_sends_nothing_late_from_before(dynamo):
    world = world_of(dynamo)
    world.service.set_system_enabled("contract.start", True)
    world.clock.now = T0 + timedelta(hours=1)
    deliver(world)
    world.contracts.create(_contract("before") | {"starting_at": at(0)})  # late for it, while on
    world.service.set_system_enabled("contract.start", False)
    world.clock.now += timedelta(minutes=10)
    world.service.set_system_enabled("contract.start", True)
    world.contracts.create(_contract("after") | {"starting_at": at(0)})  # late, while on again
    assert deliver(world)["delivered"] == 1
    (message,) = world.inbox.of_type("contract.start")
    assert message["properties"]["contract_id"] == "after"


def test_a_late_entry_whose_contract_write_is_still_landing_waits_and_one_that_never_lands_is_dropped(dynamo):
    world = world_of(dynamo)
    config = world.service.create("renewal", "contract.end", "-P7D")
    world.clock.now = T0 + timedelta(hours=1)
    deliver(world)
    index = DynamoLifecycleIndex(world.table, world.client, world.clock)
    landing, lost = _contract("landing", end=T0 + timedelta(days=3)), _contract("lost", end=T0 + timedelta(days=3))
    index.record(contract_occurrences(landing) + contract_occurrences(lost))  # recorded ahead of the writes...
    assert deliver(world)["stale"] == 2  # ...which a run overtakes
    world.contracts._lifecycle = SimpleNamespace(record=lambda occurrences: None)  # the write that was in flight
    world.contracts.create(landing)
    assert deliver(world)["delivered"] == 1
    world.clock.now += LEASE + timedelta(seconds=1)
    assert deliver(world)["stale"] == 1  # the lost write's entry, past a lease: dropped
    late = world.client.query(TableName=world.table, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": f"notification_late#{config['id']}"}})
    assert late["Items"] == []
    (message,) = world.inbox.messages
    assert message["message"]["properties"]["contract_id"] == "landing"
