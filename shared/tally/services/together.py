"""Reads that do not depend on each other, sent together instead of one after the other.

A draft invoice reads its customer, contracts, grants, stored invoices, catalog and then a
counter range per metric and ingest key: one round trip after another, that is 150 round trips
for a 50-product contract. Sent together, the wait is the longest chain of reads that really
depend on each other (a contract before its rate card, the rate card before the counters).

One pool of READS_IN_FLIGHT threads per process bounds the requests in flight, whatever the
number of reads a request asks for, so one big draft queues its reads instead of opening a
thread (and a connection) per read. A read sent together with others may itself send reads
together (a contract list with its customer, inside the reads of an invoice): those go to a
second pool of the same size, whose threads never wait for another, so no pool can wait on
itself; deeper calls run inline. boto3 clients are thread-safe; resources are not, and none is
used.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

# Threads of each pool. The DynamoDB client keeps a connection for each (adapters/dynamo/client.py):
# a request waiting for a connection would be a round trip on the critical path again.
READS_IN_FLIGHT = 32

POOL_LEVELS = 2
_pools: list[ThreadPoolExecutor] = []
_pools_lock = threading.Lock()
_level = threading.local()  # the pool level of this thread (0: not a pool thread)
_sequential: contextvars.ContextVar[bool] = contextvars.ContextVar("tally_reads_one_at_a_time", default=False)


def _executor(level: int) -> ThreadPoolExecutor:
    if len(_pools) <= level:
        with _pools_lock:
            while len(_pools) <= level:
                below = len(_pools) + 1
                _pools.append(ThreadPoolExecutor(
                    READS_IN_FLIGHT, thread_name_prefix=f"tally-reads-{below}", initializer=_mark, initargs=(below,)
                ))
    return _pools[level]


def _mark(level: int) -> None:
    _level.value = level


def together(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each call's result, in the order of `calls`, the calls made concurrently: in at most
    READS_IN_FLIGHT lanes, call i in lane i mod lanes, each lane's calls one after the other on one
    pool thread. So n calls wait for at most ceil(n / READS_IN_FLIGHT) round trips one after the
    other, however the threads are scheduled (a thread finishing early never takes another lane's
    work: each lane has its own thread, since a request's calls together never outnumber the pool).
    Every call runs to its end; then the first failure, in the order of `calls`, is raised (so
    which error a request answers does not depend on timing)."""
    level = getattr(_level, "value", 0)
    if len(calls) < 2 or _sequential.get() or level >= POOL_LEVELS:
        return [call() for call in calls]
    pool = _executor(level)
    lanes = min(len(calls), READS_IN_FLIGHT)

    def lane(indexes: range) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        for index in indexes:
            try:
                outcomes.append((True, calls[index]()))
            except BaseException as exc:  # noqa: BLE001 - raised by the caller, after every call ended
                outcomes.append((False, exc))
        return outcomes

    # Each lane sees the caller's context (its audit scope, the reading mode), a copy of its own.
    futures: list[Future] = [
        pool.submit(contextvars.copy_context().run, lane, range(first, len(calls), lanes)) for first in range(lanes)
    ]
    results: list[Any] = [None] * len(calls)
    failures: dict[int, BaseException] = {}
    for first, future in enumerate(futures):
        for index, (ok, value) in zip(range(first, len(calls), lanes), future.result()):
            if ok:
                results[index] = value
            else:
                failures[index] = value
    if failures:
        raise failures[min(failures)]
    return results


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Every `together` inside runs its calls one after the other: the sequential reading mode
    the benchmark compares with (and a way to rule concurrency out when diagnosing)."""
    token = _sequential.set(True)
    try:
        yield
    finally:
        _sequential.reset(token)
