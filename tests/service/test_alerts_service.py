"""AlertService on the DynamoDB alert store (moto): each crossing is claimed with a conditional
write and published once, whatever evaluators run at the same time, crash, or retry.

Readings and the publisher are fakes: what is under test is the state machine and its writes.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.adapters.dynamo.alerts import DynamoAlertStore
from tally.adapters.memory import MemoryCustomerStore, MemoryMetricStore
from tally.billing.alerts import AlertState, CustomerStatus, Reading
from tally.billing.customers import Customer
from tally.billing.errors import Conflict, InvalidInput
from tally.billing.metrics import Aggregation, BillableMetric
from tally.services.alerts import AlertContention, AlertService
from tests.conftest import examples

T0 = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
NOV = "2026-11-01T00:00:00Z"
USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"


@pytest.fixture(scope="module", autouse=True)
def atomic_moto_writes():
    """DynamoDB makes each conditional write atomic; moto checks and then writes with no lock.
    The local runtime serializes moto's writes (infra/local/moto_patches.py); so do these tests."""
    from infra.local import moto_patches

    moto_patches.install_atomic_writes()


class Crash(Exception):
    """A Lambda that died mid-evaluation (timeout, out of memory): the stream retries its batch."""


@dataclass
class Values:
    """The watched value per customer (what counters, drafts or balances would show).

    `overlap(customer_id, n)` makes the next n evaluators of that customer meet at their first
    reading, so all of them have read the same state before any of them writes: a real race."""

    by_customer: dict[str, Decimal] = field(default_factory=dict)
    window: str = NOV
    _gates: dict[str, threading.Barrier] = field(default_factory=dict)
    _met: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def overlap(self, customer_id: str, evaluators: int) -> None:
        self._gates[customer_id] = threading.Barrier(evaluators)
        self._met = {m for m in self._met if m[0] != customer_id}

    def _meet(self, customer_id: str) -> None:
        gate = self._gates.get(customer_id)
        with self._lock:
            me = (customer_id, threading.get_ident())
            if gate is None or me in self._met:
                return
            self._met.add(me)
        try:
            gate.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass

    def for_customer(self, customer):
        values = self

        class _Readings:
            def reading(self, alert):
                values._meet(customer.id)
                value = values.by_customer.get(customer.id)
                return Reading(value, values.window if alert.type.per_period else None)

        return _Readings()


@dataclass
class Publisher:
    """Records what reached SNS; `fail_next` makes the next publishes of an id fail first."""

    published: list[str] = field(default_factory=list)
    bodies: dict[str, list[dict]] = field(default_factory=dict)
    fail_next: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, topic_arn, message, attributes):
        with self.lock:
            if self.fail_next[message["id"]] > 0:
                self.fail_next[message["id"]] -= 1
                raise ConnectionError("SNS unavailable")
            self.published.append(message["id"])
            self.bodies.setdefault(message["id"], []).append(dict(message, attributes=dict(attributes)))
        return str(uuid.uuid4())


class FaultyStore:
    """The DynamoDB store, with crashes injected right after a crossing is claimed (before its
    publish) or right after its publish (before `pending` is cleared)."""

    def __init__(self, store: DynamoAlertStore) -> None:
        self._store = store
        self.crash_after_claim: Counter = Counter()  # customer id -> crashes left
        self.crash_before_clear: Counter = Counter()
        self.crashed_before_clear: set[str] = set()
        self.takeovers: Counter = Counter()  # customer id -> leases taken over after they ran out
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._store, name)

    def fire(self, state, *args, **kwargs):
        claimed = self._store.fire(state, *args, **kwargs)
        with self._lock:
            if claimed is not None and self.crash_after_claim[state.customer_id] > 0:
                self.crash_after_claim[state.customer_id] -= 1
                raise Crash("died after the claim, before the publish")
        return claimed

    def take_lease(self, state, lease_until):
        taken = self._store.take_lease(state, lease_until)
        # A take past the old lease is a takeover; one before it is the claimer's own release (a
        # failed publish lets its retry go at once).
        if taken is not None and state.lease_until is not None and lease_until > state.lease_until:
            with self._lock:
                self.takeovers[state.customer_id] += 1
        return taken

    def clear_pending(self, state):
        with self._lock:
            if self.crash_before_clear[state.customer_id] > 0:
                self.crash_before_clear[state.customer_id] -= 1
                self.crashed_before_clear.add(state.customer_id)
                raise Crash("died after the publish, before clearing pending")
        return self._store.clear_pending(state)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class World:
    service: AlertService
    store: FaultyStore
    values: Values
    publisher: Publisher
    customers: MemoryCustomerStore
    metrics: MemoryMetricStore


