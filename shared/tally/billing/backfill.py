"""A metric's backfill job: which events it counts, when it may read them, and how far it got.

A metric counts the events ingested before its activation instant A through this job, and those
ingested at or after A through the live stream aggregator (BillableMetric.counts_ingested_at).
Each stored event is counted by exactly one of the two, once:

1. Activation comes after visibility. A metric is stored pending (no A: nothing counts it), and A is
   set afterwards by a conditional write, from a clock read once the pending metric could be read
   back (by its create, or by the aggregator or the job on meeting it pending; the first write
   wins). So every event stamped at or after A was written after the metric was readable, and the
   aggregator, which reads metrics consistently for each batch, sees the metric active when it
   meets the event. (A clock read before the store had the metric would leave a window where an
   event stamped after A is aggregated before the metric exists: counted by nobody.)
2. The job reads after the ingests in flight have landed (the race noted in issue 2). An ingest
   stamps its events with its start instant, then writes them. An event stamped s < A whose write
   lands after the job has read its part of the table would be counted by nobody: the live path
   leaves it to the job, and the job never saw it. So the job reads nothing before A + settle,
   where `settle` is longer than any ingest can take between stamp and write (the ingest
   function's timeout plus a margin, set in infra). By then every event stamped before A is in the
   table, or never will be.

Shared scans: a job does not scan the events table on its own. When its first message comes (after
its settle time), it forms a scan led by its own metric with every job then waiting for one (those
whose metric is activated, MAX_BACKFILL_SCAN_METRICS at most), and that scan's pages are applied to
every metric it carries: k metrics created together cost one read of the table, not k. The race
argument holds for each of them because a scan reads nothing before `starts_at`, the latest of its
metrics' activation + settle; and a page read again after a crash holds nothing new that any of
them counts (a new item there was written after `starts_at`, so stamped after every activation).
Each metric keeps its own counter shards per segment, and belongs to one scan only (joining is one
conditional write per job, `scan` not yet set), so a page's number is its mark for every metric
that page is applied to: exactly once per metric, as for one.

Pages and checkpoints: the events table is read as `segments` parallel scan segments, a page at a
time. Each segment keeps one checkpoint: how many pages it has finished, the cursor after the last
one, and, while a page is being applied, the key the page ends at. A page is first claimed (its end
key written), then its counters are written with the page number as their high-water mark on the
segment's own shard (a counter refuses a page it already holds), then the checkpoint moves past it.
A crash anywhere in between leaves the claim; a retry re-reads exactly the claimed range and applies
what the counters do not hold yet. A scan's checkpoints live on its leader's job.

Stuck jobs: a create that dies after storing the job (and maybe the metric) but before sending its
first message leaves the job waiting with nothing to wake it. Every job waiting for a scan is kept
in an index (by its creation instant), and a scheduled sweep re-sends the first message of those
created more than `stuck_after` ago (longer than any create takes, plus the settle time), activating
a metric left pending first. Pure: no clock, no store.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from tally.billing.counters import sequence_key
from tally.billing.metrics import BillableMetric
from tally.billing.time import UTC

# The end of a segment, where a page's end key would be.
SEGMENT_END = "END"
DEFAULT_SEGMENTS = 8
# Items read per page: a page's events are pre-aggregated into one conditional write per counter,
# so the larger the page, the fewer writes (about 3 MB of events in the function's memory; a page
# is several Scan calls of at most 1 MB each).
DEFAULT_PAGE_SIZE = 10_000
MAX_SEGMENTS = 64
MAX_SETTLE = timedelta(minutes=15)  # SQS's longest message delay


class BackfillStatus(str, Enum):
    WAITING = "waiting"  # before start_after: ingests stamped before activation may still be writing
    RUNNING = "running"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class SegmentCheckpoint:
    pages: int = 0  # pages finished
    cursor: str | None = None  # where the next page starts (None: the segment's start)
    claimed_end: str | None = None  # the end key of page `pages + 1` while it is being applied
    done: bool = False

    def claim(self, end: str) -> "SegmentCheckpoint":
        return replace(self, claimed_end=end)

    def finish_page(self) -> "SegmentCheckpoint":
        assert self.claimed_end is not None
        end = self.claimed_end
        return SegmentCheckpoint(
            self.pages + 1, None if end == SEGMENT_END else end, None, end == SEGMENT_END
        )


@dataclass(frozen=True, slots=True)
class BackfillJob:
    """Stored before its metric (a metric never exists without its job), waiting for a scan until
    one takes it (`scan`: the leading job's metric id, its own if it leads). A leading job also holds
    its scan: the metrics it carries, when it may first read, its checkpoints and figures."""

    metric_id: str
    settle: timedelta
    segments: int
    created_at: datetime | None = None  # when its create stored it (None: a job from before the index)
    scan: str | None = None
    members: tuple[str, ...] = ()  # a leader's: the metrics its scan counts for, itself first
    starts_at: datetime | None = None  # a leader's: its members' latest activation + settle
    checkpoints: dict[int, SegmentCheckpoint] = field(default_factory=dict)
    scanned: int = 0  # events read (every stored item the pages held), once for all members
    counted: dict[str, int] = field(default_factory=dict)  # events counted, per member metric
    completed_at: datetime | None = None

    def checkpoint(self, segment: int) -> SegmentCheckpoint:
        return self.checkpoints.get(segment, SegmentCheckpoint())

    @property
    def leads(self) -> bool:
        return self.scan == self.metric_id

    @property
    def segments_done(self) -> int:
        return sum(1 for s in range(self.segments) if self.checkpoint(s).done)

    @property
    def completed(self) -> bool:
        return self.segments_done == self.segments

    def start_after(self, metric: BillableMetric) -> datetime | None:
        """The earliest its pages may be read: its scan's start, or, waiting, activation + settle."""
        if self.starts_at is not None:
            return self.starts_at
        return None if metric.activated_at is None else metric.activated_at + self.settle

    def status(self, metric: BillableMetric, now: datetime) -> BackfillStatus:
        """Of a leading job (or one waiting for a scan)."""
        if self.scan is not None and self.completed:
            return BackfillStatus.COMPLETED
        start_after = self.start_after(metric)
        if self.scan is None or start_after is None or now < start_after:
            return BackfillStatus.WAITING
        return BackfillStatus.RUNNING

    def stuck(self, now: datetime, stuck_after: timedelta) -> bool:
        """Waiting for a scan longer than a create and its settle time can take: its first message
        was never sent (or was lost)."""
        return self.scan is None and self.created_at is not None and now >= self.created_at + stuck_after


def new_job(metric_id: str, settle: timedelta, segments: int, created_at: datetime | None = None) -> BackfillJob:
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ValueError(f"segments must be between 1 and {MAX_SEGMENTS}")
    if not timedelta(0) <= settle <= MAX_SETTLE:
        raise ValueError(f"settle must be between 0 and {MAX_SETTLE}")
    return BackfillJob(metric_id, settle, segments, created_at)


def scan_members(leader: BillableMetric, waiting: list[BillableMetric], most: int) -> list[BillableMetric]:
    """The metrics a scan led by `leader` carries: the leader first, then the activated ones among
    `waiting` (oldest first), `most` in all. A pending one waits: its activation instant, and so
    when its scan may start, is not known yet."""
    chosen = [leader]
    for metric in waiting:
        if len(chosen) >= most:
            break
        if metric.id != leader.id and metric.activated_at is not None:
            chosen.append(metric)
    return chosen


def scan_start(members: list[BillableMetric], settle: timedelta) -> datetime:
    """A scan reads nothing before every member's activation + settle (point 2, for each of them)."""
    instants = [m.activated_at for m in members]
    assert all(at is not None for at in instants)
    return max(instants) + settle  # type: ignore[type-var, operator]


def backfill_window(metric: BillableMetric) -> BillableMetric:
    """The metric as the backfill counts with it: events ingested before its activation only."""
    assert metric.activated_at is not None
    return replace(metric, activated_at=datetime.min.replace(tzinfo=UTC), archived_at=metric.activated_at)


def page_shard(metric_id: str, segment: int) -> str:
    """The counter shard a segment's pages write under: its own high-water mark per counter."""
    return f"backfill-{metric_id}-{segment}"


def page_mark(page: int) -> str:
    """The high-water mark of page `page` (1-based) of a segment: pages apply in order."""
    return sequence_key(page)
