"""The README's Limits table is the one tally.billing.limits generates."""

from pathlib import Path

from tally.billing import limits
from tally.billing.time import EARLIEST_INSTANT, LATEST_INSTANT

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_the_readme_limits_table_is_the_modules():
    table = limits.limits_table(f"{EARLIEST_INSTANT:%Y-%m-%d} to {LATEST_INSTANT:%Y-%m-%d}")
    assert table in README, "regenerate the README's Limits table with tally.billing.limits.limits_table"


def test_the_table_names_every_bound_once():
    whats = [limit.what for limit in limits.LIMITS]
    assert len(whats) == len(set(whats))
    assert any(str(limits.MAX_GROUP_JSON_BYTES) in l.value.replace(",", "") for l in limits.LIMITS)
