"""Backfill jobs: a metric created after its events counts each of them exactly once, whatever order
ingest, activation, the live aggregator and the job's pages (crashed, retried, run twice) come in."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tally.adapters.dynamo.backfills import DynamoBackfillStore, DynamoSegmentScan
from tally.adapters.dynamo.events import DynamoEventStore
from tally.adapters.memory import MemoryCounterStore, MemoryEventStore, MemoryMetricStore
from tally.adapters.memory_backfill import MemoryBackfillQueue, MemoryBackfillStore, MemorySegmentScan
from tally.billing.backfill import SEGMENT_END, BackfillStatus, new_job
from tally.billing.counters import StreamedEvent, preaggregate, sequence_key
from tally.billing.events import UsageEvent
from tally.billing.metrics import Aggregation, BillableMetric, EventTypeFilter, PropertyFilter
from tally.billing.time import UTC
from tally.services.aggregate import AggregateService, apply_update
from tally.services.backfill import BackfillService, RunOutcome
from tally.services.metrics import MetricService
from tests.service.backfill_runner import run_backfills
from tests.service.conftest import NOW, Clock

# The model's one assumption, which infra makes true on AWS: an ingest writes its events within
# INGEST_BOUND of stamping them, or never (the ingest function's timeout kills it first), and the
# settle time is longer than that (infra/constructs/backfill.py: the timeout plus a margin).
INGEST_BOUND = timedelta(seconds=5)
SETTLE = timedelta(seconds=8)

STUCK_AFTER = timedelta(seconds=30)  # a create's longest run plus the settle time (the sweep's bound)
METRICS = (
    BillableMetric("", "calls", Aggregation.COUNT, None, EventTypeFilter(("call",)), (), ()),
    BillableMetric("", "tokens", Aggregation.SUM, "tokens", None, (PropertyFilter("tokens", exists=True),), (("region",),)),
)
MOST_CREATED = 4  # metrics a run creates: several wait together, and scans carry up to 3 of them


class TickingClock(Clock):
    """Each reading is a microsecond after the one before: operations that follow one another read
    later instants, as real ones do (a frozen clock would let an event's stamp equal an activation
    instant read after that event was written and aggregated, which no real run can)."""

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now


class Crash(Exception):
    """A backfill run dies here (the function times out, is killed, loses its connection)."""


class World:
    def __init__(self, settle: timedelta = SETTLE, segments: int = 2, page_size: int = 2, scan_metrics: int = 3,
                 run_event_metrics: int = 1_000) -> None:
        self.clock = TickingClock(NOW)
        self.events = MemoryEventStore()
        self.counters = MemoryCounterStore()
        self.metrics = MemoryMetricStore()
        self.jobs = MemoryBackfillStore()
        self.jobs.stale_index = True  # the waiting index lags, as gsi1 may: it lists jobs already taken
        self.queue = MemoryBackfillQueue()
        self.backfills = BackfillService(
            self.metrics, MemorySegmentScan(self.events), self.counters, self.jobs, self.queue, self.clock,
            settle=settle, segments=segments, page_size=page_size, stuck_after=STUCK_AFTER, scan_metrics=scan_metrics,
            run_event_metrics=run_event_metrics,
        )
        self.metric_service = MetricService(self.metrics, self.clock, self.backfills)
        self.aggregator = AggregateService(self.counters, self.metrics, self.clock)
        self.stamped: dict[int, datetime] = {}  # ingests begun, by event number: their stamp
        self.stream: list[StreamedEvent] = []  # records of the events written, in write order
        self.aggregated = 0  # the live aggregator's position in the stream
        self.last_batch: list[StreamedEvent] = []
        self.created: list[BillableMetric] = []
        self.pending: list[BillableMetric] = []  # stored, not yet activated by their create

    # -- ingest: stamp, then write (within INGEST_BOUND, or never) --------------------------------
    def stamp(self, i: int) -> None:
        self.stamped.setdefault(i, self.clock())

    def write(self, i: int) -> None:
        stamp = self.stamped.pop(i, None)
        if stamp is None or self.clock() - stamp > INGEST_BOUND:
            return  # never begun, or killed by its timeout before its write: nothing stored
        event = usage_event(i)
        if not self.events.put_new([event], ingested_at=stamp):  # first receipt of its transaction id
            self.stream.append(StreamedEvent(sequence_key(len(self.stream) + 1), event, stamp))

    def tick(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)
        self.queue.tick += seconds

    def create(self, which: int) -> None:
        """A whole create request: its job, the metric stored pending, activated, the job launched."""
        if len(self.created) < MOST_CREATED:
            self.created.append(self.metric_service.create(METRICS[which % len(METRICS)]))

    def store_pending(self, which: int) -> None:
        """The first half of a create request: job and pending metric stored (what runs between
        this and `activate` is what a slow create request lets happen meanwhile)."""
        if len(self.created) < MOST_CREATED:
            metric = replace(METRICS[which % len(METRICS)], id=f"m-{len(self.created)}", created_at=self.clock())
            self.backfills.prepare(metric.id)
            self.metrics.put(metric)
            self.created.append(metric)
            self.pending.append(metric)

    def activate(self) -> None:
        """The rest of a create request (or of one that crashed: then the aggregator or the job
        activates the metric when they meet it pending, and `finish` asks for the lost job)."""
        if self.pending:
            metric = self.metrics.activate(self.pending.pop(0).id, self.clock())
            self.backfills.launch(metric)

    # -- the live path ------------------------------------------------------------------------------
    def aggregate(self, count: int) -> None:
        self.last_batch = self.stream[self.aggregated : self.aggregated + count]
        self.aggregated += len(self.last_batch)
        if self.last_batch:
            assert self.aggregator.apply_batch("shard-1", self.last_batch).first_failed_sequence is None

    def replay(self) -> None:  # the stream hands the last batch over again
        if self.last_batch:
            self.aggregator.apply_batch("shard-1", self.last_batch)

    # -- the job's messages ---------------------------------------------------------------------------
    def page(self, crash_at: str | None = None, after: int = 0) -> None:
        message = self.queue.take()
        if message is None:
            return
        writes = iter(range(after + 1))

        def counter_fault(key):
            if next(writes, None) is None:
                raise Crash(key)

        def job_fault(operation):
            if operation == crash_at:
                raise Crash(operation)

        def send_fault(*args):
            raise Crash("send")

        self.counters.fail = counter_fault if crash_at == "counter" else None
        self.jobs.fail = job_fault if crash_at in ("claim", "finish", "form_scan") else None
        if crash_at == "send":  # the run dies as it sends its next messages (a start: its scan's)
            self.queue.send = send_fault
        try:
            if message.segment is None:
                self.backfills.start(message.metric_id)
                return
            run = self.backfills.run(message.metric_id, message.segment, max_pages=1)
        except Crash:
            self.queue.messages.append(message)  # not deleted: SQS hands it over again
            return
        finally:
            self.counters.fail = self.jobs.fail = None
            self.queue.__dict__.pop("send", None)
        if run.outcome is RunOutcome.MORE:
            self.queue.send(message.metric_id, [message.segment], 0)
        elif run.outcome is RunOutcome.WAIT:
            self.queue.send(message.metric_id, [message.segment], run.delay_seconds)

    def abandon(self) -> None:
        """A create request dies after storing its pending metric: nobody launches its job."""
        if self.pending:
            self.pending.pop(0)

    def duplicate_message(self) -> None:
        if self.queue.messages:
            self.queue.messages.append(self.queue.messages[0])

    def sweep(self) -> None:  # the scheduled sweep, at any moment: racing creates, starts and pages
        self.backfills.sweep()

    def finish(self) -> None:
        """Everything in flight lands: ingests write (or were killed), creates still running end,
        and, as on AWS, the sweep starts the jobs of creates that died; the jobs and the stream end."""
        for i in list(self.stamped):
            self.write(i)
        while self.pending:
            self.activate()
        self.tick(int(STUCK_AFTER.total_seconds()))
        self.backfills.sweep()
        run_backfills(self.backfills, self.queue, self.clock)
        self.aggregate(len(self.stream))

    # -- what the counters should hold: every stored event once, for each metric ---------------------
    def additive_totals(self, counters: MemoryCounterStore, metric_id: str) -> dict:
        """Each counter's total, its items (sub-items) added up."""
        totals: dict = {}
        for k, c in counters.counters.items():
            if k.metric_id == metric_id and c.total:
                counter = replace(k, sub=0)
                totals[counter] = totals.get(counter, 0) + c.total
        return totals

    def reference(self, metric: BillableMetric) -> dict:
        everything = replace(metric, activated_at=datetime.min.replace(tzinfo=UTC), archived_at=None)
        streamed = [StreamedEvent(sequence_key(1), s.event, s.ingested_at) for s in self.events.originals.values()]
        truth = MemoryCounterStore()
        for update in preaggregate(streamed, [everything]).values():
            apply_update(truth, "truth", update)
        return self.additive_totals(truth, metric.id)


