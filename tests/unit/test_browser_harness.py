"""The Chromium harness finds Debian's browser, and a page test without it skips (never passes)."""

import pytest

from tests import browser


def test_without_a_browser_a_page_test_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setenv("TALLY_CHROMIUM", "/nonexistent/chromium")
    assert browser.chromium_path() is None
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        browser.chromium.__wrapped__()
