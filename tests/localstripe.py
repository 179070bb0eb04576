"""A localstripe server (infra/local/stripe_server.py: localstripe plus the routes Tally needs) in a
subprocess on a free port, for the tests that deliver invoices to Stripe."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request

import pytest

from infra.local.stripe_process import start_subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripe:
    def __init__(self, url: str) -> None:
        self.url = url

    def fail_next(self, count: int, status: int = 500, when: str = "before") -> None:
        """The next `count` Stripe requests answer `status`: refused ("before"), or carried out
        with the answer lost ("after")."""
        request = urllib.request.Request(f"{self.url}/_config/tally/failures", method="POST",
                                         data=json.dumps({"count": count, "status": status, "when": when}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()


@pytest.fixture(scope="session")
def localstripe():
    port = free_port()
    process = start_subprocess("127.0.0.1", port)
    try:
        yield LocalStripe(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