def usage_event(i: int) -> UsageEvent:
    return UsageEvent(
        transaction_id=f"t{i % 13}",  # some numbers share a transaction id: the first write wins
        customer_id="acme",
        event_type="call" if i % 3 else "other",
        timestamp=NOW - timedelta(hours=1, minutes=i),
        properties={"tokens": i + 1, "region": "eu" if i % 2 else "us"},
    )


_PAGE = st.tuples(st.just("page"), st.just(0))
_INGEST = st.tuples(st.just("ingest"), st.integers(0, 15))
_CRASH = st.tuples(st.sampled_from(["crash_counter", "crash_claim", "crash_finish", "crash_form_scan", "crash_send"]),
                   st.integers(0, 3))
STEP = st.one_of(  # pages, ingests and crashes weigh double: the interleavings that matter need several
    st.tuples(st.just("stamp"), st.integers(0, 15)),
    st.tuples(st.just("write"), st.integers(0, 15)),
    _INGEST, _INGEST,
    st.tuples(st.just("tick"), st.sampled_from([1, 2, 3, 6])),
    st.tuples(st.just("create"), st.integers(0, 1)),
    st.tuples(st.just("store_pending"), st.integers(0, 1)),
    st.tuples(st.just("activate"), st.just(0)),
    st.tuples(st.just("abandon"), st.just(0)),
    st.tuples(st.just("aggregate"), st.integers(1, 4)),
    st.tuples(st.just("replay"), st.just(0)),
    _PAGE, _PAGE,
    _CRASH, _CRASH,
    st.tuples(st.just("duplicate_message"), st.just(0)),
    st.tuples(st.just("sweep"), st.just(0)),
)


