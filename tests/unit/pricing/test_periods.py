"""Billing periods from the usage statement schedule, with partial first and last periods."""

import pytest

from tally.billing.pricing import (
    BillingDay,
    Frequency,
    Period,
    UsageStatementSchedule,
    billing_periods,
    period_containing,
)
from tests.unit.pricing.builders import at


def spans(periods):
    return [(p.starting_at.strftime("%Y-%m-%dT%H"), p.ending_before.strftime("%Y-%m-%dT%H")) for p in periods]


CASES = [
    ("monthly on the first, a contract starting mid-month has a partial first and last period",
     UsageStatementSchedule(), at(1, 15), at(4, 10),
     [("2026-01-15T00", "2026-02-01T00"), ("2026-02-01T00", "2026-03-01T00"), ("2026-03-01T00", "2026-04-01T00"),
      ("2026-04-01T00", "2026-04-10T00")]),
    ("monthly from the contract start, to the hour",
     UsageStatementSchedule(day=BillingDay.CONTRACT_START), at(1, 15, 10), at(3, 15, 10),
     [("2026-01-15T10", "2026-02-15T10"), ("2026-02-15T10", "2026-03-15T10")]),
    ("a custom anchor before the start gives a short first period (Metronome's example)",
     UsageStatementSchedule(day=BillingDay.CUSTOM_DATE, billing_anchor_date=at(9, 10, year=2024)),
     at(9, 15, year=2024), at(11, 10, year=2024),
     [("2024-09-15T00", "2024-10-10T00"), ("2024-10-10T00", "2024-11-10T00")]),
    ("a month-end anchor clamps to each month's last day without drifting",
     UsageStatementSchedule(day=BillingDay.CONTRACT_START), at(1, 31), at(5, 31),
     [("2026-01-31T00", "2026-02-28T00"), ("2026-02-28T00", "2026-03-31T00"), ("2026-03-31T00", "2026-04-30T00"),
      ("2026-04-30T00", "2026-05-31T00")]),
    ("quarterly from the first of the start month",
     UsageStatementSchedule(Frequency.QUARTERLY), at(2, 10), at(8, 1),
     [("2026-02-10T00", "2026-05-01T00"), ("2026-05-01T00", "2026-08-01T00")]),
    ("annual on a leap day keeps to February's end",
     UsageStatementSchedule(Frequency.ANNUAL, BillingDay.CONTRACT_START), at(2, 29, year=2024), at(3, 1, year=2027),
     [("2024-02-29T00", "2025-02-28T00"), ("2025-02-28T00", "2026-02-28T00"), ("2026-02-28T00", "2027-02-28T00"),
      ("2027-02-28T00", "2027-03-01T00")]),
    ("weekly from the contract start",
     UsageStatementSchedule(Frequency.WEEKLY, BillingDay.CONTRACT_START), at(1, 7), at(1, 25),
     [("2026-01-07T00", "2026-01-14T00"), ("2026-01-14T00", "2026-01-21T00"), ("2026-01-21T00", "2026-01-25T00")]),
]


@pytest.mark.parametrize("schedule,start,end,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_billing_periods(schedule, start, end, expected):
    assert spans(billing_periods(schedule, start, end)) == expected


def test_an_open_ended_contract_lists_periods_up_to_the_one_holding_until():
    periods = billing_periods(UsageStatementSchedule(), at(1, 15), None, until=at(3, 2))
    assert spans(periods)[-1] == ("2026-03-01T00", "2026-04-01T00") and len(periods) == 3


@pytest.mark.parametrize(
    "instant,expected",
    [
        (at(1, 14, 23), None),
        (at(1, 15), Period(at(1, 15), at(2, 1))),
        (at(2, 1), Period(at(2, 1), at(3, 1))),
        (at(4, 9, 23), Period(at(4, 1), at(4, 10))),
        (at(4, 10), None),
    ],
    ids=["before the contract", "the contract's first instant", "a boundary opens the next period",
         "inside the partial last period", "the contract's end is exclusive"],
)
def test_the_period_containing_an_instant(instant, expected):
    assert period_containing(UsageStatementSchedule(), at(1, 15), at(4, 10), instant) == expected


# -- a subscription's billing periods (Metronome's `billing_periods`) ---------------------------------
def _subscription(start, end=None, frequency=Frequency.MONTHLY):
    from decimal import Decimal

    from tally.billing.pricing import CollectionSchedule, Subscription

    return Subscription("s", "seats", CollectionSchedule.ADVANCE, frequency, start, Decimal(1), ending_before=end)


def _span(period):
    return None if period is None else spans([period])[0]


SUBSCRIPTION_CASES = [
    ("mid-period: the one before, this one and the next, on the contract's anchor",
     _subscription(at(1, 1)), at(1, 1), None, at(3, 10),
     (("2026-02-01T00", "2026-03-01T00"), ("2026-03-01T00", "2026-04-01T00"), ("2026-04-01T00", "2026-05-01T00"))),
    ("in the first period: nothing before it",
     _subscription(at(1, 15)), at(1, 1), None, at(1, 20),
     (None, ("2026-01-15T00", "2026-02-01T00"), ("2026-02-01T00", "2026-03-01T00"))),
    ("the last period is cut at the subscription's end, and nothing comes after it",
     _subscription(at(1, 1), at(3, 10)), at(1, 1), None, at(3, 5),
     (("2026-02-01T00", "2026-03-01T00"), ("2026-03-01T00", "2026-03-10T00"), None)),
    ("the contract's end cuts it too",
     _subscription(at(1, 1)), at(1, 1), at(2, 20), at(2, 5),
     (("2026-01-01T00", "2026-02-01T00"), ("2026-02-01T00", "2026-02-20T00"), None)),
    ("not started yet: only its first period, as the next",
     _subscription(at(2, 10)), at(1, 1), None, at(1, 20),
     (None, None, ("2026-02-10T00", "2026-03-01T00"))),
    ("ended: only its last period, as the previous",
     _subscription(at(1, 1), at(2, 15)), at(1, 1), None, at(4, 1),
     (("2026-02-01T00", "2026-02-15T00"), None, None)),
    ("quarterly on a mid-month anchor",
     _subscription(at(1, 15), frequency=Frequency.QUARTERLY), at(1, 15), None, at(5, 1),
     (("2026-01-15T00", "2026-04-15T00"), ("2026-04-15T00", "2026-07-15T00"), ("2026-07-15T00", "2026-10-15T00"))),
    ("at a boundary the new period is current",
     _subscription(at(1, 1)), at(1, 1), None, at(2, 1),
     (("2026-01-01T00", "2026-02-01T00"), ("2026-02-01T00", "2026-03-01T00"), ("2026-03-01T00", "2026-04-01T00"))),
]


@pytest.mark.parametrize("case", SUBSCRIPTION_CASES, ids=[c[0] for c in SUBSCRIPTION_CASES])
def test_a_subscriptions_previous_current_and_next_billing_periods(case):
    from tally.billing.pricing.subscriptions import subscription_periods

    _, subscription, anchor, contract_end, now, expected = case
    periods = subscription_periods(subscription, anchor, contract_end, now)
    assert (_span(periods.previous), _span(periods.current), _span(periods.next)) == expected
