"""Lifecycle notifications, pure rules: offsets, the occurrences a contract has, delivery windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.notifications import (
    CONTRACT_END,
    CONTRACT_START,
    contract_occurrences,
    delivery_id,
    Occurrence,
    event_window,
    late_for,
    may_be_late,
    notification_message,
    parse_offset,
    window_days,
)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        pytest.param("-P3D", timedelta(days=-3), id="three days before"),
        pytest.param("P1D", timedelta(days=1), id="a day after"),
        pytest.param("PT0S", timedelta(0), id="at the event, in seconds"),
        pytest.param("P0D", timedelta(0), id="at the event, in days"),
        pytest.param("-PT2H", timedelta(hours=-2), id="two hours before"),
        pytest.param("P1DT12H30M", timedelta(days=1, hours=12, minutes=30), id="days and a time"),
        pytest.param("+P2W", timedelta(weeks=2), id="weeks with an explicit sign"),
        pytest.param("P366D", timedelta(days=366), id="the longest offset"),
    ],
)
def test_an_iso_8601_offset_is_a_signed_duration(text, offset):
    assert parse_offset(text) == offset


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        pytest.param("3 days", "ISO-8601 duration", id="not a duration"),
        pytest.param("P", "ISO-8601 duration", id="no component"),
        pytest.param("PT", "ISO-8601 duration", id="an empty time part"),
        pytest.param("P1DT", "ISO-8601 duration", id="a dangling T"),
        pytest.param("-P1M", "months and years", id="months have no fixed length"),
        pytest.param("P1Y", "months and years", id="nor do years"),
        pytest.param("P367D", "at most 366 days", id="past the bound"),
        pytest.param("-PT8785H", "at most 366 days", id="past the bound in hours"),
        pytest.param("", "ISO-8601 duration", id="empty"),
    ],
)
def test_a_bad_offset_is_refused_naming_policy_offset(text, rule):
    with pytest.raises(InvalidInput) as caught:
        parse_offset(text)
    assert caught.value.field == "policy.offset"
    assert rule in caught.value.rule


def _contract(**changes) -> dict:
    return {
        "id": "c1",
        "customer_id": "cust",
        "starting_at": "2026-01-01T00:00:00Z",
        "ending_before": "2026-07-01T00:00:00Z",
        "commits": [
            {
                "id": "commit1",
                "access_schedule": [
                    {"id": "s1", "amount": 100, "starting_at": "2026-01-01T00:00:00Z", "ending_before": "2026-04-01T00:00:00Z"},
                    {"id": "s2", "amount": 100, "starting_at": "2026-04-01T00:00:00Z", "ending_before": "2026-07-01T00:00:00Z"},
                ],
            }
        ],
        "credits": [
            {
                "id": "credit1",
                "access_schedule": [
                    {"id": "s3", "amount": 5, "starting_at": "2026-02-01T00:00:00Z", "ending_before": "2026-03-01T00:00:00Z"}
                ],
            }
        ],
    } | changes


def test_a_contract_has_its_start_end_and_each_grant_segments_edges():
    found = {(o.type, o.instant.isoformat(), o.subject) for o in contract_occurrences(_contract())}
    assert found == {
        ("contract.start", "2026-01-01T00:00:00+00:00", "c1"),
        ("contract.end", "2026-07-01T00:00:00+00:00", "c1"),
        ("commit.segment.start", "2026-01-01T00:00:00+00:00", "commit1/s1"),
        ("commit.segment.end", "2026-04-01T00:00:00+00:00", "commit1/s1"),
        ("commit.segment.start", "2026-04-01T00:00:00+00:00", "commit1/s2"),
        ("commit.segment.end", "2026-07-01T00:00:00+00:00", "commit1/s2"),
        ("credit.segment.start", "2026-02-01T00:00:00+00:00", "credit1/s3"),
        ("credit.segment.end", "2026-03-01T00:00:00+00:00", "credit1/s3"),
    }
    second = next(o for o in contract_occurrences(_contract()) if o.subject == "commit1/s2" and o.type.endswith("start"))
    assert (second.properties["segment_number"], second.properties["total_segments"]) == (2, 2)


def test_an_open_ended_contract_has_no_end_and_an_archived_one_has_nothing():
    assert CONTRACT_END not in {o.type for o in contract_occurrences(_contract(ending_before=None, commits=[], credits=[]))}
    assert contract_occurrences(_contract(archived_at="2026-02-01T00:00:00Z")) == []


def test_moving_the_end_makes_a_new_occurrence_with_a_new_key():
    before = next(o for o in contract_occurrences(_contract()) if o.type == CONTRACT_END)
    after = next(o for o in contract_occurrences(_contract(ending_before="2026-08-01T00:00:00Z")) if o.type == CONTRACT_END)
    assert before.key != after.key


def test_a_window_in_due_time_is_shifted_back_by_the_offset_into_event_time():
    last, as_of = datetime(2026, 6, 27, tzinfo=UTC), datetime(2026, 6, 28, tzinfo=UTC)
    low, high = event_window(last, as_of, parse_offset("-P3D"))
    # due at instant - 3 days: the events due in (Jun 27, Jun 28] happen in (Jun 30, Jul 1]
    assert (low, high) == (datetime(2026, 6, 30, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    assert window_days(low, high) == [date(2026, 6, 30), date(2026, 7, 1)]


def test_the_message_id_is_one_per_configuration_and_occurrence():
    occurrence = next(o for o in contract_occurrences(_contract()) if o.type == CONTRACT_START)
    config = {"id": "n1", "name": "welcome", "policy": {"type": CONTRACT_START, "offset": "P1D"}}
    message = notification_message(config, occurrence, parse_offset("P1D"))
    assert message["id"] == delivery_id("n1", occurrence.key) == notification_message(config, occurrence, timedelta(0))["id"]
    assert message["id"] != delivery_id("n2", occurrence.key)
    assert message["type"] == "contract.start"
    assert message["properties"].items() >= {
        "notification_id": "n1",
        "customer_id": "cust",
        "contract_id": "c1",
        "event_timestamp": "2026-01-01T00:00:00Z",
        "timestamp": "2026-01-02T00:00:00Z",
    }.items()


WRITTEN = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "event", "late"),
    [
        pytest.param("-P7D", WRITTEN + timedelta(days=3), True, id="ends in 3 days, notified 7 days before: late"),
        pytest.param("-P7D", WRITTEN + timedelta(days=8), False, id="ends in 8 days, notified 7 days before: on time"),
        pytest.param("PT0S", WRITTEN - timedelta(minutes=30), True, id="started half an hour before it was written: late"),
        pytest.param("PT0S", WRITTEN + timedelta(minutes=30), True, id="due within a run's skew of the write: late too"),
        pytest.param("PT0S", WRITTEN + timedelta(hours=2), False, id="due two hours after the write: walked"),
        pytest.param("PT0S", WRITTEN - timedelta(days=1), True, id="written exactly the bound after its event: still sent"),
        pytest.param("PT0S", WRITTEN - timedelta(days=1, seconds=1), False, id="backdated past the bound: never sent"),
        pytest.param("P3D", WRITTEN - timedelta(days=2), False, id="due tomorrow, but its event is past the bound"),
    ],
)
def test_an_occurrence_is_late_when_due_by_its_write_and_written_within_the_bound(offset, event, late):
    occurrence = Occurrence(CONTRACT_END, event, "cust-1", "c1", "c1")
    assert late_for(parse_offset(offset), occurrence, WRITTEN) is late
    if late:
        assert may_be_late(occurrence, WRITTEN)  # what lets the index skip reading configurations