def play(world: World, steps) -> None:
    """Each step takes a second (a tick adds more): the settle time passes within a few steps."""
    for name, arg in steps:
        world.tick(1)
        if name == "stamp":
            world.stamp(arg)
        elif name == "write":  # one of the ingests begun and not yet written
            if world.stamped:
                world.write(sorted(world.stamped)[arg % len(world.stamped)])
        elif name == "ingest":  # stamped and written at once
            world.stamp(arg)
            world.write(arg)
        elif name == "tick":
            world.tick(arg)
        elif name == "create":
            world.create(arg)
        elif name == "store_pending":
            world.store_pending(arg)
        elif name == "activate":
            world.activate()
        elif name == "abandon":
            world.abandon()
        elif name == "aggregate":
            world.aggregate(arg)
        elif name == "replay":
            world.replay()
        elif name == "page":
            world.page()
        elif name.startswith("crash_"):
            world.page(crash_at=name.removeprefix("crash_"), after=arg)
        elif name == "sweep":
            world.sweep()
        else:
            world.duplicate_message()
    world.finish()


# Found by hand, kept as examples: the activation race itself (the first message a job's start, the
# second its scan's page), and a page crashed half applied and retried after new events landed inside
# its key range (t10 sorts between t1 and t2).
RACE = [("stamp", 1), ("create", 0), ("page", 0), ("page", 0), ("write", 1), ("aggregate", 4)]
# Two metrics share a scan; the second is activated after the first, and an event stamped just
# before its activation is written a moment later: the scan must not read before the second's settle.
SHARED_RACE = [("create", 0), ("tick", 6), ("stamp", 1), ("create", 1), ("page", 0), ("page", 0), ("write", 1),
               ("aggregate", 4)]
