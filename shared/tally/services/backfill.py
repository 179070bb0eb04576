"""Backfill jobs: a new metric counts the events ingested before its activation, asynchronously,
a page at a time, from checkpoints, in scans shared by the jobs waiting together (the design and
the activation race: tally.billing.backfill).

Creating a metric stores its job (waiting for a scan, in the waiting index), then the metric,
activates it, and sends the job's start message, delayed by the settle time. The start forms a scan
led by that job with every job then waiting (`start`), and sends one message per scan segment; the
backfill function (functions/backfill) runs a segment for a few pages per message and sends the
next message itself. A scheduled sweep (`sweep`) re-sends the start of a job whose create died
before sending it. Exactly once, whatever is retried or runs twice:
- a page's counter writes carry the page number as their high-water mark on the segment's own
  shard of each metric, so a counter that holds the page refuses it again
  (services/aggregate.apply_update); a metric is carried by one scan only;
- a page is claimed (its end key stored) before its counters are written, so a retry re-reads
  exactly the same range: the events stamped before any member's activation in it were all written
  before the scan started, and the new ones it may meet were stamped after and are skipped;
- the checkpoint and the scan's figures move with one conditional write per page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Callable

from tally.billing.backfill import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_SEGMENTS,
    BackfillJob,
    BackfillStatus,
    backfill_window,
    new_job,
    page_mark,
    page_shard,
    scan_members,
    scan_start,
)
from tally.billing.counters import StreamedEvent, preaggregate
from tally.billing.limits import BACKFILL_RUN_EVENT_METRICS, MAX_BACKFILL_SCAN_METRICS
from tally.billing.metrics import BillableMetric
from tally.billing.quarantine import QuarantinedPair
from tally.services.aggregate import apply_update
from tally.services.ports import BackfillQueue, BackfillStore, CounterStore, MetricStore, SegmentScan, StoredEvent

# Pages a run applies at most; fewer when its events x metrics would pass what a run may apply
# (limits.BACKFILL_RUN_EVENT_METRICS: one 10,000-event page for one metric on AWS).
DEFAULT_PAGES_PER_RUN = 5
# Waiting jobs one sweep reads from the index (the oldest first; more are met by the next sweep).
SWEEP_BATCH = 100
_FIRST_KIND = ("D", "h")


class RunOutcome(str, Enum):
    MORE = "more"  # pages left: send the segment's next message now
    WAIT = "wait"  # before the scan's start: send it again, delayed
    DONE = "done"  # the segment is finished (or there is no scan)
    CONTENDED = "contended"  # another run holds the segment's next page: it carries on


@dataclass(frozen=True, slots=True)
class SegmentRun:
    outcome: RunOutcome
    pages: int = 0
    delay_seconds: int = 0


class StartOutcome(str, Enum):
    FORMED = "formed"  # the job leads a new scan: its segments were asked for
    RESENT = "resent"  # the job led a scan already (a retried start): its unfinished segments asked for again
    JOINED = "joined"  # another job's scan carries it: nothing to do
    DROPPED = "dropped"  # no metric (its create died before storing it) or no job


@dataclass(frozen=True, slots=True)
class ScanStart:
    outcome: StartOutcome
    scan: str | None = None
    members: int = 0


@dataclass(frozen=True, slots=True)
class BackfillView:
    """What a metric's reads show of its backfill."""

    status: BackfillStatus
    segments: int
    segments_done: int
    events_scanned: int
    events_counted: int
    start_after: datetime | None  # None while the metric is not yet activated
    completed_at: datetime | None


