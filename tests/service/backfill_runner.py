"""Runs backfill jobs to the end in service tests: the queue's messages, in order, past the settle."""

from __future__ import annotations

from datetime import timedelta

from tally.adapters.memory_backfill import MemoryBackfillQueue
from tally.services.backfill import BackfillService, RunOutcome


def run_backfills(service: BackfillService, queue: MemoryBackfillQueue, clock, max_runs: int = 10_000) -> int:
    """Deliver every message as the backfill function does (sending the next one itself), moving
    `clock` past each delay; how many runs it took."""
    for runs in range(max_runs):
        message = queue.take()
        if message is None:
            if not queue.messages:
                return runs
            wait = min(m.not_before for m in queue.messages) - queue.tick
            queue.tick += wait
            clock.now += timedelta(seconds=wait)
            continue
        if message.segment is None:  # a job's start: forms or joins a scan, sends its segments itself
            service.start(message.metric_id)
            continue
        run = service.run(message.metric_id, message.segment)
        if run.outcome is RunOutcome.MORE:
            queue.send(message.metric_id, [message.segment], 0)
        elif run.outcome is RunOutcome.WAIT:
            queue.send(message.metric_id, [message.segment], run.delay_seconds)
    raise AssertionError("backfill jobs did not finish")
