"""Package offsets and alias schedules (tally.billing.packages): pure, table-driven."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.packages import assigned, package_at, shifted

UTC = timezone.utc
JAN31 = datetime(2026, 1, 31, tzinfo=UTC)


@pytest.mark.parametrize(("offset", "expected"), [
    ({"unit": "DAYS", "value": 0}, datetime(2026, 1, 31, tzinfo=UTC)),
    ({"unit": "DAYS", "value": 1}, datetime(2026, 2, 1, tzinfo=UTC)),
    ({"unit": "WEEKS", "value": 2}, datetime(2026, 2, 14, tzinfo=UTC)),
    ({"unit": "MONTHS", "value": 1}, datetime(2026, 2, 28, tzinfo=UTC)),
    ({"unit": "MONTHS", "value": 13}, datetime(2027, 2, 28, tzinfo=UTC)),
    ({"unit": "YEARS", "value": 2}, datetime(2028, 1, 31, tzinfo=UTC)),
], ids=["no offset", "a day", "two weeks", "a month from the 31st ends in February",
        "13 months crosses a year", "two years"])
def test_an_offset_moves_the_contract_start(offset, expected):
    assert shifted(JAN31, offset, "f") == expected


def test_a_leap_day_plus_a_year_is_the_last_of_february():
    assert shifted(datetime(2028, 2, 29, tzinfo=UTC), {"unit": "YEARS", "value": 1}, "f") == datetime(2029, 2, 28, tzinfo=UTC)


def test_an_offset_past_year_9999_names_its_field():
    with pytest.raises(InvalidInput) as refused:
        shifted(datetime(9999, 6, 1, tzinfo=UTC), {"unit": "YEARS", "value": 1}, "duration")
    assert refused.value.field == "duration"


@pytest.mark.parametrize(("window", "expected"), [
    ((None, None), [("B", None, None)]),
    (("2026-06-01T00:00:00Z", None), [("A", None, "2026-06-01T00:00:00Z"), ("B", "2026-06-01T00:00:00Z", None)]),
    (("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
     [("A", None, "2026-03-01T00:00:00Z"), ("B", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
      ("A", "2026-04-01T00:00:00Z", None)]),
], ids=["the whole time takes it all", "from June on", "a window in the middle splits the first"])
def test_a_later_assignment_takes_its_window_from_the_earlier(window, expected):
    entries = assigned(assigned([], "A", None, None), "B", *window)
    assert [(e["package_id"], e["starting_at"], e["ending_before"]) for e in entries] == expected
    assert package_at(entries, datetime(2026, 3, 15, tzinfo=UTC)) == ("B" if window != ("2026-06-01T00:00:00Z", None) else "A")
