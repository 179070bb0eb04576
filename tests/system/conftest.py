"""The whole system on the local stack: synthesized template in moto, real handlers, stream pump."""

from __future__ import annotations

import pytest

API_KEY = "tally_system_tests_key"


@pytest.fixture(scope="session")
def local_stack():
    from infra.local.runtime import LocalStack

    stack = LocalStack(port=0, api_key=API_KEY).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def sdk(local_stack):
    from metronome import Metronome

    # Strict: every response must parse as metronome-sdk's own types, as a strict user's client would.
    with Metronome(
        bearer_token=API_KEY, base_url=local_stack.base_url, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.fixture()
def settle(local_stack):
    """Wait until every stream record so far has reached the counters."""
    return local_stack.pump.drain


@pytest.fixture(scope="session")
def api(local_stack):
    """An httpx client on the local HTTP API, authenticated with the session's key (raw JSON)."""
    import httpx

    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=local_stack.base_url, headers=headers, timeout=600) as client:
        yield client


@pytest.fixture()
def backfilled(local_stack, sdk):
    """Wait until the metrics' backfill jobs have completed, as a client would: reading each
    metric's `backfill_status` through the SDK. The jobs run on the local stack's queue pump after
    their settle time (2 s locally, infra/local/runtime.py LOCAL_FUNCTION_ENV); here the backfill
    queue is also long-polled, so the wait ends as soon as the last page lands."""

    def wait(*metric_ids: str, rounds: int = 120) -> dict:
        for _ in range(rounds):
            metrics = {m: sdk.v1.billable_metrics.retrieve(billable_metric_id=m).data for m in metric_ids}
            if all(getattr(d, "backfill_status", None) == "completed" for d in metrics.values()):
                return metrics
            local_stack.queue_pump.drain_function("Backfill", wait_seconds=1)
        raise AssertionError(f"backfills not completed: {[getattr(d, 'backfill_status', None) for d in metrics.values()]}")

    return wait
