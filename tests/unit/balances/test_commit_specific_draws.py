"""Burn-down under commit-specific overrides: a grant pays for a line at the price the overrides
give its draws, covering list amount at that rate; what it cannot cover stays at list price."""

from __future__ import annotations

import pytest

from tests.unit.balances.builders import COMMIT_RATE, CREDIT, D, PREPAID, at, charge, grant, run

LIST = "LIST_RATE"

CASES = [
    # (grants as (id, kind, balance, rate type), the line's commit prices, expected (segment, covered, consumed))
    ("a commit priced at half the list spends half for the whole line",
     [("c1", PREPAID, "1000", None)], [("c1", LIST, "500")], [("c1/s", D(1000), D(500))]),
    ("a short balance covers its worth at the commit's price, the rest stays at list",
     [("c1", PREPAID, "100", None)], [("c1", LIST, "500")], [("c1/s", D("200.00"), D(100))]),
    ("a price for any commit applies to a commit no override names",
     [("c2", PREPAID, "1000", None)], [(None, LIST, "800")], [("c2/s", D(1000), D(800))]),
    ("a named price wins over the price for any commit",
     [("c1", PREPAID, "1000", None)], [(None, LIST, "800"), ("c1", LIST, "500")], [("c1/s", D(1000), D(500))]),
    ("another commit's price does not apply",
     [("c2", PREPAID, "1000", None)], [("c1", LIST, "500")], [("c2/s", D(1000), D(1000))]),
    ("a credit is a grant like a commit",
     [("cr", CREDIT, "1000", None)], [("cr", LIST, "250")], [("cr/s", D(1000), D(250))]),
    ("a LIST_RATE price does not change what a COMMIT_RATE commit spends",
     [("c1", PREPAID, "1000", COMMIT_RATE)], [("c1", LIST, "500")], [("c1/s", D(1000), D(600))]),
    ("a COMMIT_RATE price does",
     [("c1", PREPAID, "1000", COMMIT_RATE)], [("c1", "COMMIT_RATE", "300")], [("c1/s", D(1000), D(300))]),
    ("a price for a recurring commit applies to a commit it made",
     [("c9", PREPAID, "1000", None, "rc")], [(None, LIST, "800"), ("rc", LIST, "400")], [("c9/s", D(1000), D(400))]),
    ("the commit's own price wins over its maker's",
     [("c9", PREPAID, "1000", None, "rc")], [("rc", LIST, "400"), ("c9", LIST, "300")], [("c9/s", D(1000), D(300))]),
    ("another recurring commit's price does not apply",
     [("c9", PREPAID, "1000", None, "rc2")], [("rc", LIST, "400")], [("c9/s", D(1000), D(1000))]),
    ("a price of zero covers the line without spending, even from an empty balance",
     [("c1", PREPAID, "0", None)], [("c1", LIST, "0")], [("c1/s", D(1000), D(0))]),
]


@pytest.mark.parametrize("grants,commit_prices,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_grant_spends_its_commit_specific_price(grants, commit_prices, expected):
    built = [
        grant(id, kind, balance, **({"rate_type": rate_type} if rate_type else {}), recurring_id=maker)
        for id, kind, balance, rate_type, *made_by in grants
        for maker in [made_by[0] if made_by else None]
    ]
    line = charge("x", "1000", commit="600", commit_prices=tuple((g, t, D(a)) for g, t, a in commit_prices))
    burn = run(built, [line])
    assert [(a.segment_id, a.amount, a.balance_consumed) for a in burn.applications["x"]] == expected


def test_the_invoice_goes_down_by_the_list_amount_covered():
    """The usage line shows list price; the commit's draw takes all of it off the invoice while its
    balance goes down by the overridden price: the customer pays nothing more for that usage."""
    burn = run([grant("c1", PREPAID, "1000")], [charge("x", "1000", commit_prices=(("c1", LIST, D(500)),))], as_of=at(1, 20))
    assert burn.invoice_reduction("x") == D(1000)
    assert burn.balance("c1/s").remaining == D(500)  # before the segment expires at its end
