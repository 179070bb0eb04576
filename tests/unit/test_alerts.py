"""Alerts: validation that names the field, when a value has crossed, what a crossing decides and
the message it publishes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing import exact_json
from tally.billing.alerts import (
    Alert,
    AlertState,
    AlertType,
    CustomerStatus,
    Decision,
    GroupValue,
    Reading,
    crossed,
    crossing_message,
    decide,
    message_attributes,
    message_id,
    new_alert,
)
from tally.billing.errors import InvalidInput
from tally.billing.messages import envelope
from tally.billing.metrics import Aggregation, BillableMetric

T = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
TOKENS = BillableMetric("m-tokens", "tokens", Aggregation.SUM, "tokens", None, (), (("region",),))
CALLS = BillableMetric("m-calls", "calls", Aggregation.COUNT, None, None, (), ())


def alert(alert_type: AlertType, threshold: str = "100", **fields) -> Alert:
    return Alert(id="a1", name="n", type=alert_type, threshold=Decimal(threshold), credit_type_id=USD, created_at=T, **fields)


def create(**overrides):
    fields = dict(
        id="a1",
        name="usage over 100",
        alert_type="usage_threshold_reached",
        threshold=100,
        created_at=T,
        credit_type_id=USD,
        credit_type_known=True,
        billable_metric_id="m-tokens",
        metric=TOKENS,
    )
    fields.update(overrides)
    return new_alert(**fields)


# -- validation ----------------------------------------------------------------------------------
INVALID = [
    ("a negative threshold", dict(threshold=-1), "threshold"),
    ("a threshold given as a string", dict(threshold="100"), "threshold"),
    ("a threshold given as a boolean", dict(threshold=True), "threshold"),
    ("a missing threshold", dict(threshold=None), "threshold"),
    ("a fractional threshold on a COUNT metric", dict(billable_metric_id="m-calls", metric=CALLS, threshold=Decimal("2.5")), "threshold"),
    ("an unknown billable metric", dict(billable_metric_id="nope", metric=None), "billable_metric_id"),
    ("a usage alert without a metric", dict(billable_metric_id=None, metric=None), "billable_metric_id"),
    ("a spend alert with a metric", dict(alert_type="spend_threshold_reached"), "billable_metric_id"),
    ("an unknown credit type", dict(credit_type_known=False), "credit_type_id"),
    ("a group key the metric does not have", dict(group_values=(GroupValue("team", "x"),)), "group_values[0].key"),
    ("the same group key twice", dict(group_values=(GroupValue("region", "eu"), GroupValue("region", "us"))), "group_values"),
    ("an alert type Metronome has and Tally does not evaluate", dict(alert_type="low_remaining_seat_balance_reached"), "alert_type"),
    ("an alert type nobody has", dict(alert_type="weather_changed"), "alert_type"),
    ("a blank name", dict(name="  "), "name"),
    (
        "an invoice type filter on a spend alert",
        dict(alert_type="spend_threshold_reached", billable_metric_id=None, metric=None, invoice_types_filter=("USAGE",)),
        "invoice_types_filter",
    ),
    (
        "an invoice type that does not exist",
        dict(alert_type="invoice_total_reached", billable_metric_id=None, metric=None, invoice_types_filter=("WEEKLY",)),
        "invoice_types_filter[0]",
    ),
    (
        "a negative low-balance threshold",
        dict(alert_type="low_credit_balance_reached", billable_metric_id=None, metric=None, threshold=Decimal("-0.01")),
        "threshold",
    ),
]


@pytest.mark.parametrize(("overrides", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_alert_is_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidInput) as raised:
        create(**overrides)
    assert raised.value.field == field


VALID = [
    ("usage of a metric, integer threshold", dict(), Decimal(100)),
    ("usage of a SUM metric, fractional threshold", dict(threshold=Decimal("0.5")), Decimal("0.5")),
    ("usage narrowed to one group value", dict(group_values=(GroupValue("region", "eu"),)), Decimal(100)),
    ("a zero threshold", dict(threshold=0), Decimal(0)),
    ("spend in cents", dict(alert_type="spend_threshold_reached", billable_metric_id=None, metric=None, threshold=Decimal("1000.25")), Decimal("1000.25")),
    ("a low credit balance", dict(alert_type="low_credit_balance_reached", billable_metric_id=None, metric=None, threshold=500), Decimal(500)),
]


@pytest.mark.parametrize(("overrides", "threshold"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_alert_keeps_an_exact_decimal_threshold(overrides, threshold):
    created = create(**overrides)
    assert created.threshold == threshold
    assert isinstance(created.threshold, Decimal)


# -- crossing ------------------------------------------------------------------------------------
CROSSINGS = [
    ("usage below the threshold has not crossed", AlertType.USAGE_THRESHOLD_REACHED, "99.99", False),
    ("usage exactly at the threshold has crossed", AlertType.USAGE_THRESHOLD_REACHED, "100", True),
    ("usage above the threshold has crossed", AlertType.USAGE_THRESHOLD_REACHED, "250", True),
    ("spend at the threshold has crossed", AlertType.SPEND_THRESHOLD_REACHED, "100", True),
    ("an invoice total below has not crossed", AlertType.INVOICE_TOTAL_REACHED, "99", False),
    ("a monthly total above has crossed", AlertType.MONTHLY_INVOICE_TOTAL_SPEND_THRESHOLD_REACHED, "101", True),
    ("a credit balance above the threshold has not crossed", AlertType.LOW_CREDIT_BALANCE_REACHED, "100.01", False),
    ("a credit balance exactly at the threshold has crossed", AlertType.LOW_CREDIT_BALANCE_REACHED, "100", True),
    ("a commit balance below the threshold has crossed", AlertType.LOW_REMAINING_COMMIT_BALANCE_REACHED, "3", True),
    ("an exhausted commit and credit balance has crossed", AlertType.LOW_REMAINING_CONTRACT_CREDIT_AND_COMMIT_BALANCE_REACHED, "0", True),
]


@pytest.mark.parametrize(("alert_type", "value", "expected"), [c[1:] for c in CROSSINGS], ids=[c[0] for c in CROSSINGS])
def test_crossed(alert_type, value, expected):
    assert crossed(alert(alert_type), Decimal(value)) is expected


# -- decisions -----------------------------------------------------------------------------------
OK = AlertState("a1", "c1")
ALARM = AlertState("a1", "c1", CustomerStatus.IN_ALARM, version=1, crossings=1, window="2026-11-01T00:00:00Z")
USAGE = AlertType.USAGE_THRESHOLD_REACHED
LOW = AlertType.LOW_CREDIT_BALANCE_REACHED
NOV, DEC = "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"
DECISIONS = [
    ("ok and crossed: fire", USAGE, OK, Reading(Decimal(150), NOV), Decision.FIRE),
    ("ok and not crossed: stay", USAGE, OK, Reading(Decimal(50), NOV), Decision.STAY),
    ("in alarm and still crossed: stay (one message per crossing)", USAGE, ALARM, Reading(Decimal(900), NOV), Decision.STAY),
    ("in alarm and back under in the same period: re-arm silently", USAGE, ALARM, Reading(Decimal(10), NOV), Decision.REARM),
    ("in alarm from last period, crossed again this period: fire", USAGE, ALARM, Reading(Decimal(150), DEC), Decision.FIRE),
    ("in alarm from last period, new period under: re-arm", USAGE, ALARM, Reading(Decimal(0), DEC), Decision.REARM),
    ("nothing to watch (no balance): stay", LOW, OK, Reading(None), Decision.STAY),
    ("balance topped up above the threshold: re-arm", LOW, replace(ALARM, window=None), Reading(Decimal(500)), Decision.REARM),
    ("balance still low: stay", LOW, replace(ALARM, window=None), Reading(Decimal(5)), Decision.STAY),
]


@pytest.mark.parametrize(("alert_type", "state", "reading", "decision"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS])
def test_decide(alert_type, state, reading, decision):
    assert decide(alert(alert_type), state, reading) is decision


# -- messages ------------------------------------------------------------------------------------
def test_envelope_has_id_type_and_properties_only():
    assert envelope("x", "invoice.finalized", {"a": 1}) == {"id": "x", "type": "invoice.finalized", "properties": {"a": 1}}
    with pytest.raises(ValueError):
        envelope("", "t", {})


def test_a_crossing_message_is_exact_json_with_a_stable_id_and_filterable_attributes():
    usage = alert(USAGE, "100.5", billable_metric_id="m-tokens", group_values=(GroupValue("region", "eu"),))
    message = crossing_message(usage, "c1", 2, Reading(Decimal("100.50"), NOV), T)
    assert message["id"] == message_id("a1", "c1", 2) == "a1:c1:2"
    assert message["type"] == "alerts.usage_threshold_reached"
    body = exact_json.dumps(message)
    assert '"threshold":100.5' in body and '"value":100.50' in body
    assert message["properties"]["group_values"] == [{"key": "region", "value": "eu"}]
    assert message_attributes(message) == {
        "type": "alerts.usage_threshold_reached",
        "customer_id": "c1",
        "alert_type": "usage_threshold_reached",
        "alert_id": "a1",
    }


def test_the_same_crossing_always_builds_the_same_message():
    low = alert(LOW, "500")
    first = crossing_message(low, "c1", 1, Reading(Decimal(400)), T)
    again = crossing_message(low, "c1", 1, Reading(Decimal(400)), T)
    assert first == again
    assert first["properties"]["credit_type_id"] == USD
