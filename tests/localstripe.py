"""A localstripe server (infra/local/stripe_server.py: localstripe plus the routes Tally needs) in a
subprocess on a free port, for the tests that deliver invoices to Stripe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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


def start_localstripe(port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "shared")]))
    process = subprocess.Popen([sys.executable, "-m", "infra.local.stripe_server", "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("localstripe did not start within 20 s")


@pytest.fixture(scope="session")
def localstripe():
    port = free_port()
    process = start_localstripe(port)
    try:
        yield LocalStripe(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
