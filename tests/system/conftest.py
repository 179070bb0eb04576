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
