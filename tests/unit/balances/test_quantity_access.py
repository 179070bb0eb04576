"""access_type QUANTITY: a grant whose balance counts units of usage (Grant.by_quantity). A charge
it pays costs it the charge's quantity, and covers the charge's money; short, it covers that part of
the money (rounded once). Its balances are in the null credit type, so money totals leave it out."""

from __future__ import annotations

from decimal import Decimal

from tally.billing.balances import net_balance
from tally.billing.balances.grants import NO_CREDIT_TYPE
from tests.unit.balances.builders import CREDIT, USD, at, charge, grant
from tests.unit.balances.test_burn_down import run

D = Decimal


def test_a_quantity_credit_spends_units_and_covers_their_money():
    # 100 units. 40 calls costing 50: all covered, 40 units spent. 80 calls costing 200: the 60 units
    # left cover 60/80 of it, 150; 50 is left to pay.
    grants = [grant("units", CREDIT, "100", by_quantity=True)]
    burn = run(grants, [charge("a", 50, at(1, 2), quantity=D(40)), charge("b", 200, at(1, 3), quantity=D(80))])
    assert [(a.amount, a.balance_consumed) for a in burn.applications["a"]] == [(D(50), D(40))]
    assert [(a.amount, a.balance_consumed) for a in burn.applications["b"]] == [(D("150.00"), D(60))]
    balance = burn.balance("units/s")
    assert (balance.remaining, balance.credit_type_id) == (0, NO_CREDIT_TYPE)


def test_units_are_not_money_and_a_charge_of_unknown_quantity_is_not_paid_by_units():
    grants = [grant("units", CREDIT, "100", by_quantity=True), grant("cash", CREDIT, "30")]
    burn = run(grants, [charge("a", 20, at(1, 2))])  # no quantity known: only the money credit pays
    assert [(a.segment_id, a.amount) for a in burn.applications["a"]] == [("cash/s", D(20))]
    mid_january = run(grants, [], as_of=at(1, 15))
    assert net_balance(mid_january, credit_type_id=USD) == D(30)  # the 100 units are left out
    assert net_balance(mid_january, credit_type_id=NO_CREDIT_TYPE) == D(100)