CRASHED_PAGE = [("ingest", 0), ("ingest", 1), ("ingest", 2), ("ingest", 3), ("create", 1), ("tick", 9),
                ("page", 0), ("crash_counter", 0), ("ingest", 10), ("page", 0)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=20, max_size=60), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
       st.sampled_from([3, 4, 1_000]))
@example(RACE, 1, 2, 3, 1_000)
@example(CRASHED_PAGE, 1, 3, 3, 1_000)
@example(SHARED_RACE, 1, 2, 3, 1_000)
def test_every_counter_equals_the_reference_whatever_the_interleaving(steps, segments, page_size, scan_metrics,
                                                                      run_event_metrics):
    """Several metrics, created together or apart, share scans (up to `scan_metrics` each), whose
    pages shrink as they carry more (a run applies `run_event_metrics` events x metrics at most)."""
    world = World(segments=segments, page_size=page_size, scan_metrics=scan_metrics, run_event_metrics=run_event_metrics)
    play(world, steps)
    for metric in world.created:
        assert world.additive_totals(world.counters, metric.id) == world.reference(metric)
        assert world.backfills.view(world.metrics.get(metric.id)).status is BackfillStatus.COMPLETED


def test_an_event_stamped_before_activation_and_written_after_a_page_counts_once():
    # Stamped, then the metric is created, then the event is written while the job could already
    # read: the settle time holds the job's pages back until the write has landed.
    world = World(segments=1)
    play(world, RACE)
    (metric,) = world.created
    assert sum(world.additive_totals(world.counters, metric.id).values()) == 2  # the day and month counters
    assert world.additive_totals(world.counters, metric.id) == world.reference(metric)


def test_without_the_settle_time_that_event_is_counted_by_nobody():
    """The same order with no settle time: the job reads before the write lands, and the live path
    leaves an event stamped before activation to the job. The reference check catches it."""
    world = World(settle=timedelta(0), segments=1)
    play(world, RACE)
    (metric,) = world.created
    assert world.reference(metric) != {}
    assert world.additive_totals(world.counters, metric.id) == {}


def test_without_the_claimed_end_a_retried_page_would_lose_what_it_no_longer_reaches(monkeypatch):
    """A retry that read `page_size` items again, instead of up to the claimed end, would stop short
    of t2 (t10 now sits inside the page) and leave t2 out of the counters not yet written."""
    scan = MemorySegmentScan.scan_segment
    monkeypatch.setattr(MemorySegmentScan, "scan_segment", lambda self, *a, until=None: scan(self, *a))
    world = World(segments=1, page_size=3)
    play(world, CRASHED_PAGE)
    (metric,) = world.created
    assert world.additive_totals(world.counters, metric.id) != world.reference(metric)


def test_a_metric_activated_before_it_is_stored_would_miss_what_the_stream_met_first():
    """Reading the activation instant before storing the metric (the old create) opens a window:
    an event stamped after it, aggregated before the metric could be read, is counted by nobody."""
    world = World(segments=1)
    metric = replace(METRICS[0], id="m-early", created_at=world.clock(), activated_at=world.clock())
    world.backfills.prepare(metric.id)
    world.created.append(metric)
    play(world, [("ingest", 1), ("aggregate", 1)])
    world.metrics.put(metric)
    world.backfills.launch(metric)
    world.finish()
    assert world.additive_totals(world.counters, metric.id) == {} != world.reference(metric)