def make_world(dynamo, clock=utc_now, lease=timedelta(milliseconds=50), alerts=None) -> World:
    store = FaultyStore(alerts or DynamoAlertStore(dynamo["billing"], dynamo["client"]))
    customers, metrics = MemoryCustomerStore(), MemoryMetricStore()
    metrics.put(BillableMetric("m-calls", "calls", Aggregation.COUNT, None, None, (), ()))
    metrics.put(BillableMetric("m-tokens", "tokens", Aggregation.SUM, "tokens", None, (), (("region",),)))
    values, publisher = Values(), Publisher()
    service = AlertService(
        store, customers, metrics, lambda ct: ct == USD, values, publisher, lambda: TOPIC, clock, lease=lease,
    )
    return World(service, store, values, publisher, customers, metrics)


def add_customer(world: World, aliases=()) -> Customer:
    customer = Customer(str(uuid.uuid4()), "c", None, tuple(aliases), created_at=T0)
    world.customers.create(customer)
    return customer


def until_done(evaluate, attempts: int = 40):
    """What the stream does with a failed batch: deliver it again until it succeeds."""
    for _ in range(attempts):
        try:
            return evaluate()
        except (Crash, ConnectionError, AlertContention):
            continue
    raise AssertionError("evaluation never succeeded")


@pytest.fixture()
def world(dynamo):
    return make_world(dynamo)


def usage_alert(world, customer=None, threshold=100, evaluate_on_create=False, **fields):
    return world.service.create(
        name="calls over threshold",
        alert_type="usage_threshold_reached",
        threshold=threshold,
        customer_id=customer.id if customer else None,
        billable_metric_id="m-calls",
        evaluate_on_create=evaluate_on_create,
        **fields,
    )


