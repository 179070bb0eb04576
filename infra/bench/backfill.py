"""Figure 13 of `tally bench`: creating a billable metric over stored events, and its backfill job.

What is measured, on the in-memory stores (tally.adapters.memory, memory_backfill): the events are
stored first (1,000,000 in a full run, 20,000 in a quick one), spread over 1,000 customers and 30
days; then, timed:
- the create, as the API's use case runs it (MetricService.create: job, pending metric, activation,
  the job's start message), with every event already stored;
- the job, as the backfill function runs it: every message, in turn, each run reading and applying
  what a run may (tally.billing.limits.BACKFILL_RUN_EVENT_METRICS: one page of 10,000 events for one
  metric) of its segment, with checkpoints (8 segments, one process; on AWS the segments run in
  parallel). The settle time (30 s on AWS) is not waited for here: the clock is
  moved past it;
- the baseline, in the same run: a bare scan of the same events through the same paged segment
  reads, counting them and nothing else.
The job's count is checked against the number of stored events (the metric counts every event).

13d-f, shared scans: SHARED_METRICS metrics created together, over a store of their own (50,000
events in a full run, 1,000 in a quick one: k jobs unshared take k times the single job's time),
then their jobs run to the end three ways, side by side: one metric alone;
the k metrics as jobs are now (the waiting jobs share one scan); and the k metrics each scanning
alone (scans of one metric, as before). The figure is the items the scans read (DynamoDB's read
units follow them), each metric's count checked; and the page CPU per metric, which the bound on
a scan's metrics (tally.billing.limits.MAX_BACKFILL_SCAN_METRICS) is derived from.

Why not moto: moto serializes a scanned item in about 5 ms (infra/local measurements), so a scan of
1,000,000 events would take over an hour of CPU here; writing them would take 15 minutes more. The
in-memory stores keep the same contracts (conditional claims and checkpoints, counter marks), and
the figure is the job's own CPU: the DynamoDB side (read units of a full scan, one conditional
write per counter per page) is the capacity figures' business.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 5_000
FULL_SHARED_EVENTS = 50_000
QUICK_SHARED_EVENTS = 1_000
SHARED_METRICS = 5
CUSTOMERS = 1_000
SETTLE = timedelta(seconds=30)
CREATE_GOAL_S = 1.0
NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


@dataclass(frozen=True)
class BackfillFigures:
    events: int
    create_s: float
    job_s: float
    bare_scan_s: float
    pages: int
    runs: int
    counted: int
    counter_writes: int  # conditional counter writes the job made (its DynamoDB write cost)


@dataclass(frozen=True)
class SharedFigures:
    """k metrics created together, their jobs run to the end (`scan_metrics` 1: each scans alone)."""

    metrics: int
    events: int
    scans: int
    items_scanned: int  # items the scans read, all of them together
    job_s: float
    job_cpu_s: float  # the process's CPU for the same jobs (one thread): less noisy on a shared machine
    page_applications: int  # pages applied, times the metrics each was applied to
    counter_writes: int  # conditional counter writes, all metrics together


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _stored_events(count: int):
    from tally.adapters.memory import MemoryEventStore
    from tally.billing.events import UsageEvent
    from tally.services.ports import StoredEvent

    store = MemoryEventStore()
    ingested = NOW - timedelta(days=1)
    originals = store.originals
    for i in range(count):  # straight into the store: how they got there is not the figure
        event = UsageEvent(f"bf-{i:08d}", f"customer-{i % CUSTOMERS}", "completion",
                           NOW - timedelta(days=1 + i % 30, minutes=i % 1440), {"tokens": i % 97 + 1})
        originals[event.transaction_id] = StoredEvent(f"id-{i}", event, ingested - timedelta(seconds=i % 86_400), False)
    return store


def _world(store, scan_metrics: int | None = None):
    from tally.adapters.memory import MemoryCounterStore, MemoryMetricStore
    from tally.adapters.memory_backfill import MemoryBackfillQueue, MemoryBackfillStore, MemorySegmentScan
    from tally.billing.backfill import DEFAULT_SEGMENTS
    from tally.services.backfill import BackfillService
    from tally.services.metrics import MetricService

    scan = MemorySegmentScan(store)
    scan.scan_segment(0, DEFAULT_SEGMENTS, None, 1, NOW)  # the segments' key order, built once: not timed
    clock = _Clock(NOW)
    metrics, counters, jobs, queue = MemoryMetricStore(), MemoryCounterStore(), MemoryBackfillStore(), MemoryBackfillQueue()
    extra = {} if scan_metrics is None else {"scan_metrics": scan_metrics}
    backfills = BackfillService(metrics, scan, counters, jobs, queue, clock, SETTLE, **extra)
    return scan, clock, metrics, counters, jobs, queue, backfills, MetricService(metrics, clock, backfills)


def _run_queue(backfills, queue) -> tuple[int, int]:
    """Every message, in turn, as the backfill function handles it; (runs, pages)."""
    from tally.services.backfill import RunOutcome

    runs = pages = 0
    while (message := queue.take()) is not None:
        if message.segment is None:  # a job's start: it forms (or joins) a scan, and asks for its segments
            backfills.start(message.metric_id)
            continue
        run = backfills.run(message.metric_id, message.segment)
        runs, pages = runs + 1, pages + run.pages
        if run.outcome is RunOutcome.MORE:
            queue.send(message.metric_id, [message.segment], 0)
        assert run.outcome is not RunOutcome.WAIT, "the clock is past every scan's start"
    return runs, pages


def _tokens_metric():
    from tally.billing.metrics import Aggregation, BillableMetric, PropertyFilter

    return BillableMetric("", "tokens", Aggregation.SUM, "tokens", None, (PropertyFilter("tokens", exists=True),), ())


def measure(events: int) -> BackfillFigures:
    from tally.billing.backfill import DEFAULT_PAGE_SIZE, DEFAULT_SEGMENTS

    store = _stored_events(events)
    scan, clock, metrics, counters, jobs, queue, backfills, service = _world(store)

    started = time.perf_counter()
    metric = service.create(_tokens_metric())
    create_s = time.perf_counter() - started

    clock.now = NOW + 2 * SETTLE + timedelta(seconds=1)  # past the start's settle, and its scan's
    queue.tick = 2 * SETTLE.total_seconds() + 1
    started = time.perf_counter()
    runs, pages = _run_queue(backfills, queue)
    job_s = time.perf_counter() - started
    view = backfills.view(metrics.get(metric.id))
    assert view is not None and view.status.value == "completed", view
    if view.events_counted != events:
        raise AssertionError(f"the job counted {view.events_counted} of {events} events")

    started = time.perf_counter()
    seen = 0
    for segment in range(DEFAULT_SEGMENTS):
        cursor: str | None = None
        while True:
            page = scan.scan_segment(segment, DEFAULT_SEGMENTS, cursor, DEFAULT_PAGE_SIZE, NOW)
            seen += len(page.items)
            if page.end == "END":
                break
            cursor = page.end
    bare_scan_s = time.perf_counter() - started
    assert seen == events
    return BackfillFigures(events, create_s, job_s, bare_scan_s, pages, runs, view.events_counted, counters.writes)


def measure_shared(store, events: int, k: int, scan_metrics: int | None = None) -> SharedFigures:
    """k metrics created together (one after another, as fast as the API answers), their jobs run."""
    _, clock, metrics, counters, jobs, queue, backfills, service = _world(store, scan_metrics)
    created = [service.create(_tokens_metric()) for _ in range(k)]
    clock.now = NOW + 2 * SETTLE + timedelta(seconds=1)
    queue.tick = 2 * SETTLE.total_seconds() + 1
    started, cpu = time.perf_counter(), time.process_time()
    _, pages = _run_queue(backfills, queue)
    job_s, job_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    for metric in created:
        view = backfills.view(metrics.get(metric.id))
        assert view is not None and view.status.value == "completed", view
        if view.events_counted != events:
            raise AssertionError(f"a shared job counted {view.events_counted} of {events} events")
    leaders = {job.scan for job in jobs.jobs.values()}
    applications = sum(len(jobs.jobs[s].members) * sum(c.pages for c in jobs.jobs[s].checkpoints.values()) for s in leaders)
    return SharedFigures(k, events, len(leaders), sum(jobs.jobs[s].scanned for s in leaders), job_s, job_cpu_s, applications,
                         counters.writes)


def figure_backfill(report: Any, quick: bool) -> None:
    from infra.bench.report import Row
    from tally.billing.limits import BACKFILL_EVENT_CPU_US

    page_cpu_goal_ms = BACKFILL_EVENT_CPU_US * 10_000 // 1_000  # what limits.py assumes for a 10,000-event page

    figures = measure(QUICK_EVENTS if quick else FULL_EVENTS)
    n = f"{figures.events:,}"
    shared_events = QUICK_SHARED_EVENTS if quick else FULL_SHARED_EVENTS
    store = _stored_events(shared_events)
    one = measure_shared(store, shared_events, 1)
    shared = measure_shared(store, shared_events, SHARED_METRICS)
    alone = measure_shared(store, shared_events, SHARED_METRICS, scan_metrics=1)
    page_cpu_ms = shared.job_cpu_s * 1000 / (shared.events * shared.metrics / 10_000)  # a 10,000-event page, one metric
    report.figures |= {
        "backfill_events": figures.events,
        "backfill_create_ms": figures.create_s * 1000,
        "backfill_job_s": figures.job_s,
        "backfill_bare_scan_s": figures.bare_scan_s,
        "backfill_job_vs_bare_scan": figures.job_s / figures.bare_scan_s,
        "backfill_create_vs_bare_scan": figures.create_s / figures.bare_scan_s,
        "backfill_job_events_per_s": figures.events / figures.job_s,
        "backfill_counter_writes_per_event": figures.counter_writes / figures.events,
        "backfill_shared_metrics": shared.metrics,
        "backfill_shared_items_vs_one": shared.items_scanned / one.items_scanned,
        "backfill_unshared_items_vs_one": alone.items_scanned / one.items_scanned,
        "backfill_shared_scans": shared.scans,
        "backfill_page_cpu_ms_per_metric": page_cpu_ms,
        "backfill_shared_writes_vs_alone": shared.counter_writes / alone.counter_writes,
    }
    report.rows.append(Row(
        f"13  metric create over {n} stored events", f"{figures.create_s * 1000:.2f} ms",
        f"bare scan {figures.bare_scan_s:.2f} s", f"{figures.create_s / figures.bare_scan_s:.5f}×",
        f"< {CREATE_GOAL_S:g} s", "met" if figures.create_s < CREATE_GOAL_S else "missed"))
    report.rows.append(Row(
        f"13b backfill job over {n} events", f"{figures.job_s:.2f} s ({figures.events / figures.job_s:,.0f}/s)",
        f"bare scan {figures.bare_scan_s:.2f} s", f"{figures.job_s / figures.bare_scan_s:.1f}×",
        "completes", "met" if figures.counted == figures.events else "missed"))
    report.rows.append(Row(
        "13c backfill counter writes per event", f"{figures.counter_writes / figures.events:.2f}",
        "live path: figure 7", "", "", ""))
    k, m = SHARED_METRICS, f"{shared_events:,}"
    report.rows.append(Row(
        f"13d items scanned, {k} metrics created together ({m} events)",
        f"{shared.items_scanned:,} ({shared.scans} scan)", f"1 metric: {one.items_scanned:,}",
        f"{shared.items_scanned / one.items_scanned:.2f}×", "~1× (not {k}×)".replace("{k}", str(k)),
        "met" if shared.items_scanned <= 1.1 * one.items_scanned else "missed"))
    report.rows.append(Row(
        f"13e the same {k} metrics, each scanning alone (as before)", f"{alone.items_scanned:,} ({alone.scans} scans)",
        f"1 metric: {one.items_scanned:,}", f"{alone.items_scanned / one.items_scanned:.2f}×", "", ""))
    report.rows.append(Row(
        f"13g counter writes per event per metric, {k} shared (smaller pages)",
        f"{shared.counter_writes / (shared.events * k):.2f}", f"alone: {alone.counter_writes / (alone.events * k):.2f}",
        f"{shared.counter_writes / alone.counter_writes:.2f}×", "", ""))
    report.rows.append(Row(
        "13f page CPU per metric (10,000 events)", f"{page_cpu_ms:.0f} ms",
        f"jobs' CPU: 1 metric {one.job_cpu_s:.2f} s, {k} shared {shared.job_cpu_s:.2f} s, {k} alone {alone.job_cpu_s:.2f} s",
        "",
        f"< {page_cpu_goal_ms:,} ms (limits.py)", "met" if page_cpu_ms < page_cpu_goal_ms else "missed"))
    report.notes.append(
        f"13d-f: {k} metrics created one after another, their jobs run to the end (each metric's count checked) "
        f"over {m} stored events: jobs waiting when a scan forms share it (each page applied to every metric); "
        f"13e is the same with scans of one metric each. Items scanned are what DynamoDB bills read units on. "
        f"13f: the jobs' process CPU (not wall time) per 10,000 events applied to one metric, which limits.py takes (with 2 counter writes "
        f"an event at 5 ms) to size a run: pages k times smaller for k metrics, at most MAX_BACKFILL_SCAN_METRICS.")
    report.notes.append(
        f"13: in-memory stores, {n} events stored beforehand over {CUSTOMERS:,} customers and 30 days; create timed "
        f"as MetricService.create runs it (job, pending metric, activation, the job's start message); "
        f"the job timed as the backfill function runs it, one process, {figures.runs:,} runs, {figures.pages:,} pages of "
        f"up to 10,000, checkpointed, counting {figures.counted:,} events (all of them, checked), after its "
        f"{SETTLE.total_seconds():.0f} s settle time (not waited for here); baseline: the same paged segment reads, "
        f"counting items only. Not moto: it serializes a scanned item in about 5 ms, over an hour for 1,000,000.")