def test_create_returns_at_once_and_reads_show_the_job_waiting_running_then_completed():
    world = World(segments=2, page_size=3)
    for i in range(10):
        world.stamp(i)
        world.write(i)
    world.tick(60)
    metric = world.metric_service.create(METRICS[1])
    assert world.counters.writes == 0  # the create wrote no counter: the job will
    view = world.backfills.view(metric)
    assert (view.status, view.segments, view.segments_done, view.events_scanned) == (BackfillStatus.WAITING, 2, 0, 0)
    world.tick(9)
    world.page()  # the job's start: it forms its scan
    world.page()  # the scan's first page
    view = world.backfills.view(metric)
    assert view.status is BackfillStatus.RUNNING and 0 < view.events_scanned < 10
    world.finish()
    view = world.backfills.view(metric)
    assert view.status is BackfillStatus.COMPLETED and view.segments_done == 2
    assert (view.events_scanned, view.events_counted) == (10, 10)  # ten transaction ids, all with tokens
    assert view.start_after < view.completed_at <= world.clock.now


# -- the DynamoDB adapters, on moto --------------------------------------------------------------------
def test_a_claimed_page_is_read_again_up_to_its_end_even_with_new_items_inside_it(dynamo):
    client = dynamo["client"]
    events, scan = DynamoEventStore(dynamo["events"], client), DynamoSegmentScan(dynamo["events"], client)
    events.put_new([usage_event(i) for i in range(0, 13, 2)], ingested_at=NOW)  # t0, t2, ..., t12
    first = scan.scan_segment(0, 1, None, 3, NOW + SETTLE)
    assert len(first.items) == 3 and first.end != SEGMENT_END
    events.put_new([usage_event(i) for i in range(1, 13, 2)], ingested_at=NOW + SETTLE)  # t1, ..., t11
    again = scan.scan_segment(0, 1, None, 3, NOW + SETTLE, until=first.end)
    read_first = {s.event.transaction_id for s in first.items}
    assert {s.event.transaction_id for s in again.items if s.ingested_at == NOW} == read_first  # the same range
    assert len(again.items) > 3  # t1, t11 landed inside it: read too, and skipped as ingested later
    rest = scan.scan_segment(0, 1, first.end, 100, NOW + SETTLE, until=SEGMENT_END)
    keys = [s.event.transaction_id for s in again.items + rest.items]
    assert sorted(keys) == sorted({f"t{i}" for i in range(13)})  # every key once across the two reads


def test_claims_and_checkpoints_are_conditional_and_add_each_page_once(dynamo):
    store = DynamoBackfillStore(dynamo["billing"], dynamo["client"])
    metric = replace(METRICS[0], id="m-1", activated_at=NOW)
    store.create(new_job("m-1", SETTLE, 2, NOW))
    store.create(new_job("m-1", SETTLE * 2, 2, NOW))  # kept: the first one
    store.create(new_job("m-2", SETTLE, 2, NOW + SETTLE))
    assert store.get("m-1").start_after(metric) == NOW + SETTLE
    assert [j.metric_id for j in store.waiting(10)] == ["m-1", "m-2"]  # the index, oldest first
    assert store.form_scan("m-1", ["m-1", "m-2"], NOW + SETTLE) == ["m-1", "m-2"]
    assert store.form_scan("m-1", ["m-1"], NOW) is None and store.form_scan("m-2", ["m-2"], NOW) is None
    assert store.waiting(10) == []  # both left the index with the scan's transaction
    assert store.claim("m-1", 0, 0, '["txn#a", "event"]')
    assert not store.claim("m-1", 0, 0, '["txn#b", "event"]')  # one claim per page
    assert not store.finish("m-1", 0, 0, '["txn#b", "event"]', 5, {"m-1": 5}, NOW)
    assert store.finish("m-1", 0, 0, '["txn#a", "event"]', 3, {"m-1": 2, "m-2": 1}, NOW)
    assert not store.finish("m-1", 0, 0, '["txn#a", "event"]', 3, {"m-1": 2, "m-2": 1}, NOW)  # a retry adds nothing
    assert store.claim("m-1", 0, 1, SEGMENT_END) and store.finish("m-1", 0, 1, SEGMENT_END, 1, {"m-1": 1, "m-2": 0}, NOW)
    assert store.claim("m-1", 1, 0, SEGMENT_END) and store.finish("m-1", 1, 0, SEGMENT_END, 0, {"m-1": 0, "m-2": 0}, NOW + SETTLE)
    job = store.get("m-1")
    assert (job.scanned, job.counted, job.segments_done, job.completed_at) == (4, {"m-1": 3, "m-2": 1}, 2, NOW + SETTLE)
    assert (job.members, job.starts_at, store.get("m-2").scan) == (("m-1", "m-2"), NOW + SETTLE, "m-1")
    assert job.status(metric, NOW) is BackfillStatus.COMPLETED
    assert set(store.get_many(["m-1", "m-3"])) == {"m-1"}


