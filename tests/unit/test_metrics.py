"""Billable metrics: which events match, and what each contributes."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.errors import InvalidInput
from tally.billing.events import UsageEvent
from tally.billing.metrics import (
    Aggregation,
    BillableMetric,
    EventTypeFilter,
    PropertyFilter,
    validate_metric_definition,
)

T = datetime(2026, 11, 24, 10, tzinfo=timezone.utc)


def metric(aggregation=Aggregation.COUNT, key=None, etf=None, filters=(), group_keys=()):
    return BillableMetric("m", "m", aggregation, key, etf, tuple(filters), tuple(tuple(g) for g in group_keys))


def ev(event_type="call", **props):
    return UsageEvent("t", "acme", event_type, T, props)


CASES = [
    ("count matches any event with no filters", metric(), ev(), (), Decimal(1)),
    ("event type in-list excludes other types", metric(etf=EventTypeFilter(("call",))), ev("upload"), None, None),
    ("event type not-in-list excludes listed types", metric(etf=EventTypeFilter(None, ("call",))), ev("call"), None, None),
    ("exists=true needs the property", metric(filters=[PropertyFilter("region", exists=True)]), ev(), None, None),
    ("exists=false rejects events that have it", metric(filters=[PropertyFilter("region", exists=False)]), ev(region="eu"), None, None),
    ("in_values compares the text of numbers", metric(filters=[PropertyFilter("tier", in_values=("2",))]), ev(tier=2), (), Decimal(1)),
    ("not_in_values passes events without the property", metric(filters=[PropertyFilter("tier", not_in_values=("2",))]), ev(), (), Decimal(1)),
    ("sum takes the aggregation key's number", metric(Aggregation.SUM, "tokens"), ev(tokens=Decimal("2.5")), (), Decimal("2.5")),
    ("sum accepts numeric strings", metric(Aggregation.SUM, "tokens"), ev(tokens="7"), (), Decimal(7)),
    ("sum ignores events whose value is not a number", metric(Aggregation.SUM, "tokens"), ev(tokens="many"), None, None),
    ("booleans are not numbers", metric(Aggregation.MAX, "tokens"), ev(tokens=True), None, None),
    ("unique keeps the value's text", metric(Aggregation.UNIQUE, "user"), ev(user=42), (), "42"),
    (
        "compound group keys give the sorted union of dimensions, missing as None",
        metric(group_keys=[["region", "team"], ["region"]]),
        ev(region="eu"),
        ("eu", None),
        Decimal(1),
    ),
]


@pytest.mark.parametrize("m,event,group,value", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_metric_contribution(m, event, group, value):
    contribution = m.contribution(event)
    if group is None:
        assert contribution is None
    else:
        assert (contribution.group, contribution.value) == (group, value)


def test_counting_window_is_activation_inclusive_and_archive_exclusive():
    m = BillableMetric("m", "m", Aggregation.COUNT, None, None, (), (), activated_at=T, archived_at=T.replace(hour=12))
    assert not m.counts_ingested_at(T.replace(hour=9))
    assert m.counts_ingested_at(T)
    assert m.counts_ingested_at(T.replace(hour=11, minute=59))
    assert not m.counts_ingested_at(T.replace(hour=12))


@pytest.mark.parametrize(
    "aggregation,key,field",
    [(Aggregation.SUM, None, "aggregation_key"), (Aggregation.COUNT, "x", "aggregation_key")],
    ids=["sum without a key", "count with a key"],
)
def test_metric_definitions_are_checked(aggregation, key, field):
    with pytest.raises(InvalidInput) as error:
        validate_metric_definition(aggregation, key, ())
    assert error.value.field == field
