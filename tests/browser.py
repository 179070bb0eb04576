"""Headless Chromium from Debian's `chromium` package, driven directly (Playwright's own browser
download cannot work here). The pages under test need no JavaScript, so the DOM Chromium has
after loading (`--dump-dom`) and a screenshot are all a test needs.

A test that needs the browser takes the `chromium` fixture: where the package is missing it is
skipped with that reason, never passed silently. `.ci/run` installs the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).parents[1] / ".build" / "screenshots"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
_TIMEOUT_S = 60


def chromium_path() -> str | None:
    explicit = os.environ.get("TALLY_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Chromium:
    binary: str

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        # A throwaway profile per call: no state (cookies, cache) carries from one page to the next.
        with tempfile.TemporaryDirectory(prefix="tally-chromium-") as profile:
            command = [
                self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--hide-scrollbars", f"--user-data-dir={profile}", *args,
            ]
            return subprocess.run(command, capture_output=True, timeout=_TIMEOUT_S, check=False)

    def dom(self, url: str) -> str:
        """The page's DOM, serialized after the load event."""
        done = self._run("--dump-dom", url)
        if done.returncode != 0 or not done.stdout:
            raise AssertionError(f"chromium could not load {url}: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode("utf-8")

    def screenshot(self, url: str, name: str, *, width: int = 1280, height: int = 1600) -> Path:
        """A PNG of the page under .build/screenshots/<name>.png, kept for people to look at."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        done = self._run(f"--screenshot={target}", f"--window-size={width},{height}", url)
        if done.returncode != 0 or not target.exists() or target.stat().st_size == 0:
            raise AssertionError(f"chromium took no screenshot of {url}: {done.stderr.decode(errors='replace')[-2000:]}")
        return target

    def dom_and_screenshot(self, url: str, name: str, *, width: int = 1280, height: int = 1600) -> str:
        """`dom(url)` and `screenshot(url, name)` from one browser start (each start costs ~1-2 s)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        done = self._run("--dump-dom", f"--screenshot={target}", f"--window-size={width},{height}", url)
        if done.returncode != 0 or not done.stdout or not target.exists() or target.stat().st_size == 0:
            raise AssertionError(f"chromium could not load {url}: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode("utf-8")


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    binary = chromium_path()
    if binary is None:
        pytest.skip("headless Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    return Chromium(binary)
