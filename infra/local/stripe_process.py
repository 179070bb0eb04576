"""Start infra/local/stripe_server.py (localstripe extended) in a child process: the tests' fixture
and `tally local up --stripe`. Kept apart from the server so that starting it imports neither
localstripe nor aiohttp."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start_subprocess(host: str, port: int, timeout: float = 20.0) -> subprocess.Popen:
    """Run this server in a child process and return once it accepts connections (tests' fixture,
    `tally local up --stripe`). The caller terminates it."""
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(repo / "shared"), os.environ.get("PYTHONPATH", "")]))
    # Its log goes to a file: a pipe nobody reads would stall the server once full.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-W", "ignore::DeprecationWarning", "-m", "infra.local.stripe_server",
                                "--host", host, "--port", str(port)],
                               cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"localstripe exited: {log.read().decode(errors='replace')[-2000:]}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"localstripe did not start within {timeout:.0f} s")
