"""In-memory backfill adapters (service tests, the bench): the same contracts as
adapters/dynamo/backfills.py and the SQS queue."""

from __future__ import annotations

import bisect
import threading
import zlib
from dataclasses import dataclass, replace
from datetime import datetime

from tally.adapters.memory import MemoryEventStore
from tally.billing.backfill import SEGMENT_END, BackfillJob
from tally.services.ports import ScanPage


class MemorySegmentScan:
    """Parallel scan segments over a MemoryEventStore's originals, as DynamoDB's: an item's segment
    follows from a hash of its key, and a segment is read in key order, so a new item can land
    before or after a cursor (duplicate receipts never count, and are left out here)."""

    def __init__(self, events: MemoryEventStore) -> None:
        self._events = events
        self._orders: dict[int, tuple[int, list[list[str]]]] = {}

    def _order(self, segments: int) -> list[list[str]]:
        size = len(self._events.originals)  # originals only grow: the size says whether it changed
        cached = self._orders.get(segments)
        if cached is None or cached[0] != size:
            keyed: list[list[str]] = [[] for _ in range(segments)]
            for transaction_id in list(self._events.originals):
                keyed[zlib.crc32(transaction_id.encode()) % segments].append(transaction_id)
            for keys in keyed:
                keys.sort()
            cached = self._orders[segments] = (size, keyed)
        return cached[1]

    def scan_segment(
        self, segment: int, segments: int, start: str | None, limit: int, ingested_before: datetime, until: str | None = None
    ) -> ScanPage:
        keys = self._order(segments)[segment]
        first = 0 if start is None else bisect.bisect_right(keys, start)
        if until is None:
            chosen = keys[first : first + limit]
            end = chosen[-1] if first + limit < len(keys) else SEGMENT_END
        elif until == SEGMENT_END:
            chosen, end = keys[first:], SEGMENT_END
        else:
            chosen, end = keys[first : bisect.bisect_right(keys, until)], until
        originals = self._events.originals
        if until is None:  # a first read returns only what counts, as DynamoDB's filtered scan
            return ScanPage([originals[k] for k in chosen if originals[k].ingested_at < ingested_before], end, len(chosen))
        return ScanPage([originals[k] for k in chosen], end, len(chosen))


class MemoryBackfillStore:
    def __init__(self) -> None:
        self.jobs: dict[str, BackfillJob] = {}
        self._lock = threading.Lock()
        self.fail = None  # callable(operation) -> None, may raise: tests inject crashes
        self.index_reads = 0  # waiting-index queries (never a scan of the jobs)
        # A lagging index (as gsi1 is eventually consistent): it still lists jobs a scan took.
        self.stale_index = False

    def _check(self, operation: str) -> None:
        if self.fail is not None:
            self.fail(operation)

    def create(self, job: BackfillJob) -> None:
        with self._lock:
            self.jobs.setdefault(job.metric_id, job)

    def get(self, metric_id: str) -> BackfillJob | None:
        return self.jobs.get(metric_id)

    def get_many(self, metric_ids: list[str]) -> dict[str, BackfillJob]:
        return {m: self.jobs[m] for m in metric_ids if m in self.jobs}

    def waiting(self, limit: int) -> list[BackfillJob]:
        self.index_reads += 1
        with self._lock:
            waiting = [j for j in self.jobs.values()
                       if (j.scan is None or self.stale_index) and j.created_at is not None]
        return sorted(waiting, key=lambda j: (j.created_at, j.metric_id))[:limit]

    def form_scan(self, leader: str, members: list[str], starts_at: datetime) -> list[str] | None:
        self._check("form_scan")
        with self._lock:  # all of it at once, as the DynamoDB transaction
            job = self.jobs.get(leader)
            if job is None or job.scan is not None:
                return None
            carried = [leader] + [m for m in members[1:] if m in self.jobs and self.jobs[m].scan is None]
            for member in carried[1:]:
                self.jobs[member] = replace(self.jobs[member], scan=leader)
            self.jobs[leader] = replace(job, scan=leader, members=tuple(carried), starts_at=starts_at,
                                        counted={m: 0 for m in carried})
            return carried

    def drop(self, metric_id: str) -> None:
        with self._lock:
            job = self.jobs.get(metric_id)
            if job is not None and job.scan is None:
                self.jobs[metric_id] = replace(job, created_at=None)  # out of the index

    def claim(self, scan: str, segment: int, pages: int, end: str) -> bool:
        self._check("claim")
        with self._lock:
            job = self.jobs[scan]
            checkpoint = job.checkpoint(segment)
            if checkpoint.pages != pages or checkpoint.claimed_end is not None or checkpoint.done:
                return False
            self.jobs[scan] = replace(job, checkpoints={**job.checkpoints, segment: checkpoint.claim(end)})
            return True

    def finish(self, scan: str, segment: int, pages: int, end: str, scanned: int, counted: dict[str, int],
               at: datetime) -> bool:
        self._check("finish")
        with self._lock:
            job = self.jobs[scan]
            checkpoint = job.checkpoint(segment)
            if checkpoint.pages != pages or checkpoint.claimed_end != end:
                return False
            figures = {m: job.counted.get(m, 0) + counted.get(m, 0) for m in job.members}
            job = replace(job, checkpoints={**job.checkpoints, segment: checkpoint.finish_page()},
                          scanned=job.scanned + scanned, counted=figures)
            if job.completed_at is None and job.segments_done == job.segments:
                job = replace(job, completed_at=at)
            self.jobs[scan] = job
            return True


@dataclass(frozen=True, slots=True)
class QueuedSegment:
    metric_id: str  # the scan (its leader's metric id), or the job to start
    segment: int | None  # None: the job's start message
    not_before: float  # seconds on the queue's own tick


class MemoryBackfillQueue:
    """Messages kept in a list; `take` hands out those whose delay has passed on `tick` seconds."""

    def __init__(self) -> None:
        self.messages: list[QueuedSegment] = []
        self.tick = 0.0

    def send(self, scan: str, segments: list[int], delay_seconds: int) -> None:
        self.messages.extend(QueuedSegment(scan, s, self.tick + delay_seconds) for s in segments)

    def start(self, metric_id: str, delay_seconds: int) -> None:
        self.messages.append(QueuedSegment(metric_id, None, self.tick + delay_seconds))

    def take(self) -> QueuedSegment | None:
        for i, message in enumerate(self.messages):
            if message.not_before <= self.tick:
                return self.messages.pop(i)
        return None
