"""Seat-based subscriptions, `proration.invoice_behavior`, `proration.rounding` and scheduled
charges that are not invoiced: the pricing, checked to the cent by hand.

Prices are in USD (cents): a seat costs 1000 a month ($10) or 12000 a year. January 2026 has 31
days, so a stretch of d days of January is d/31 of a month. Contract from 2026-01-01, monthly
periods from the 1st.
"""

from dataclasses import replace

import pytest

from tally.billing.pricing import Frequency, InvoiceType, LineType, Period, ProductType, ScheduledCharge, ScheduleItem
from tally.billing.pricing.seats import SeatChange, Seats, seat_quantities, seat_schedule
from tally.billing.pricing.subscriptions import (
    CollectionSchedule,
    InvoiceBehavior,
    ProrationRounding,
    ProrationRoundingMethod,
)
from tests.unit.pricing.builders import JAN, D, FakeUsage, all_invoices, at, catalog, contract, flat, product
from tests.unit.pricing.test_invoices import API, SEAT_RATES, SEATS, seats

ADVANCE, ARREARS = CollectionSchedule.ADVANCE, CollectionSchedule.ARREARS
NEXT = InvoiceBehavior.BILL_ON_NEXT_COLLECTION_DATE
ANNUAL = Frequency.ANNUAL


# -- seats ------------------------------------------------------------------------------------------
def change(when, add=(), remove=(), add_unassigned=0, remove_unassigned=0) -> SeatChange:
    return SeatChange(when, tuple(add), tuple(remove), add_unassigned, remove_unassigned)


END = at(2, 1)  # the subscription's end in the last case; None (never) in the others
SEAT_CASES = [
    ("no change: one segment with the initial seats",
     Seats(("ann", "bob"), 1), [], None, [("01-01", None, ["ann", "bob"], 3)]),
    ("a seat id added fills an unassigned seat: the quantity stays",
     Seats(("ann",), 1), [change(at(1, 11), add=["bob"])], None,
     [("01-01", "01-11", ["ann"], 2), ("01-11", None, ["ann", "bob"], 2)]),
    ("seat ids beyond the unassigned seats add seats",
     Seats(("ann",), 1), [change(at(1, 11), add=["bob", "cy", "di"])], None,
     [("01-01", "01-11", ["ann"], 2), ("01-11", None, ["ann", "bob", "cy", "di"], 4)]),
    ("a seat id removed lowers the quantity (it does not become unassigned)",
     Seats(("ann", "bob"), 0), [change(at(1, 11), remove=["ann"])], None,
     [("01-01", "01-11", ["ann", "bob"], 2), ("01-11", None, ["bob"], 1)]),
    ("removing a seat that is not there, or adding one that is, changes nothing",
     Seats(("ann",), 0), [change(at(1, 11), remove=["zed"]), change(at(1, 12), add=["ann"])], None,
     [("01-01", None, ["ann"], 1)]),
    ("unassigned seats added, then more removed than there are: down to none",
     Seats(("ann",), 0), [change(at(1, 11), add_unassigned=2), change(at(1, 21), remove_unassigned=5)], None,
     [("01-01", "01-11", ["ann"], 1), ("01-11", "01-21", ["ann"], 3), ("01-21", None, ["ann"], 1)]),
    ("changes apply by date, then in the order sent: a later-sent earlier change comes first",
     Seats((), 0), [change(at(1, 21), add=["bob"]), change(at(1, 11), add_unassigned=1)], None,
     # Jan 11: one unassigned seat; Jan 21: bob fills it, so the quantity stays 1.
     [("01-01", "01-11", [], 0), ("01-11", "01-21", [], 1), ("01-21", None, ["bob"], 1)]),
    ("two changes at one instant that cancel out leave no segment",
     Seats(("ann",), 0), [change(at(1, 11), add=["bob"]), change(at(1, 11), remove=["bob"])], None,
     [("01-01", None, ["ann"], 1)]),
    ("a change at the start changes the initial seats",
     Seats(("ann",), 0), [change(at(1, 1), add=["bob"])], None, [("01-01", None, ["ann", "bob"], 2)]),
    ("a change at or after the end is not in the schedule",
     Seats(("ann",), 0), [change(at(2, 1), add=["bob"])], END, [("01-01", "02-01", ["ann"], 1)]),
]


