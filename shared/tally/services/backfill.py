"""Backfill jobs: a new metric counts the events ingested before its activation, asynchronously,
a page at a time, from checkpoints (the design and the activation race: tally.billing.backfill).

Creating a metric stores its job, then the metric, activates it, and sends one message per scan
segment, delayed by the settle time; the backfill function (functions/backfill) runs a segment for a few pages per message and
sends the next message itself. Exactly once, whatever is retried or runs twice:
- a page's counter writes carry the page number as their high-water mark on the segment's own
  shard, so a counter that holds the page refuses it again (services/aggregate.apply_update);
- a page is claimed (its end key stored) before its counters are written, so a retry re-reads
  exactly the same range: the events stamped before activation in it were all written before the
  job started, and the new ones it may meet were stamped after activation and are skipped;
- the checkpoint and the job's figures move with one conditional write per page.
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
)
from tally.billing.counters import StreamedEvent, preaggregate
from tally.billing.metrics import BillableMetric
from tally.billing.quarantine import QuarantinedPair
from tally.services.aggregate import apply_update
from tally.services.ports import BackfillQueue, BackfillStore, CounterStore, MetricStore, SegmentScan, StoredEvent

DEFAULT_PAGES_PER_RUN = 5
_FIRST_KIND = ("D", "h")


class RunOutcome(str, Enum):
    MORE = "more"  # pages left: send the segment's next message now
    WAIT = "wait"  # before the job's start_after: send it again, delayed
    DONE = "done"  # the segment is finished (or there is no job)
    CONTENDED = "contended"  # another run holds the segment's next page: it carries on


@dataclass(frozen=True, slots=True)
class SegmentRun:
    outcome: RunOutcome
    pages: int = 0
    delay_seconds: int = 0


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
    ) -> None:
        self._metrics = metrics
        self._events = events
        self._counters = counters
        self._jobs = jobs
        self._queue = queue
        self._clock = clock
        self._settle = settle
        self._segments = segments
        self._page_size = page_size

    def prepare(self, metric_id: str) -> BackfillJob:
        """Store the job of a metric about to be created (before the metric: a metric never exists
        without its job; a job whose metric never came is finished by its first run)."""
        job = new_job(metric_id, self._settle, self._segments)
        self._jobs.create(job)
        return job

    def launch(self, metric: BillableMetric) -> None:
        """Ask for the job's segments, not before its start (activation + settle): returns at once."""
        self._queue.send(metric.id, list(range(self._segments)), _seconds(self._settle))

    def run(self, metric_id: str, segment: int, max_pages: int = DEFAULT_PAGES_PER_RUN) -> SegmentRun:
        """Apply up to `max_pages` pages of one segment, from its checkpoint."""
        job = self._jobs.get(metric_id)
        metric = self._metrics.get(metric_id) if job is not None else None
        if job is None or metric is None or not 0 <= segment < job.segments:
            return SegmentRun(RunOutcome.DONE)
        if metric.activated_at is None:  # its create stopped between storing and activating it
            metric = self._metrics.activate(metric_id, self._clock())
        start_after = job.start_after(metric)
        assert start_after is not None and metric.activated_at is not None
        now = self._clock()
        if now < start_after:
            return SegmentRun(RunOutcome.WAIT, delay_seconds=_seconds(start_after - now))
        window = backfill_window(metric)
        for done in range(max_pages):
            checkpoint = job.checkpoint(segment)
            if checkpoint.done:
                return SegmentRun(RunOutcome.DONE, done)
            if checkpoint.claimed_end is None:
                page = self._events.scan_segment(
                    segment, job.segments, checkpoint.cursor, self._page_size, metric.activated_at
                )
                if not self._jobs.claim(metric_id, segment, checkpoint.pages, page.end):
                    return SegmentRun(RunOutcome.CONTENDED, done)
                checkpoint = checkpoint.claim(page.end)
            else:  # a claimed page not finished: a crash, a retry, or another run on it right now
                page = self._events.scan_segment(
                    segment, job.segments, checkpoint.cursor, self._page_size, metric.activated_at,
                    until=checkpoint.claimed_end,
                )
            assert checkpoint.claimed_end is not None
            counted = self._apply(window, segment, checkpoint.pages + 1, page.items)
            if not self._jobs.finish(
                metric_id, segment, checkpoint.pages, checkpoint.claimed_end, page.scanned, counted, self._clock()
            ):
                return SegmentRun(RunOutcome.CONTENDED, done + 1)
            job = replace(job, checkpoints={**job.checkpoints, segment: checkpoint.finish_page()})
        return SegmentRun(RunOutcome.DONE if job.checkpoint(segment).done else RunOutcome.MORE, max_pages)

    def _apply(self, window: BillableMetric, segment: int, page: int, items: list[StoredEvent]) -> int:
        mark = page_mark(page)
        streamed = [
            StreamedEvent(mark, stored.event, stored.ingested_at)
            for stored in items
            if not stored.is_duplicate and window.counts_ingested_at(stored.ingested_at)
        ]
        refused: list[QuarantinedPair] = []
        updates = preaggregate(streamed, [window], refused)
        if refused:
            self._counters.quarantine(refused)  # idempotent by metric and transaction id
        shard = page_shard(window.id, segment)
        for update in updates.values():
            apply_update(self._counters, shard, update)
        # Each counted event is in exactly one counter of the first kind (a day counter for COUNT
        # and SUM, an hour counter for the others: tally.billing.counters.event_counters).
        return sum(len(u.events) for u in updates.values() if u.key.bucket[0] in _FIRST_KIND)

    def view(self, metric: BillableMetric) -> BackfillView | None:
        job = self._jobs.get(metric.id)
        return None if job is None else _view(job, metric, self._clock())

    def views(self, metrics: list[BillableMetric]) -> dict[str, BackfillView]:
        now = self._clock()
        by_id = {m.id: m for m in metrics}
        return {m: _view(job, by_id[m], now) for m, job in self._jobs.get_many(list(by_id)).items()}

    def resume(self, metric_ids: list[str]) -> int:
        """Ask again for every unfinished segment of these metrics' jobs (after messages were lost,
        say, on a local stack's restart). Harmless when they are running: a second run of a segment
        finds its pages claimed or finished. How many segments were asked for."""
        asked = 0
        for metric_id, job in self._jobs.get_many(metric_ids).items():
            pending = [s for s in range(job.segments) if not job.checkpoint(s).done]
            if pending:
                self._queue.send(metric_id, pending, 0)  # a run before the start asks again, delayed
                asked += len(pending)
        return asked


def _view(job: BackfillJob, metric: BillableMetric, now: datetime) -> BackfillView:
    return BackfillView(job.status(metric, now), job.segments, job.segments_done, job.scanned, job.counted,
                        job.start_after(metric), job.completed_at)


def _seconds(delay: timedelta) -> int:
    return min(900, max(0, math.ceil(delay.total_seconds())))
