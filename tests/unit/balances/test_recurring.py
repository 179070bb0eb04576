"""Recurring commits and credits: which commits and credits they make, for how much, over what time,
and how what one rolls over meets the next. Every amount is worked out by hand in its case."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.balances import AccessSegment, Grant, LedgerEntryType as T, burn_down
from tally.billing.balances.recurring import (
    MAX_RECURRENCES,
    RecurrenceFrequency,
    RecurringGrant,
    RecurringProration,
    recurrence_count,
    recurrences,
    validate_recurring,
)
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS
from tally.billing.pricing.periods import BillingDay, Frequency, UsageStatementSchedule
from tally.billing.pricing.subscriptions import ProrationRounding, ProrationRoundingMethod
from tests.unit.balances.builders import CREDIT, PREPAID, charge

UTC = timezone.utc
D = Decimal
MONTHLY = UsageStatementSchedule(Frequency.MONTHLY, BillingDay.FIRST_OF_MONTH)
CONTRACT_START = datetime(2026, 10, 1, tzinfo=UTC)


def t(month: int, day: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def credit(**fields) -> RecurringGrant:
    base = dict(id="rc", kind=CREDIT, starting_at=t(10), access_amount=D(1000), credit_type=USD_CENTS)
    return RecurringGrant(**(base | fields))


# (case, recurring grant, contract end, until, [(start, access end, access amount, invoice amount)])
CASES = [
    (
        "one credit per billing period of the contract, each for the whole amount",
        credit(), t(1, 1, 2027), None,
        [(t(10), t(11), D(1000), None), (t(11), t(12), D(1000), None), (t(12), t(1, 1, 2027), D(1000), None)],
    ),
    (
        # Oct 16 to Nov 1 is 16 of October's 31 days: 1000 × 16/31 = 516.129… → 516.13
        "a first period cut by a mid-month start is prorated to the part it covers",
        credit(starting_at=t(10, 16)), t(12), None,
        [(t(10, 16), t(11), D("516.13"), None), (t(11), t(12), D(1000), None)],
    ),
    (
        "NONE grants the whole amount for a cut first period",
        credit(starting_at=t(10, 16), proration=RecurringProration.NONE), t(12), None,
        [(t(10, 16), t(11), D(1000), None), (t(11), t(12), D(1000), None)],
    ),
    (
        # Nov 1 to Nov 16 is 15 of November's 30 days: 1000 × 15/30 = 500
        "LAST prorates a last period cut by the grant's end",
        credit(ending_before=t(11, 16), proration=RecurringProration.LAST), None, None,
        [(t(10), t(11), D(1000), None), (t(11), t(11, 16), D(500), None)],
    ),
    (
        "FIRST leaves a cut last period whole",
        credit(ending_before=t(11, 16), proration=RecurringProration.FIRST), None, None,
        [(t(10), t(11), D(1000), None), (t(11), t(11, 16), D(1000), None)],
    ),
    (
        # 516.129… floored to whole dollars (-2 places of a cent) is 500
        "proration rounding rounds the prorated amount once, its own way",
        credit(starting_at=t(10, 16), access_rounding=ProrationRounding(-2, ProrationRoundingMethod.FLOOR)), t(11), None,
        [(t(10, 16), t(11), D(500), None)],
    ),
    (
        # access 1000 × 16/31 = 516.13; invoice 800 × 16/31 = 412.903… → 412.90
        "a prepaid commit's invoice amount is prorated like its access",
        credit(kind=PREPAID, starting_at=t(10, 16), invoice_amount=D(800)), t(11), None,
        [(t(10, 16), t(11), D("516.13"), D("412.90"))],
    ),
    (
        "recurrence_frequency counts periods from the grant's own start",
        credit(starting_at=t(10, 16), frequency=RecurrenceFrequency.QUARTERLY), t(4, 16, 2027), None,
        [(t(10, 16), t(1, 16, 2027), D(1000), None), (t(1, 16, 2027), t(4, 16, 2027), D(1000), None)],
    ),
    (
        "weekly from the grant's start",
        credit(starting_at=t(10, 5), frequency=RecurrenceFrequency.WEEKLY), t(10, 19), None,
        [(t(10, 5), t(10, 12), D(1000), None), (t(10, 12), t(10, 19), D(1000), None)],
    ),
    (
        # the last day is cut at noon: 1000 × 12/24 = 500
        "daily, the last day cut by the end",
        credit(starting_at=t(10, 5), frequency=RecurrenceFrequency.DAILY), datetime(2026, 10, 6, 12, tzinfo=UTC), None,
        [(t(10, 5), t(10, 6), D(1000), None), (t(10, 6), datetime(2026, 10, 6, 12, tzinfo=UTC), D(500), None)],
    ),
    (
        "a duration of two periods: each lasts two months, never past the end",
        credit(duration=2), t(1, 1, 2027), None,
        [(t(10), t(12), D(1000), None), (t(11), t(1, 1, 2027), D(1000), None), (t(12), t(1, 1, 2027), D(1000), None)],
    ),
    (
        "an open-ended grant has made those whose period has started by now",
        credit(), None, t(11, 15),
        [(t(10), t(11), D(1000), None), (t(11), t(12), D(1000), None)],
    ),
    (
        "the grant's own end comes before the contract's",
        credit(ending_before=t(11)), t(1, 1, 2027), None,
        [(t(10), t(11), D(1000), None)],
    ),
    (
        # an update made Nov 10 applies to December's credit only: November's had begun
        "an update applies to the recurrences starting after it",
        credit(updates=((t(11, 10), credit(access_amount=D(2000))),)), t(1, 1, 2027), None,
        [(t(10), t(11), D(1000), None), (t(11), t(12), D(1000), None), (t(12), t(1, 1, 2027), D(2000), None)],
    ),
    (
        "an update's earlier end stops the recurrences after it",
        credit(updates=((t(11, 10), credit(ending_before=t(12))),)), t(1, 1, 2027), None,
        [(t(10), t(11), D(1000), None), (t(11), t(12), D(1000), None)],
    ),
]


@pytest.mark.parametrize("recurring, end, until, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_recurrences(recurring, end, until, expected):
    made = recurrences(recurring, MONTHLY, CONTRACT_START, end, until)
    assert [(r.starting_at, r.ending_before, r.access_amount, r.invoice_amount) for r in made] == expected
    assert [r.index for r in made] == list(range(len(expected)))
    if end is not None and not recurring.updates:  # with updates it is a bound: the latest end's
        assert recurrence_count(recurring, MONTHLY, CONTRACT_START, end) == len(expected)


def test_what_a_recurrence_rolls_over_lasts_until_the_next_ones_access_ends():
    october, november, december = recurrences(credit(duration=2), MONTHLY, CONTRACT_START, t(2, 1, 2027))[:3]
    assert (october.ending_before, october.rollover_ending_before) == (t(12), t(1, 1, 2027))
    assert (november.ending_before, november.rollover_ending_before) == (t(1, 1, 2027), t(2, 1, 2027))
    last = recurrences(credit(), MONTHLY, CONTRACT_START, t(12))[-1]
    assert last.rollover_ending_before is None  # as long as itself, the default


def _grants(recurring: RecurringGrant, end: datetime, fraction: Decimal) -> list[Grant]:
    """The credits a recurring credit makes, as the grant book builds them."""
    return [
        Grant(
            f"credit-{r.index}", CREDIT, "fixed", "usd",
            (AccessSegment(f"s{r.index}", r.access_amount, r.starting_at, r.ending_before, r.rollover_ending_before),),
            rollover_fraction=fraction,
        )
        for r in recurrences(recurring, MONTHLY, CONTRACT_START, end)
    ]


def test_a_monthly_credit_rolls_half_of_what_is_left_into_the_next_month_and_it_burns_first():
    grants = _grants(credit(), t(1, 1, 2027), D("0.5"))
    # October: 300 used, 700 left, 350 rolls into November. November: 600 used, the 350 first,
    # then 250 of November's own 1000; 750 left, 375 rolls into December. December: 100 used,
    # all from the rollover.
    charges = [
        charge("oct", 300, t(10, 10), invoice="oct"),
        charge("nov", 600, t(11, 10), invoice="nov"),
        charge("dec", 100, t(12, 10), invoice="dec"),
    ]
    burn = burn_down(grants, charges, [], {"api": ()}, t(12, 20))
    assert [(a.segment_id, a.amount) for a in burn.applications["nov"]] == [("s0:rollover", D(350)), ("s1", D(250))]
    assert [(a.segment_id, a.amount) for a in burn.applications["dec"]] == [("s1:rollover", D(100))]
    rollover = burn.balance("s0:rollover")
    assert (rollover.starting_at, rollover.ending_before, rollover.starting_amount) == (t(11), t(12), D(350))
    assert burn.grant_balance("credit-1", t(12, 20)) == D(275)  # its rollover segment: 375 - 100
    assert burn.grant_balance("credit-2", t(12, 20)) == D(1000)
    assert [(e.type, e.amount) for e in burn.grant_ledger("credit-0")] == [
        (T.CREDIT_SEGMENT_START, D(1000)),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, D(-300)),
        (T.CREDIT_ROLLOVER, D(-350)),
        (T.CREDIT_EXPIRATION, D(-350)),
        (T.CREDIT_SEGMENT_START, D(350)),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, D(-350)),
    ]


REFUSED = [
    ("a start off the hour", credit(starting_at=datetime(2026, 10, 1, 0, 30, tzinfo=UTC)), "rc[0].starting_at"),
    ("a start before the contract", credit(starting_at=t(9)), "rc[0].starting_at"),
    ("an end before the start", credit(ending_before=t(9, 15)), "rc[0].ending_before"),
    ("a negative access amount", credit(access_amount=D(-1)), "rc[0].access_amount.unit_price"),
    ("a credit with an invoice amount", credit(invoice_amount=D(5)), "rc[0].invoice_amount"),
    ("a duration of no periods", credit(duration=0), "rc[0].commit_duration.value"),
    ("more recurrences than allowed", credit(frequency=RecurrenceFrequency.DAILY, ending_before=t(1, 1, 2031)),
     "rc[0].ending_before"),
]


@pytest.mark.parametrize("recurring, field", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_bad_recurring_grant_is_refused_naming_the_field(recurring, field):
    with pytest.raises(InvalidInput) as refused:
        validate_recurring(recurring, MONTHLY, CONTRACT_START, None, "rc[0]")
    assert refused.value.field == field


def test_an_open_ended_grant_never_makes_more_than_the_limit():
    daily = credit(frequency=RecurrenceFrequency.DAILY)
    made = recurrences(daily, MONTHLY, CONTRACT_START, None, t(1, 1, 2040))
    assert len(made) == MAX_RECURRENCES