# -- the basic life of an alert -----------------------------------------------------------------
def test_crossing_publishes_once_and_more_usage_publishes_nothing(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(99)
    world.service.evaluate(customer, [alert])
    assert world.publisher.published == []

    world.values.by_customer[customer.id] = Decimal(100)
    world.service.evaluate(customer, [alert])
    world.values.by_customer[customer.id] = Decimal(500)
    world.service.evaluate(customer, [alert])
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1"]
    _, state = world.service.customer_alert(alert.id, customer.id)
    assert state.status is CustomerStatus.IN_ALARM and state.pending is None


def test_reset_re_arms_and_a_value_still_past_the_threshold_is_a_new_crossing(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(150)
    world.service.evaluate(customer, [alert])
    world.service.reset(alert.id, customer.id)
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1", f"{alert.id}:{customer.id}:2"]


def test_reset_below_the_threshold_leaves_the_alert_ok_and_armed(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(150)
    world.service.evaluate(customer, [alert])
    world.values.window = "2026-12-01T00:00:00Z"  # a new period: usage starts again
    world.values.by_customer[customer.id] = Decimal(0)
    world.service.reset(alert.id, customer.id)
    _, state = world.service.customer_alert(alert.id, customer.id)
    assert state.status is CustomerStatus.OK
    world.values.by_customer[customer.id] = Decimal(100)
    world.service.evaluate(customer, [alert])
    assert world.publisher.published[-1] == f"{alert.id}:{customer.id}:2"


def test_a_new_billing_period_re_arms_usage_alerts(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(100)
    world.service.evaluate(customer, [alert])
    world.values.window, world.values.by_customer[customer.id] = "2026-12-01T00:00:00Z", Decimal(120)
    world.service.evaluate(customer, [alert])
    assert len(world.publisher.published) == 2


def test_a_low_balance_topped_up_re_arms_silently_and_fires_again_when_low(world):
    customer = add_customer(world)
    alert = world.service.create(
        name="low credit", alert_type="low_credit_balance_reached", threshold=500, customer_id=customer.id,
        evaluate_on_create=False,
    )
    for balance in ("800", "400", "300", "2000", "500"):
        world.values.by_customer[customer.id] = Decimal(balance)
        world.service.evaluate(customer, [alert])
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1", f"{alert.id}:{customer.id}:2"]


def test_evaluate_on_create_fires_for_a_customer_already_past_the_threshold(world):
    customer = add_customer(world)
    world.values.by_customer[customer.id] = Decimal(1000)
    alert = usage_alert(world, customer, evaluate_on_create=True)
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1"]


def test_an_all_customer_alert_is_evaluated_on_every_customer_on_create(world):
    customers = [add_customer(world) for _ in range(3)]
    world.values.by_customer.update({customers[0].id: Decimal(100), customers[1].id: Decimal(5)})
    alert = usage_alert(world, None, evaluate_on_create=True)
    assert world.publisher.published == [f"{alert.id}:{customers[0].id}:1"]


def test_counter_changes_resolve_aliases_and_skip_usage_alerts_of_untouched_metrics(world):
    customer = add_customer(world, aliases=["acme"])
    calls = usage_alert(world, customer, threshold=1)
    tokens = world.service.create(
        name="tokens", alert_type="usage_threshold_reached", threshold=1, customer_id=customer.id,
        billable_metric_id="m-tokens", evaluate_on_create=False,
    )
    world.values.by_customer[customer.id] = Decimal(5)
    outcome = world.service.evaluate_usage_changes({"acme": {"m-tokens"}, "nobody-yet": {"m-calls"}})
    assert outcome["acme"].fired == 1 and outcome["nobody-yet"].fired == 0
    assert world.publisher.published == [f"{tokens.id}:{customer.id}:1"]
    assert calls.id not in " ".join(world.publisher.published)


def test_archived_alerts_are_not_evaluated_and_list_shows_them_only_on_request(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.service.archive(alert.id)
    world.values.by_customer[customer.id] = Decimal(500)
    world.service.evaluate_customer(customer.id)
    assert world.publisher.published == []
    assert world.service.customer_alerts(customer.id) == []
    assert [a.id for a, _ in world.service.customer_alerts(customer.id, ["archived"])] == [alert.id]


def test_uniqueness_key_makes_a_second_create_a_conflict_until_released(world):
    customer = add_customer(world)
    key = f"k-{uuid.uuid4()}"
    first = usage_alert(world, customer, uniqueness_key=key)
    with pytest.raises(Conflict):
        usage_alert(world, customer, uniqueness_key=key)
    world.service.archive(first.id, release_uniqueness_key=True)
    usage_alert(world, customer, uniqueness_key=key)


def test_bad_input_stores_nothing(world):
    customer = add_customer(world)
    with pytest.raises(InvalidInput) as raised:
        usage_alert(world, customer, threshold=-5)
    assert raised.value.field == "threshold"
    with pytest.raises(InvalidInput) as raised:
        world.service.create(name="x", alert_type="usage_threshold_reached", threshold=1, billable_metric_id="nope")
    assert raised.value.field == "billable_metric_id"
    assert world.service.customer_alerts(customer.id) == []


# -- faults ------------------------------------------------------------------------------------
def test_a_crash_between_claim_and_publish_is_published_by_the_retry(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(100)
    world.store.crash_after_claim[customer.id] = 1
    with pytest.raises(Crash):
        world.service.evaluate(customer, [alert])
    assert world.publisher.published == []
    _, state = world.service.customer_alert(alert.id, customer.id)
    assert state.status is CustomerStatus.IN_ALARM and state.pending is not None
    world.service.evaluate(customer, [alert])  # the stream's retry, after the lease
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1"]


def test_sns_failing_leaves_the_crossing_pending_and_the_retry_publishes_it_without_waiting(dynamo):
    calls = []
    world = make_world(dynamo, lease=timedelta(hours=1))  # a wait would hang the test
    world.service._sleep = calls.append
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(100)
    world.publisher.fail_next[f"{alert.id}:{customer.id}:1"] = 1
    with pytest.raises(ConnectionError):
        world.service.evaluate(customer, [alert])
    world.service.evaluate(customer, [alert])
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1"]
    assert calls == []


def test_a_crash_after_publish_republishes_the_same_id_for_consumers_to_drop(world):
    customer = add_customer(world)
    alert = usage_alert(world, customer)
    world.values.by_customer[customer.id] = Decimal(100)
    world.store.crash_before_clear[customer.id] = 1
    until_done(lambda: world.service.evaluate(customer, [alert]))
    assert world.publisher.published == [f"{alert.id}:{customer.id}:1"] * 2
    first, again = world.publisher.bodies[f"{alert.id}:{customer.id}:1"]
    assert first == again  # the same envelope, parked at the claim: consumers dedupe on its id


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=300),  # the customer's usage
            st.integers(min_value=1, max_value=4),  # evaluators running at once
            st.integers(min_value=0, max_value=2),  # crashes after the claim
            st.integers(min_value=0, max_value=2),  # SNS failures
            st.booleans(),  # crash after the publish, before the clear
        ),
        min_size=1,
        max_size=5,
    ),
    rounds=st.integers(min_value=1, max_value=3),
)
def test_each_crossing_is_published_exactly_once_under_concurrency_crashes_and_retries(dynamo, plan, rounds):
    """Given customers whose usage may or may not cross 100, when several evaluators run at once on
    each, some crash after the claim, SNS fails some publishes, and every failed evaluation is
    retried (as the stream does), then every customer past the threshold has exactly one crossing,
    published once, or twice with the same id only where a crash hit between publish and clear."""
    # A lease far longer than a claim-to-clear here (ms), even with 24 threads on moto: a crash, a
    # failed publish or a claimer stalled past its lease (a loaded machine) lets another evaluator
    # take the crossing over. Only a takeover of a live claimer may publish twice (by design, the
    # same id): every extra publish must be matched by a takeover no injected fault explains.
    world = make_world(dynamo, lease=timedelta(milliseconds=500))
    alert = usage_alert(world, None)
    customers = []
    for usage, _, crashes, sns_failures, crash_after_publish in plan:
        customer = add_customer(world)
        customers.append(customer)
        world.values.by_customer[customer.id] = Decimal(usage)
        world.store.crash_after_claim[customer.id] = crashes
        world.publisher.fail_next[f"{alert.id}:{customer.id}:1"] = sns_failures
        world.store.crash_before_clear[customer.id] = int(crash_after_publish)

    with ThreadPoolExecutor(max_workers=24) as pool:  # every evaluator at once: the gates wait for all
        for _ in range(rounds):  # later rounds: more usage lands, the stream delivers again
            for customer, (_, evaluators, *_rest) in zip(customers, plan):
                world.values.overlap(customer.id, evaluators)
            futures = [
                pool.submit(until_done, lambda c=c: world.service.evaluate(c, [alert]))
                for c, (_, evaluators, *_rest) in zip(customers, plan)
                for _ in range(evaluators)
            ]
            for future in futures:
                future.result()
            for customer in customers:
                world.values.by_customer[customer.id] += 7

    published = Counter(world.publisher.published)
    for customer, (usage, *_rest) in zip(customers, plan):
        crossing = f"{alert.id}:{customer.id}:1"
        ids = {i for i in published if i.startswith(f"{alert.id}:{customer.id}:")}
        crossed_at_some_round = usage + 7 * (rounds - 1) >= 100
        assert ids == ({crossing} if crossed_at_some_round else set())
        if crossed_at_some_round:
            _, _, crashes, sns_failures, crash_after_publish = plan[customers.index(customer)]
            explained = crashes + sns_failures + int(crash_after_publish)  # each ends in a takeover
            stalled = max(0, world.store.takeovers[customer.id] - explained)
            allowed = 1 + int(customer.id in world.store.crashed_before_clear) + stalled
            assert 1 <= published[crossing] <= allowed, (published[crossing], world.store.takeovers[customer.id], explained)
            _, state = world.service.customer_alert(alert.id, customer.id)
            assert state.status is CustomerStatus.IN_ALARM and state.pending is None and state.crossings == 1



class MemoryAlertStore:
    """DynamoAlertStore's contract in memory, each write a compare-and-set on the state's version
    under one lock (what the conditional writes give on DynamoDB; the store on moto is raced in the
    tests above). It is for scale: 1,000 customers on moto take some 50 s."""

    def __init__(self) -> None:
        self._alerts: dict[str, object] = {}
        self._states: dict[tuple[str, str], AlertState] = {}
        self._lock = threading.Lock()

    def create(self, alert) -> None:
        self._alerts[alert.id] = alert

    def get(self, alert_id):
        return self._alerts.get(alert_id)

    def in_scope(self, customer_id):
        return [a for a in self._alerts.values() if a.customer_id == customer_id]

    def state(self, alert_id, customer_id):
        return self._states.get((alert_id, customer_id)) or AlertState(alert_id, customer_id)

    def states(self, alert_ids, customer_id):
        return {a: self.state(a, customer_id) for a in alert_ids}

    def _swap(self, seen: AlertState, new: AlertState, unless_pending: bool = True) -> AlertState | None:
        with self._lock:
            now = self.state(seen.alert_id, seen.customer_id)
            if now.version != seen.version or (unless_pending and now.pending is not None):
                return None
            self._states[(seen.alert_id, seen.customer_id)] = new
            return new

    def fire(self, state, window, value, at, message, lease_until):
        return self._swap(state, replace(
            state, status=CustomerStatus.IN_ALARM, version=state.version + 1, crossings=state.crossings + 1,
            window=window, value=value, triggered_at=at, updated_at=at, pending=message, lease_until=lease_until,
        ))

    def rearm(self, state, at):
        return self._swap(state, replace(state, status=CustomerStatus.OK, version=state.version + 1, updated_at=at))

    def take_lease(self, state, lease_until):
        with self._lock:
            now = self.state(state.alert_id, state.customer_id)
            if now.crossings != state.crossings or now.lease_until != state.lease_until or now.pending is None:
                return None
            self._states[(state.alert_id, state.customer_id)] = taken = replace(now, lease_until=lease_until)
            return taken

    def clear_pending(self, state) -> None:
        with self._lock:
            now = self.state(state.alert_id, state.customer_id)
            if now.crossings == state.crossings and now.pending is not None:
                self._states[(state.alert_id, state.customer_id)] = replace(now, pending=None, lease_until=None)


def test_a_thousand_customers_crossing_at_once_publish_exactly_a_thousand_messages():
    """The 1,000-customer burst at the real scale, in process: one all-customer usage alert, 1,000
    customers each at the threshold, their counter changes delivered as the stream does (batches of
    100 ingest keys, as the event source's BatchSize), four shards at once, and every batch delivered
    a second time at once (a retry overlapping a slow attempt), both reading each state before either
    claims. Exactly
    1,000 messages, one per customer, none twice. (tests/system/test_alerts_sdk.py sends a smaller
    burst through the whole stack: HTTP, stream pump, the function, SNS to SQS.)"""
    import time

    world = make_world(None, lease=timedelta(minutes=5), alerts=MemoryAlertStore())  # no claim outlives it
    world.service._sleep = lambda seconds: time.sleep(0.001)  # a loser polls until the winner clears
    alert = usage_alert(world, None, threshold=3)
    customers = [add_customer(world, aliases=[f"load-{n}"]) for n in range(1000)]
    world.values.by_customer.update({c.id: Decimal(3) for c in customers})
    for customer in customers:
        world.values.overlap(customer.id, 2)  # both deliveries read the state before either writes
    keys = [f"load-{n}" for n in range(1000)]
    batches = [{key: {"m-calls"} for key in keys[i : i + 100]} for i in range(0, 1000, 100)]

    def deliver(batch):
        def once():
            failed = [r for r in world.service.evaluate_usage_changes(batch).values() if isinstance(r, Exception)]
            if failed:
                raise failed[0]
        until_done(once)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(deliver, [b for batch in batches for b in (batch, batch)]))

    ids = world.publisher.published
    assert len(ids) == 1000, f"{len(ids)} messages for 1000 crossings"
    assert len(set(ids)) == 1000, "a crossing was published twice"
    assert set(ids) == {f"{alert.id}:{c.id}:1" for c in customers}
    assert {b["properties"]["customer_id"] for [b] in world.publisher.bodies.values()} == {c.id for c in customers}
