"""Independent reads sent together (services/together.py): results in order, failures raised
whatever the timing, a bounded number in flight, nesting that cannot deadlock, and a sequential
mode that reads one after another on the caller's thread."""

from __future__ import annotations

import threading

import pytest

from tally.services.together import POOL_LEVELS, READS_IN_FLIGHT, one_at_a_time, together


def test_results_come_in_the_order_of_the_calls():
    assert together([lambda n=n: n * n for n in range(100)]) == [n * n for n in range(100)]


def test_every_call_ends_before_the_first_failure_in_call_order_is_raised():
    ran = []

    def fails(name: str):
        def call():
            ran.append(name)
            raise LookupError(name)
        return call

    with pytest.raises(LookupError, match="first"):
        together([lambda: ran.append("ok"), fails("first"), fails("second"), lambda: ran.append("last")])
    assert sorted(ran) == ["first", "last", "ok", "second"]


def test_at_most_reads_in_flight_calls_run_at_once():
    lock, all_in = threading.Lock(), threading.Event()
    state = {"active": 0, "most": 0}

    def call():
        with lock:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
            if state["active"] == READS_IN_FLIGHT:
                all_in.set()
        all_in.wait(30)  # released once the pool is full: never more than its threads at once
        with lock:
            state["active"] -= 1

    together([call] * (3 * READS_IN_FLIGHT))
    assert state["most"] == READS_IN_FLIGHT


def test_calls_inside_calls_never_wait_on_a_full_pool():
    # Every level full, and deeper than the pools: the deepest calls run inline.
    def level(depth: int):
        if depth > POOL_LEVELS:
            return lambda: threading.current_thread().name
        return lambda: together([level(depth + 1)] * (READS_IN_FLIGHT + 1))

    names = [n for first in together([level(1)] * (READS_IN_FLIGHT + 1)) for second in first for n in second]
    assert len(names) == (READS_IN_FLIGHT + 1) ** 3
    assert all(n.startswith(f"tally-reads-{POOL_LEVELS}_") for n in names)


def test_the_sequential_mode_reads_one_after_another_on_the_callers_thread():
    with one_at_a_time():
        names = together([lambda: threading.current_thread().name] * 5)
    assert names == [threading.current_thread().name] * 5


def test_calls_go_in_lanes_of_which_each_runs_on_one_thread_in_order():
    # 70 calls: 32 lanes of 2 or 3, so the reads of a lane wait for at most 3 round trips in turn.
    lock, ran = threading.Lock(), []

    def call(index: int):
        def run():
            with lock:
                ran.append((index, threading.get_ident()))
            return index
        return run

    assert together([call(i) for i in range(70)]) == list(range(70))
    for lane in range(READS_IN_FLIGHT):
        mine = [(index, thread) for index, thread in ran if index % READS_IN_FLIGHT == lane]
        assert [index for index, _ in mine] == list(range(lane, 70, READS_IN_FLIGHT))
        assert len({thread for _, thread in mine}) == 1