@pytest.mark.parametrize("initial,changes,end,expected", [c[1:] for c in SEAT_CASES], ids=[c[0] for c in SEAT_CASES])
def test_seat_schedule(initial, changes, end, expected):
    segments = seat_schedule(at(1, 1), end, initial, changes)
    assert [
        (s.starting_at.strftime("%m-%d"), None if s.ending_before is None else s.ending_before.strftime("%m-%d"),
         list(s.seats.assigned), s.seats.total)
        for s in segments
    ] == expected


def test_a_seat_swap_is_in_the_seat_history_but_is_no_quantity_change():
    segments = seat_schedule(at(1, 1), None, Seats(("ann", "bob"), 0), [
        change(at(1, 11), add=["cy"], remove=["ann"]),  # 3 then 2 at one instant: 2 seats all along
        change(at(1, 21), add=["di"]),
    ])
    assert [(list(s.seats.assigned), s.seats.total) for s in segments] == [
        (["ann", "bob"], 2), (["bob", "cy"], 2), (["bob", "cy", "di"], 3)]
    initial, changes = seat_quantities(segments)
    assert (initial, [(c.starting_at, c.quantity) for c in changes]) == (2, [(at(1, 21), 3)])


# -- when a mid-period increase is billed -----------------------------------------------------------
def placed(subscription, period=JAN, **fields) -> list[tuple]:
    """(invoice type, issued or period start, line start, quantity, total) of every subscription line."""
    drafts = all_invoices(contract(*SEAT_RATES, subscriptions=(subscription,), **fields), catalog(SEATS), FakeUsage(), period)
    return [
        (d.type.value, d.starting_at.strftime("%m-%d"), line.starting_at.strftime("%m-%d"), line.quantity, line.total)
        for d in drafts for line in d.line_items
    ]


DEC = Period(at(12, 1), at(1, 1, year=2027))
JUL = Period(at(7, 1), at(8, 1))
BEHAVIOR_CASES = [
    ("BILL_IMMEDIATELY: 2 more seats on Jan 21 are billed then, 2 × 1000 × 11/31 = 709.68",
     seats(ADVANCE, quantity=2, updates=[(at(1, 21), 4)]), JAN, {},
     [("SCHEDULED", "01-01", "01-01", 2, D("2000.00")), ("SCHEDULED", "01-21", "01-21", 2, D("709.68"))]),
    ("BILL_ON_NEXT_COLLECTION_DATE: the same 709.68 on the month's usage invoice, at its end",
     replace(seats(ADVANCE, quantity=2, updates=[(at(1, 21), 4)]), invoice_behavior=NEXT), JAN, {},
     [("USAGE", "01-01", "01-21", 2, D("709.68")), ("SCHEDULED", "01-01", "01-01", 2, D("2000.00"))]),
    ("BILL_ON_NEXT_COLLECTION_DATE: after a decrease, only seats above the most charged (6 - 5) × 1000 × 11/31",
     replace(seats(ADVANCE, quantity=5, updates=[(at(1, 11), 3), (at(1, 21), 6)]), invoice_behavior=NEXT), JAN, {},
     [("USAGE", "01-01", "01-21", 1, D("354.84")), ("SCHEDULED", "01-01", "01-01", 5, D("5000.00"))]),
    ("BILL_ON_NEXT_COLLECTION_DATE, contract ending Jan 21: 2 × 1000 × 20/31 in advance, 1 × 1000 × 10/31 at the end",
     replace(seats(ADVANCE, quantity=2, updates=[(at(1, 11), 3)]), invoice_behavior=NEXT), JAN,
     {"ending_before": at(1, 21)},
     [("USAGE", "01-01", "01-11", 1, D("322.58")), ("SCHEDULED", "01-01", "01-01", 2, D("1290.32"))]),
    ("annual, BILL_IMMEDIATELY: a seat added Jul 1 is billed in July, 12000 × 184/365 = 6049.32",
     seats(ADVANCE, quantity=1, updates=[(at(7, 1), 2)], frequency=ANNUAL), JUL, {},
     [("SCHEDULED", "07-01", "07-01", 1, D("6049.32"))]),
    ("annual, BILL_ON_NEXT_COLLECTION_DATE: not in July...",
     replace(seats(ADVANCE, quantity=1, updates=[(at(7, 1), 2)], frequency=ANNUAL), invoice_behavior=NEXT), JUL, {}, []),
    ("...but on December's usage invoice, when the year ends",
     replace(seats(ADVANCE, quantity=1, updates=[(at(7, 1), 2)], frequency=ANNUAL), invoice_behavior=NEXT), DEC, {},
     [("USAGE", "12-01", "07-01", 1, D("6049.32"))]),
    ("ARREARS bills at the end whatever the behaviour says: 2 × 1000 × 20/31, then 4 × 1000 × 11/31",
     replace(seats(ARREARS, quantity=2, updates=[(at(1, 21), 4)]), invoice_behavior=NEXT), JAN, {},
     [("USAGE", "01-01", "01-01", 2, D("1290.32")), ("USAGE", "01-01", "01-21", 4, D("1419.35"))]),
]


