"""Recurring grants linked to a subscription (billing/balances/recurring.py, SeatLink): access per
seat at each period's start, seat increases within a period granted at once (prorated or whole),
only above the most seats the period has had. Monthly from Oct 1 2026; November has 30 days."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tally.billing.balances.recurring import RecurringProration, SeatLink, recurrences
from tally.billing.pricing.subscriptions import ProrationRounding, ProrationRoundingMethod
from tests.unit.balances.test_recurring import CONTRACT_START, MONTHLY, credit, t

D = Decimal


def link(*steps, prorate: bool = True) -> SeatLink:
    """(from, quantity) steps; each lasts until the next (the last: open)."""
    starts = [s for s, _ in steps]
    return SeatLink(tuple(zip(starts, [*starts[1:], None], (D(q) for _, q in steps))), prorate)


def made(recurring, end=t(1, 1, 2027)) -> list[tuple]:
    return [(r.starting_at, r.access_amount, r.increases) for r in recurrences(recurring, MONTHLY, CONTRACT_START, end)]


@pytest.mark.parametrize(
    ("case", "seats", "expected"),
    [
        (
            # 10 seats × 500 = 5000 a month; +5 on Nov 16: 5 × 500 × 15/30 = 1250 from Nov 16; December 15 × 500
            "an increase mid-period is prorated to the part of the period left",
            link((t(10), 10), (t(11, 16), 15)),
            [(t(10), D(5000), ()), (t(11), D(5000), ((t(11, 16), D("1250.00")),)), (t(12), D(7500), ())],
        ),
        (
            "not prorated, an increase grants the added seats' whole amount",
            link((t(10), 10), (t(11, 16), 15), prorate=False),
            [(t(10), D(5000), ()), (t(11), D(5000), ((t(11, 16), D(2500)),)), (t(12), D(7500), ())],
        ),
        (
            # Nov 11 +2 (12): 2 × 500 × 20/30 = 666.67; Nov 16 -3 (9), Nov 21 +4 (13): 1 above 12, 500 × 10/30 = 166.67
            "only seats above the most the period has had grant again; a decrease takes nothing",
            link((t(10), 10), (t(11, 11), 12), (t(11, 16), 9), (t(11, 21), 13)),
            [(t(10), D(5000), ()), (t(11), D(5000), ((t(11, 11), D("666.67")), (t(11, 21), D("166.67")))), (t(12), D(6500), ())],
        ),
        (
            "a subscription starting later grants nothing before it starts, then its seats each period",
            link((t(11), 4)),
            [(t(10), D(0), ()), (t(11), D(2000), ()), (t(12), D(2000), ())],
        ),
    ],
)
def test_a_linked_recurring_grant_grants_per_seat(case, seats, expected):
    assert made(credit(access_amount=D(500), seats=seats)) == expected, case


def test_a_cut_first_period_prorates_the_seats_and_rounding_applies_to_increases():
    # Oct 16 to Nov 1 is 16 of 31 days: 10 × 500 × 16/31 = 2580.645… → 2580.65; Oct 21 +1:
    # 500 × 11/31 = 177.419… floored to whole dollars → 100 (rounding -2, FLOOR, applies to both: 2500)
    recurring = credit(access_amount=D(500), starting_at=t(10, 16), proration=RecurringProration.FIRST_AND_LAST,
                       seats=link((t(10), 10), (t(10, 21), 11)))
    assert made(recurring, t(11))[0] == (t(10, 16), D("2580.65"), ((t(10, 21), D("177.42")),))
    floored = credit(access_amount=D(500), starting_at=t(10, 16), seats=link((t(10), 10), (t(10, 21), 11)),
                     access_rounding=ProrationRounding(-2, ProrationRoundingMethod.FLOOR))
    assert made(floored, t(11))[0] == (t(10, 16), D(2500), ((t(10, 21), D(100)),))


def test_individual_allocation_gives_each_assigned_seat_its_own_and_a_seat_joining_mid_period_a_prorated_one():
    # Oct: ann and bob (and 3 unassigned seats, which get nothing). Oct 16 ann leaves and cy joins
    # (16 of 31 days left: 500 × 16/31 = 258.06); Oct 21 ann is back: she had hers this period.
    assigned = ((t(10), t(10, 16), ("ann", "bob")), (t(10, 16), t(10, 21), ("bob", "cy")), (t(10, 21), None, ("bob", "cy", "ann")))
    seats = SeatLink(((t(10), None, D(5)),), True, individual=True, assigned=assigned)
    found = recurrences(credit(access_amount=D(500), seats=seats), MONTHLY, CONTRACT_START, t(12))
    assert [(r.starting_at, r.access_amount, r.increases, r.allocations) for r in found] == [
        (t(10), D(0), (), (("ann", t(10), D(500)), ("bob", t(10), D(500)), ("cy", t(10, 16), D("258.06")))),
        (t(11), D(0), (), (("bob", t(11), D(500)), ("cy", t(11), D(500)), ("ann", t(11), D(500)))),
    ]