def test_a_scan_leaves_out_a_job_another_scan_took_and_a_job_whose_metric_never_came_leaves_the_index(dynamo):
    store = DynamoBackfillStore(dynamo["billing"], dynamo["client"])
    for i in range(4):
        store.create(new_job(f"m-{i}", SETTLE, 1, NOW + timedelta(seconds=i)))
    assert store.form_scan("m-1", ["m-1", "m-2"], NOW) == ["m-1", "m-2"]
    assert store.form_scan("m-0", ["m-0", "m-1", "m-2", "m-3"], NOW) == ["m-0", "m-3"]  # one transaction, retried
    assert {m: store.get(m).scan for m in ("m-0", "m-1", "m-2", "m-3")} == {"m-0": "m-0", "m-1": "m-1", "m-2": "m-1", "m-3": "m-0"}
    store.create(new_job("m-4", SETTLE, 1, NOW))
    store.drop("m-4")
    store.drop("m-3")  # carried by a scan: stays as it is
    assert store.waiting(10) == [] and store.get("m-3").scan == "m-0"


def test_a_job_on_moto_counts_what_a_bare_recount_counts(dynamo):
    from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
    from tally.adapters.dynamo.counters import DynamoCounterStore

    client = dynamo["client"]
    clock = Clock(NOW)
    events = DynamoEventStore(dynamo["events"], client)
    counters = DynamoCounterStore(dynamo["counters"], client)
    metrics = DynamoMetricStore(DynamoBillingStore(dynamo["billing"], client))
    queue = MemoryBackfillQueue()
    backfills = BackfillService(metrics, DynamoSegmentScan(dynamo["events"], client), counters,
                                DynamoBackfillStore(dynamo["billing"], client), queue, clock, SETTLE, segments=3, page_size=4)
    events.put_new([usage_event(i) for i in range(7)], ingested_at=NOW - timedelta(minutes=5))
    metric = MetricService(metrics, clock, backfills).create(METRICS[1])
    run_backfills(backfills, queue, clock)
    assert backfills.view(metric).events_counted == 7
    assert backfills.view(metric).status is BackfillStatus.COMPLETED
    rows = counters.read(metric.id, "acme", "D20261124", "D20261124")
    assert sum(r.total for r in rows) == sum(range(1, 8))  # t0..t6: 1 + 2 + ... + 7 tokens


# -- stuck jobs: the sweep (defect: a create that died before sending its start waited forever) -----------
def stored_world(count: int = 10, scan_metrics: int = 3) -> World:
    world = World(segments=2, page_size=3, scan_metrics=scan_metrics)
    for i in range(count):
        world.stamp(i)
        world.write(i)
    world.tick(60)
    return world


@pytest.mark.parametrize("dies_after", ["job", "metric", "activation"])
def test_a_create_that_dies_before_sending_its_start_is_completed_by_the_sweep_each_event_once(dies_after):
    world = stored_world()

    def dies(*args):
        raise Crash("the create's function is killed")

    stages = {"job": world.metrics, "metric": world.metrics, "activation": world.queue}
    operation = {"job": "put", "metric": "activate", "activation": "start"}[dies_after]
    setattr(stages[dies_after], operation, dies)
    with pytest.raises(Crash):
        world.metric_service.create(METRICS[1])
    delattr(stages[dies_after], operation)
    (job,) = world.jobs.jobs.values()
    assert world.queue.messages == [] and job.scan is None  # nothing would ever wake it
    world.tick(int(STUCK_AFTER.total_seconds()) - 2)
    assert world.backfills.sweep() == 0  # not yet: the create could still be running
    world.tick(2)
    if dies_after == "job":  # no metric ever came: the job leaves the index, nothing else happens
        assert world.backfills.sweep() == 0 and world.jobs.waiting(10) == []
        return
    assert world.backfills.sweep() == 1
    run_backfills(world.backfills, world.queue, world.clock)
    metric = world.metrics.get(job.metric_id)
    view = world.backfills.view(metric)
    assert view.status is BackfillStatus.COMPLETED and (view.events_scanned, view.events_counted) == (10, 10)
    assert world.additive_totals(world.counters, metric.id) == world.reference(metric)