@pytest.mark.parametrize("subscription,period,fields,lines", [c[1:] for c in BEHAVIOR_CASES],
                         ids=[c[0] for c in BEHAVIOR_CASES])
def test_where_a_mid_period_increase_is_billed(subscription, period, fields, lines):
    assert placed(subscription, period, **fields) == lines


# -- proration rounding -----------------------------------------------------------------------------
# 3 seats from Jan 11: 3 × 1000 × 21/31 = 2032.258064516... cents.
ROUNDING_CASES = [
    ("no rounding: the credit type's, two places half up", None, D("2032.26")),
    ("0 places half up: whole cents", (0, "HALF_UP"), D("2032")),
    ("0 places ceiling", (0, "CEILING"), D("2033")),
    ("1 place half up", (1, "HALF_UP"), D("2032.3")),
    ("-2 places half up: whole dollars", (-2, "HALF_UP"), D("2000")),
    ("-2 places ceiling", (-2, "CEILING"), D("2100")),
    ("-3 places ceiling: tens of dollars", (-3, "CEILING"), D("3000")),
    ("4 places floor: no finer than the credit type's two, still floored", (4, "FLOOR"), D("2032.25")),
]


@pytest.mark.parametrize("rounding,total", [c[1:] for c in ROUNDING_CASES], ids=[c[0] for c in ROUNDING_CASES])
def test_proration_rounding_rounds_a_prorated_line_once(rounding, total):
    subscription = seats(ADVANCE, start=at(1, 11))
    if rounding is not None:
        subscription = replace(subscription, proration_rounding=ProrationRounding(rounding[0], ProrationRoundingMethod(rounding[1])))
    [draft] = all_invoices(contract(*SEAT_RATES, subscriptions=(subscription,)), catalog(SEATS))[1:]
    [line] = draft.line_items
    assert (line.total, str(line.total)) == (total, str(total))
    assert str(line.precise_total).startswith("2032.258064516129032258") and line.is_prorated  # kept exact
    assert draft.total == total


def test_proration_rounding_rounds_each_prorated_stretch_in_arrears_and_leaves_whole_periods_alone():
    floor = ProrationRounding(0, ProrationRoundingMethod.FLOOR)
    arrears = replace(seats(ARREARS, quantity=2, updates=[(at(1, 21), 4)]), proration_rounding=floor)
    # 2 × 1000 × 20/31 = 1290.32..., 4 × 1000 × 11/31 = 1419.35...: each floored to a whole cent.
    assert [line.total for line in all_invoices(contract(*SEAT_RATES, subscriptions=(arrears,)), catalog(SEATS))[0].line_items] \
        == [D(1290), D(1419)]
    # A whole month is not prorated: 3 × 1000 stays 3000.00 even with rounding up to $100.
    whole = replace(seats(ADVANCE), proration_rounding=ProrationRounding(-4, ProrationRoundingMethod.CEILING))
    [line] = [l for d in all_invoices(contract(*SEAT_RATES, subscriptions=(whole,)), catalog(SEATS)) for l in d.line_items]
    assert line.total == D("3000.00") and not line.is_prorated


# -- scheduled charges ------------------------------------------------------------------------------
def test_a_scheduled_charge_with_do_not_invoice_is_on_the_contract_but_on_no_invoice():
    setup = product("setup", ProductType.FIXED, name="Onboarding")
    items = (ScheduleItem(at(1, 10), D(50000)), ScheduleItem(at(1, 20), D(2500), D(4)))
    billed = ScheduledCharge("sc", "setup", items)
    recorded = replace(billed, id="sc-2", do_not_invoice=True)
    drafts = all_invoices(contract(flat("api", 1), scheduled_charges=(billed, recorded)), catalog(API, setup))
    assert [(d.type, d.starting_at, [l.scheduled_charge_id for l in d.line_items], d.total) for d in drafts] == [
        (InvoiceType.USAGE, at(1, 1), [], D(0)),
        (InvoiceType.SCHEDULED, at(1, 10), ["sc"], D("50000.00")),
        (InvoiceType.SCHEDULED, at(1, 20), ["sc"], D("10000.00")),
    ]
    assert all(l.type is LineType.SCHEDULED for d in drafts for l in d.line_items)