class BackfillService:
    def __init__(
        self,
        metrics: MetricStore,
        events: SegmentScan,
        counters: CounterStore,
        jobs: BackfillStore,
        queue: BackfillQueue,
        clock: Callable[[], datetime],
        settle: timedelta,
        segments: int = DEFAULT_SEGMENTS,
        page_size: int = DEFAULT_PAGE_SIZE,
        stuck_after: timedelta | None = None,
        scan_metrics: int = MAX_BACKFILL_SCAN_METRICS,
        run_event_metrics: int = BACKFILL_RUN_EVENT_METRICS,
        unsuffixed_until: int | None = None,
    ) -> None:
        """`stuck_after`: how long a job may wait for a scan before the sweep starts it (longer than
        a create request can take plus the settle time; default: twice the settle time plus a minute).
        `scan_metrics`: the most metrics one scan carries (1: every job scans alone, the baseline).
        `run_event_metrics`: events x metrics one run applies at most (a page is sized from it).
        `unsuffixed_until` (epoch seconds, services/aggregate.unsuffixed_writes_until): a metric
        activated at or before it may have had pages applied by the version that wrote unsuffixed
        counter items, and a retry of such a page must honour the mark it left there (the floor);
        None: no earlier version wrote any."""
        self._metrics = metrics
        self._events = events
        self._counters = counters
        self._jobs = jobs
        self._queue = queue
        self._clock = clock
        self._settle = settle
        self._segments = segments
        self._page_size = page_size
        self._stuck_after = stuck_after if stuck_after is not None else 2 * settle + timedelta(minutes=1)
        self._scan_metrics = max(1, min(scan_metrics, MAX_BACKFILL_SCAN_METRICS))
        self._run_event_metrics = run_event_metrics
        self._unsuffixed_until = unsuffixed_until

    def prepare(self, metric_id: str) -> BackfillJob:
        """Store the job of a metric about to be created (before the metric: a metric never exists
        without its job), waiting for a scan in the index the sweep reads."""
        job = new_job(metric_id, self._settle, self._segments, self._clock())
        self._jobs.create(job)
        return job

    def launch(self, metric: BillableMetric) -> None:
        """Ask for the job's start, not before activation + settle: returns at once."""
        self._queue.start(metric.id, _seconds(self._settle))

    def start(self, metric_id: str) -> ScanStart:
        """The job's start message: form a scan led by this job with the jobs waiting now (or find
        that another scan carries it), and ask for the scan's segments, delayed to its start."""
        job = self._jobs.get(metric_id)
        if job is None:
            return ScanStart(StartOutcome.DROPPED)
        if job.scan is not None:
            return self._resend(job)
        metric = self._metrics.get(metric_id)
        if metric is None:  # its create died before storing it (a start comes after the store)
            self._jobs.drop(metric_id)
            return ScanStart(StartOutcome.DROPPED)
        if metric.activated_at is None:  # its create stopped between storing and activating it
            metric = self._metrics.activate(metric_id, self._clock())
        # A few times the scan's bound: some listed may be pending, or taken (the index may lag).
        candidates = self._jobs.waiting(min(SWEEP_BATCH, 4 * self._scan_metrics))
        waiting = [j.metric_id for j in candidates if j.metric_id != metric_id]
        found = self._metrics_of(waiting)
        members = scan_members(metric, [found[m] for m in waiting if m in found], self._scan_metrics)
        starts_at = scan_start(members, self._settle)
        carried = self._jobs.form_scan(metric_id, [m.id for m in members], starts_at)
        if carried is None:  # another start of this job, or a scan that took it, got there first
            return self._resend(self._jobs.get(metric_id))
        self._queue.send(metric_id, list(range(job.segments)), _seconds(starts_at - self._clock()))
        return ScanStart(StartOutcome.FORMED, metric_id, len(carried))

    def _resend(self, job: BackfillJob | None) -> ScanStart:
        if job is None or job.scan is None:
            return ScanStart(StartOutcome.DROPPED)
        if not job.leads:
            return ScanStart(StartOutcome.JOINED, job.scan)
        pending = [s for s in range(job.segments) if not job.checkpoint(s).done]
        if pending:  # a retried start: its first attempt may have died before sending them
            starts_at = job.starts_at or self._clock()
            self._queue.send(job.metric_id, pending, _seconds(starts_at - self._clock()))
        return ScanStart(StartOutcome.RESENT, job.metric_id, len(job.members))

    def _metrics_of(self, metric_ids: list[str]) -> dict[str, BillableMetric]:
        found = {}
        for metric_id in metric_ids:
            metric = self._metrics.get(metric_id)
            if metric is not None:
                found[metric_id] = metric
        return found

    def run(self, scan: str, segment: int, max_pages: int = DEFAULT_PAGES_PER_RUN) -> SegmentRun:
        """Apply up to `max_pages` pages (each to every metric of the scan) of one segment of the scan
        led by the job of `scan`, from its checkpoint: at least one, and no more events x metrics
        than a run may apply, pages being k times smaller for k metrics."""
        job = self._jobs.get(scan)
        if job is None or not job.leads or not 0 <= segment < job.segments:
            return SegmentRun(RunOutcome.DONE)
        found = self._metrics_of(list(job.members))
        metrics = [found[m] for m in job.members if m in found and found[m].activated_at is not None]
        starts_at = job.starts_at
        if starts_at is None:  # a job stored before shared scans: it scans alone, from activation + settle
            starts_at = job.start_after(found[scan]) if scan in found else None
            if starts_at is None:
                return SegmentRun(RunOutcome.DONE)
        now = self._clock()
        if now < starts_at:
            return SegmentRun(RunOutcome.WAIT, delay_seconds=_seconds(starts_at - now))
        windows = [backfill_window(m) for m in metrics]
        latest = max((m.activated_at for m in metrics), default=starts_at)
        carried = max(1, len(windows))
        page_size = max(1, min(self._page_size, self._run_event_metrics // carried))
        pages = max(1, min(max_pages, self._run_event_metrics // (page_size * carried)))
        for done in range(pages):
            checkpoint = job.checkpoint(segment)
            if checkpoint.done:
                return SegmentRun(RunOutcome.DONE, done)
            if checkpoint.claimed_end is None:
                page = self._events.scan_segment(segment, job.segments, checkpoint.cursor, page_size, latest)
                if not self._jobs.claim(scan, segment, checkpoint.pages, page.end):
                    return SegmentRun(RunOutcome.CONTENDED, done)
                checkpoint = checkpoint.claim(page.end)
            else:  # a claimed page not finished: a crash, a retry, or another run on it right now
                page = self._events.scan_segment(
                    segment, job.segments, checkpoint.cursor, page_size, latest, until=checkpoint.claimed_end
                )
            assert checkpoint.claimed_end is not None
            counted = self._apply(windows, segment, checkpoint.pages + 1, page.items)
            if not self._jobs.finish(
                scan, segment, checkpoint.pages, checkpoint.claimed_end, page.scanned, counted, self._clock()
            ):
                return SegmentRun(RunOutcome.CONTENDED, done + 1)
            job = replace(job, checkpoints={**job.checkpoints, segment: checkpoint.finish_page()})
        return SegmentRun(RunOutcome.DONE if job.checkpoint(segment).done else RunOutcome.MORE, pages)

    def _apply(self, windows: list[BillableMetric], segment: int, page: int, items: list[StoredEvent]) -> dict[str, int]:
        """One page, for every metric of the scan: one pre-aggregation, then each counter's update
        under its own metric's shard of the segment. Events counted, per metric."""
        mark = page_mark(page)
        streamed = [StreamedEvent(mark, stored.event, stored.ingested_at) for stored in items if not stored.is_duplicate]
        refused: list[QuarantinedPair] = []
        updates = preaggregate(streamed, windows, refused)  # each window keeps what it counts
        if refused:
            self._counters.quarantine(refused)  # idempotent by metric and transaction id
        counted = {w.id: 0 for w in windows}
        floors = {w.id: self._floor_until(w) for w in windows}
        for update in updates.values():
            metric_id = update.key.metric_id
            apply_update(self._counters, page_shard(metric_id, segment), update, unsuffixed_until=floors[metric_id])
            # Each counted event is in exactly one counter of the first kind (a day counter for COUNT
            # and SUM, an hour counter for the others: tally.billing.counters.event_counters).
            if update.key.bucket[0] in _FIRST_KIND:
                counted[update.key.metric_id] += len(update.events)
        return counted

    def _floor_until(self, metric: BillableMetric) -> int | None:
        # Its pages' events are all older than its activation, so the record-time test of
        # apply_update would hold for every page of every job: only a job that an earlier version
        # may have run (activated before the cut-over) needs the floor.
        cut = self._unsuffixed_until
        activated = metric.activated_at
        if cut is None or (activated is not None and activated.timestamp() > cut):
            return None
        return cut

    def sweep(self) -> int:
        """The scheduled sweep: start every job waiting for a scan past `stuck_after` (its create died
        before sending its start, or the start was lost), activating a metric left pending first.
        Harmless for a job whose start is on its way: a second start finds it carried. How many."""
        now = self._clock()
        started = 0
        for job in self._jobs.waiting(SWEEP_BATCH):
            if not job.stuck(now, self._stuck_after):
                continue
            metric = self._metrics.get(job.metric_id)
            if metric is None:  # past any create's duration: it died before storing the metric
                self._jobs.drop(job.metric_id)
                continue
            if metric.activated_at is None:
                metric = self._metrics.activate(job.metric_id, self._clock())
            assert metric.activated_at is not None
            self._queue.start(job.metric_id, _seconds(metric.activated_at + self._settle - now))
            started += 1
        return started

    def view(self, metric: BillableMetric) -> BackfillView | None:
        return self.views([metric]).get(metric.id)

    def views(self, metrics: list[BillableMetric]) -> dict[str, BackfillView]:
        now = self._clock()
        by_id = {m.id: m for m in metrics}
        jobs = self._jobs.get_many(list(by_id))
        scans = {m: j for m, j in jobs.items() if j.leads}
        leaders = sorted({j.scan for j in jobs.values() if j.scan is not None and j.scan not in scans})
        if leaders:
            scans.update(self._jobs.get_many(leaders))
        return {m: _view(job, scans.get(job.scan or ""), by_id[m], now) for m, job in jobs.items()}

    def resume(self, metric_ids: list[str]) -> int:
        """Ask again for these metrics' jobs (after messages were lost, say, on a local stack's
        restart): the start of each job waiting for a scan, every unfinished segment of each scan
        led by one. Harmless when they are running: a second start finds the job carried, a second
        run of a segment finds its pages claimed or finished. How many messages were sent."""
        asked = 0
        for metric_id, job in self._jobs.get_many(metric_ids).items():
            if job.scan is None:
                self._queue.start(metric_id, 0)  # a run before the start asks again, delayed
                asked += 1
            elif job.leads:
                pending = [s for s in range(job.segments) if not job.checkpoint(s).done]
                if pending:
                    self._queue.send(metric_id, pending, 0)
                    asked += len(pending)
        return asked


def _view(job: BackfillJob, scan: BackfillJob | None, metric: BillableMetric, now: datetime) -> BackfillView:
    if scan is None:  # waiting for a scan (or its scan's item unreadable for a moment)
        return BackfillView(BackfillStatus.WAITING, job.segments, 0, 0, 0, job.start_after(metric), None)
    return BackfillView(scan.status(metric, now), scan.segments, scan.segments_done, scan.scanned,
                        scan.counted.get(metric.id, 0), scan.start_after(metric), scan.completed_at)


def _seconds(delay: timedelta) -> int:
    return min(900, max(0, math.ceil(delay.total_seconds())))