def test_a_sweep_racing_the_original_start_counts_nothing_twice():
    # The create's own start and the sweep's both arrive; the second finds the job leading its scan
    # and asks for its segments again, which run beside the first ones, page by page, interleaved.
    world = stored_world()
    world.backfills._stuck_after = timedelta(0)  # the sweep sees the job at once, as a late one would
    metric = world.metric_service.create(METRICS[1])
    assert world.backfills.sweep() == 1
    world.tick(9)
    world.page()
    world.page()  # both starts: the scan formed, then its segments asked for again
    assert [m.segment for m in world.queue.messages] == [0, 1, 0, 1]
    while world.queue.messages:
        world.page(crash_at="counter" if len(world.queue.messages) % 3 == 0 else None)
    view = world.backfills.view(metric)
    assert view.status is BackfillStatus.COMPLETED and (view.events_scanned, view.events_counted) == (10, 10)
    assert world.additive_totals(world.counters, metric.id) == world.reference(metric)


# -- shared scans ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scan_metrics, scans", [(3, 1), (1, 3)], ids=["shared: one scan", "alone: one scan each"])
def test_metrics_created_together_share_one_scan_of_the_events(scan_metrics, scans):
    world = stored_world(scan_metrics=scan_metrics)
    world.backfills._run_event_metrics = 6  # a run applies 6 events x metrics: pages of 3 alone, of 2 shared
    created = [world.metric_service.create(METRICS[i % 2]) for i in range(3)]
    world.finish()
    leaders = {j.scan for j in world.jobs.jobs.values()}
    assert len(leaders) == scans
    pages = {s: sum(c.pages for c in world.jobs.jobs[s].checkpoints.values()) for s in leaders}
    assert all(p >= math.ceil(10 / (6 // (3 if scans == 1 else 1))) for p in pages.values())  # 10 items, 2 segments
    assert sum(world.jobs.jobs[s].scanned for s in leaders) == 10 * scans  # the table read once per scan
    for metric in created:
        view = world.backfills.view(metric)
        assert view.status is BackfillStatus.COMPLETED and view.events_scanned == 10
        assert view.events_counted == (10 if metric.aggregation_type is Aggregation.SUM else 6)  # 6 "call" events
        assert world.additive_totals(world.counters, metric.id) == world.reference(metric)


def test_a_job_stored_before_shared_scans_runs_as_a_scan_of_its_own(dynamo):
    """An item as jobs were written before (checkpoints with the job, no leader, no index entry),
    with its segment messages still queued: they finish it, and its reads add up as before."""
    from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
    from tally.adapters.dynamo.counters import DynamoCounterStore

    client = dynamo["client"]
    clock = Clock(NOW + SETTLE * 2)
    metrics = DynamoMetricStore(DynamoBillingStore(dynamo["billing"], client))
    jobs = DynamoBackfillStore(dynamo["billing"], client)
    queue = MemoryBackfillQueue()
    backfills = BackfillService(metrics, DynamoSegmentScan(dynamo["events"], client), DynamoCounterStore(dynamo["counters"], client),
                                jobs, queue, clock, SETTLE, segments=2, page_size=4)
    DynamoEventStore(dynamo["events"], client).put_new([usage_event(i) for i in range(5)], ingested_at=NOW - SETTLE)
    metrics.put(replace(METRICS[1], id="m-old", created_at=NOW))
    metrics.activate("m-old", NOW)
    client.put_item(TableName=dynamo["billing"], Item={
        "pk": {"S": "backfill"}, "sk": {"S": "m-old"}, "settle_seconds": {"N": "8"}, "segments": {"N": "2"},
        "scanned": {"N": "0"}, "counted": {"N": "0"}, "p0": {"N": "0"}, "p1": {"N": "0"}})
    assert jobs.waiting(10) == [] and jobs.get("m-old").leads
    queue.send("m-old", [0, 1], 0)
    run_backfills(backfills, queue, clock)
    view = backfills.view(metrics.get("m-old"))
    assert view.status is BackfillStatus.COMPLETED and (view.events_scanned, view.events_counted) == (5, 5)


def test_metrics_created_together_on_moto_share_one_scan_and_each_counts_once(dynamo):
    from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
    from tally.adapters.dynamo.counters import DynamoCounterStore

    client = dynamo["client"]
    clock = Clock(NOW)
    counters = DynamoCounterStore(dynamo["counters"], client)
    metrics = DynamoMetricStore(DynamoBillingStore(dynamo["billing"], client))
    jobs = DynamoBackfillStore(dynamo["billing"], client)
    queue = MemoryBackfillQueue()
    backfills = BackfillService(metrics, DynamoSegmentScan(dynamo["events"], client), counters, jobs, queue, clock,
                                SETTLE, segments=3, page_size=4)
    DynamoEventStore(dynamo["events"], client).put_new([usage_event(i) for i in range(7)], ingested_at=NOW - timedelta(minutes=5))
    created = [MetricService(metrics, clock, backfills).create(METRICS[i % 2]) for i in range(3)]
    run_backfills(backfills, queue, clock)
    assert {jobs.get(m.id).scan for m in created} == {created[0].id}  # one scan carried all three
    assert jobs.get(created[0].id).scanned == 7
    for metric in created:
        view = backfills.view(metric)
        assert view.status is BackfillStatus.COMPLETED and view.events_scanned == 7
        assert view.events_counted == (7 if metric.aggregation_type is Aggregation.SUM else 4)  # t1, t2, t4, t5 are calls
    rows = counters.read(created[1].id, "acme", "D20261124", "D20261124")
    assert sum(r.total for r in rows) == sum(range(1, 8))


class _Unsuffixed:
    """The counters as the version before sub-items wrote them: every additive write to the
    unsuffixed item (sub 0), with the page's mark there."""

    def __init__(self, counters: MemoryCounterStore) -> None:
        self._counters = counters

    def __getattr__(self, name):
        operation = getattr(self._counters, name)
        if name not in ("add", "additive_state", "refuse", "high_water_mark"):
            return operation
        return lambda key, *args, **kwargs: operation(replace(key, sub=0), *args, **kwargs)


@pytest.mark.parametrize("with_floor", [True, False], ids=["the floor honoured", "without the floor"])
def test_a_page_the_version_before_sub_items_applied_is_counted_once_when_retried_after_the_deploy(with_floor):
    # The earlier version writes a page's counters to unsuffixed items, then dies before the
    # page's finish; the new version retries the claimed page, writing sub-items.
    world = stored_world()
    metric = world.metric_service.create(METRICS[1])
    world.tick(9)
    world.page()  # the start: the scan is formed and its segments asked for
    world.backfills._counters = _Unsuffixed(world.counters)
    world.page(crash_at="finish")  # the page's counter writes landed, its finish did not
    assert any(key.sub == 0 for key in world.counters.counters), "the earlier version wrote unsuffixed items"
    world.backfills._counters = world.counters  # the deploy
    deployed_at = int(world.clock.now.timestamp())
    world.backfills._unsuffixed_until = deployed_at if with_floor else None
    run_backfills(world.backfills, world.queue, world.clock)

    view = world.backfills.view(metric)
    assert view.status is BackfillStatus.COMPLETED
    totals, truth = world.additive_totals(world.counters, metric.id), world.reference(metric)
    if with_floor:
        assert totals == truth
    else:  # what the floor prevents: the retried page added again on the sub-items
        assert totals != truth and sum(totals.values()) > sum(truth.values())
