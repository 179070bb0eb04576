"""The README's Limits table states the bounds tally.billing.limits enforces."""

import re
from pathlib import Path

from tally.billing import limits
from tally.billing.time import EARLIEST_INSTANT, LATEST_INSTANT

README = (Path(__file__).parents[2] / "README.md").read_text()


def row(title: str) -> str:
    match = re.search(r"^\| " + re.escape(title) + r" \| ([^|]+) \|", README, re.M)
    assert match, f"README Limits table has no row {title!r}"
    return match.group(1).strip()


def test_the_readme_limits_table_matches_the_module():
    assert row("significant digits of any number") == str(limits.MAX_SIGNIFICANT_DIGITS)
    assert row("JSON nesting depth of a body") == str(limits.MAX_NESTING_DEPTH)
    assert row("ids named in one `/v1/usage` request") == str(limits.MAX_IDS_PER_REQUEST)
    assert row("instants (dates of contracts, schedules, queries)") == (
        f"{EARLIEST_INSTANT:%Y-%m-%d} to {LATEST_INSTANT:%Y-%m-%d}"
    )
