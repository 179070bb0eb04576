"""The hot-key simulation (infra/bench/hot_keys.py) cuts a shard's records as Lambda's event source
mapping does: up to BatchSize records, or what arrived within the batching window, one batch in
flight at a time."""

from infra.bench.hot_keys import BATCH_SIZE, BATCHING_WINDOW_S, INVOKE_S, _batches


def test_a_busy_shard_fills_batches_to_the_batch_size():
    arrivals = [(n / 1_000, n) for n in range(1_000)]  # 1,000 records/s on one shard
    batches = _batches(arrivals)
    assert [len(records) for _, records in batches] == [BATCH_SIZE] * 10
    assert [r for _, records in batches for r in records] == list(range(1_000))  # in order, each once


def test_a_quiet_shard_waits_for_the_window_and_one_batch_is_in_flight_at_a_time():
    arrivals = [(n * BATCHING_WINDOW_S / 10, n) for n in range(30)]  # 10 records a window
    batches = _batches(arrivals)
    assert len(batches[0][1]) == 11  # records 0 .. 10 (at the window's end): the first window
    assert batches[0][0] == BATCHING_WINDOW_S + INVOKE_S
    assert all(later > earlier for (earlier, _), (later, _) in zip(batches, batches[1:]))
    assert sum(len(records) for _, records in batches) == 30
