"""Ingest validation: the whole request passes or nothing is stored, and errors name index and field."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.events import first_wins, parse_usage_batch

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def event(i=0, **overrides):
    body = {
        "transaction_id": f"t{i}",
        "customer_id": "acme",
        "event_type": "call",
        "timestamp": "2026-11-24T11:00:00Z",
        "properties": {"tokens": 3},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


BAD = [
    ("body that is not an array", {"a": 1}, "usage", "JSON array"),
    ("empty array", [], "usage", "between 1 and 100"),
    ("101 events", [event(i) for i in range(101)], "usage", "between 1 and 100"),
    ("missing transaction_id", [event(0), event(1, transaction_id=...)], "usage[1].transaction_id", "required"),
    ("empty customer_id", [event(0, customer_id="")], "usage[0].customer_id", "at least 1"),
    ("numeric event_type", [event(0, event_type=5)], "usage[0].event_type", "string"),
    ("timestamp without timezone", [event(0), event(1, timestamp="2026-11-24T11:00:00")], "usage[1].timestamp", "RFC 3339"),
    ("date-only timestamp", [event(0, timestamp="2026-11-24")], "usage[0].timestamp", "RFC 3339"),
    ("timestamp 25 hours ahead", [event(0, timestamp="2026-11-25T13:00:00Z")], "usage[0].timestamp", "24 hours"),
    ("timestamp 35 days old", [event(0, timestamp="2026-10-20T11:00:00Z")], "usage[0].timestamp", "34 days"),
    ("unknown field", [event(0, extra=1)], "usage[0].extra", "not permitted"),
    ("properties not an object", [event(0, properties=[1])], "usage[0].properties", "dictionary"),
]


@pytest.mark.parametrize("body,field,rule", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_request_is_rejected_naming_the_field(body, field, rule):
    with pytest.raises(InvalidInput) as error:
        parse_usage_batch(body, NOW)
    assert error.value.field == field
    assert rule in error.value.rule


def test_a_good_batch_keeps_exact_numbers_and_normalizes_time_to_utc():
    events = parse_usage_batch(
        [event(0, timestamp="2026-11-24T13:30:00+02:00", properties={"cost": Decimal("0.1")})], NOW
    )
    assert events[0].timestamp == datetime(2026, 11, 24, 11, 30, tzinfo=timezone.utc)
    assert events[0].properties == {"cost": Decimal("0.1")}


def test_the_edges_of_the_time_window_are_accepted():
    edges = [NOW + timedelta(hours=24), NOW - timedelta(days=34)]
    stamps = [e.strftime("%Y-%m-%dT%H:%M:%SZ") for e in edges]
    assert len(parse_usage_batch([event(i, timestamp=s) for i, s in enumerate(stamps)], NOW)) == 2


def test_within_a_request_the_first_event_of_a_transaction_id_wins():
    events = parse_usage_batch([event(0, properties={"n": 1}), event(0, properties={"n": 2}), event(1)], NOW)
    firsts, repeats = first_wins(events)
    assert [e.properties for e in firsts] == [{"n": 1}, {"tokens": 3}]
    assert [e.properties for e in repeats] == [{"n": 2}]


@pytest.mark.parametrize(
    "value",
    [Decimal("1E+200"), Decimal("1E-140"), Decimal("1.234567890123456789012345678901234567891")],
    ids=["too large for DynamoDB", "too small for DynamoDB", "39 significant digits"],
)
def test_numbers_a_counter_could_not_hold_are_refused_at_ingest(value):
    with pytest.raises(InvalidInput) as error:
        parse_usage_batch([event(0, properties={"tokens": value})], NOW)
    assert error.value.field == "usage[0].properties.tokens"


def test_integers_with_trailing_zeros_are_within_range():
    assert parse_usage_batch([event(0, properties={"tokens": 10**40})], NOW)
