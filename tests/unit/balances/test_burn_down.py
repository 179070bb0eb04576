"""Burn-down: which segment pays for which charge, the ledger it writes, and the balances it leaves."""

from dataclasses import replace
from datetime import timedelta

import pytest

from tally.billing.balances import (
    AccessSegment,
    BalanceFilter,
    LedgerEntryType as T,
    Specifier,
    net_balance,
    segment_edges,
)
from tests.unit.balances.builders import (
    COMMIT_RATE,
    CREDIT,
    D,
    POSTPAID,
    PREPAID,
    at,
    charge,
    drawn,
    grant,
    manual,
    run,
)

ORDER_CASES = [
    (
        "a credit is used before a paid commit of the same priority",
        [grant("paid", PREPAID, priority=D(1)), grant("free", CREDIT, priority=D(1))],
        [charge("x", 30)],
        {"x": [("free/s", D(30))]},
    ),
    (
        "a complimentary prepaid commit is used before a paid one",
        [grant("paid", PREPAID), grant("comp", PREPAID, paid=False)],
        [charge("x", 30)],
        {"x": [("comp/s", D(30))]},
    ),
    (
        "a lower priority number is used first",
        [grant("two", CREDIT, priority=D(2)), grant("one", PREPAID, priority=D("1.5"))],
        [charge("x", 30)],
        {"x": [("one/s", D(30))]},
    ),
    (
        "a grant with a priority is used before one without",
        [grant("none", CREDIT), grant("nine", PREPAID, priority=D(9))],
        [charge("x", 30)],
        {"x": [("nine/s", D(30))]},
    ),
    (
        "rollover segments burn first",
        [
            grant("old", PREPAID, "100", at(1), at(2), rollover_fraction=D(1), priority=D(5)),
            grant("new", CREDIT, "100", at(2), at(3), priority=D(0)),
        ],
        [charge("x", 30, at(2, 10), invoice="inv-feb")],
        {"x": [("old/s:rollover", D(30))]},
    ),
    (
        "fewest applicable products first",
        [
            grant("all", CREDIT),
            grant("compute", CREDIT, applicable_product_tags=("compute",)),
            grant("api-only", CREDIT, applicable_product_ids=("api",)),
        ],
        [charge("x", 250)],
        {"x": [("api-only/s", D(100)), ("compute/s", D(100)), ("all/s", D(50))]},
    ),
    (
        "earliest expiry first",
        [grant("late", CREDIT, end=at(3)), grant("soon", CREDIT, end=at(2))],
        [charge("x", 30)],
        {"x": [("soon/s", D(30))]},
    ),
    (
        "earliest start first when expiries tie",
        [grant("b-later", CREDIT, start=at(1, 5)), grant("a-earlier", CREDIT, start=at(1, 2))],
        [charge("x", 30)],
        {"x": [("a-earlier/s", D(30))]},
    ),
    (
        "equal ranks fall back to the grant id",
        [grant("b", CREDIT), grant("a", CREDIT)],
        [charge("x", 30)],
        {"x": [("a/s", D(30))]},
    ),
    (
        "a balance never goes below zero and the rest is billed at list",
        [grant("small", CREDIT, "50")],
        [charge("x", 80), charge("y", 10)],
        {"x": [("small/s", D(50))], "y": []},
    ),
    (
        "a charge spills over into the next segment in order",
        [grant("first", CREDIT, "20", priority=D(1)), grant("second", PREPAID, "100", priority=D(2))],
        [charge("x", 50)],
        {"x": [("first/s", D(20)), ("second/s", D(30))]},
    ),
    (
        "usage outside the access window does not consume",
        [grant("jan", CREDIT, start=at(1, 5), end=at(2))],
        [charge("before", 10, at(1, 4, 23)), charge("at-end", 10, at(2)), charge("inside", 10, at(1, 5))],
        {"before": [], "at-end": [], "inside": [("jan/s", D(10))]},
    ),
    (
        "ineligible product does not consume",
        [
            grant("api", CREDIT, applicable_product_ids=("api",)),
            grant("tagged", CREDIT, applicable_product_tags=("premium",)),
        ],
        [charge("storage", 10, product="storage"), charge("gpu", 10, product="gpu")],
        {"storage": [], "gpu": [("tagged/s", D(10))]},
    ),
    (
        "a charge in another credit type does not consume",
        [grant("usd", CREDIT)],
        [charge("x", 10, credit_type_id="cloud-units")],
        {"x": []},
    ),
    (
        "customer-level credit applies to any contract of the customer",
        [grant("customer", CREDIT, contract_id=None)],
        [charge("one", 10, contract="c1"), charge("two", 10, contract="c2", invoice="inv-c2")],
        {"one": [("customer/s", D(10))], "two": [("customer/s", D(10))]},
    ),
    (
        "contract-level commit ignores another contract's usage",
        [grant("c1-commit", PREPAID, contract_id="c1")],
        [charge("other", 10, contract="c2", invoice="inv-c2"), charge("own", 10, contract="c1")],
        {"other": [], "own": [("c1-commit/s", D(10))]},
    ),
    (
        "a specifier matches only when each part it names matches",
        [
            grant(
                "us-api",
                CREDIT,
                specifiers=(Specifier(product_id="api", pricing_group_values={"region": "us"}),),
            )
        ],
        [
            charge("us", 10, pricing_group_values={"region": "us"}),
            charge("eu", 10, pricing_group_values={"region": "eu"}),
            charge("no-group", 10),
            charge("gpu-us", 10, product="gpu", pricing_group_values={"region": "us"}),
        ],
        {"us": [("us-api/s", D(10))], "eu": [], "no-group": [], "gpu-us": []},
    ),
    (
        "a specifier's tags must all be on the product",
        [grant("premium-compute", CREDIT, specifiers=(Specifier(product_tags=("compute", "premium")),))],
        [charge("api", 10), charge("gpu", 10, product="gpu")],
        {"api": [], "gpu": [("premium-compute/s", D(10))]},
    ),
    (
        "charges draw in time order, so the earlier one is covered first",
        [grant("small", CREDIT, "15")],
        [charge("late", 10, at(1, 20)), charge("early", 10, at(1, 3))],
        {"early": [("small/s", D(10))], "late": [("small/s", D(5))]},
    ),
    (
        "a zero or negative charge draws nothing",
        [grant("c", CREDIT)],
        [charge("refund", -10), charge("free", 0)],
        {"refund": [], "free": []},
    ),
]


@pytest.mark.parametrize("grants,charges,expected", [c[1:] for c in ORDER_CASES], ids=[c[0] for c in ORDER_CASES])
def test_burn_order(grants, charges, expected):
    burn = run(grants, charges)
    assert {key: drawn(burn, key) for key in expected} == expected


COMMIT_RATE_CASES = [
    # (balance, charges as (list, commit), expected per charge as (covered, consumed))
    ("a whole charge costs its commit amount", "200", [("100", "80")], [("100", "80")]),
    ("a short balance is spent whole and covers its list worth", "40", [("100", "80")], [("50.00", "40")]),
    ("a commit rate above list costs more than list", "300", [("100", "125")], [("100", "125")]),
    ("a non-terminating ratio rounds the covered amount once", "1", [("3", "7")], [("0.43", "1")]),
    ("without a commit amount the list amount is drawn", "200", [("100", None)], [("100", "100")]),
]


@pytest.mark.parametrize(
    "balance,lines,expected", [c[1:] for c in COMMIT_RATE_CASES], ids=[c[0] for c in COMMIT_RATE_CASES]
)
def test_commit_rate_draws_at_the_commit_rate(balance, lines, expected):
    grants = [grant("cr", PREPAID, balance, rate_type=COMMIT_RATE)]
    charges = [charge(f"x{n}", amount, at(1, 2 + n), commit=commit) for n, (amount, commit) in enumerate(lines)]
    burn = run(grants, charges)
    got = [(a.amount, a.balance_consumed) for n in range(len(lines)) for a in burn.applications[f"x{n}"]]
    assert got == [(D(covered), D(consumed)) for covered, consumed in expected]


def test_a_charge_free_at_the_commit_rate_is_covered_even_once_the_balance_is_spent():
    """Found by the finalization property: a line whose commit rate is 0 takes nothing, so whether
    it is covered must not depend on whether another invoice drew (or was finalized) first."""
    grants = [grant("cr", PREPAID, "0.01", rate_type=COMMIT_RATE)]
    spend = charge("a-spend", "0.01", at(1, 2), invoice="i-final")
    free = charge("z-free", "0.01", at(1, 2), invoice="i-draft", commit="0.00")
    draft = run(grants, [spend, free])
    finalized = run(grants, [replace(spend, applications=draft.applications["a-spend"], finalized=True), free])
    for burn in (draft, finalized):
        assert [(a.amount, a.balance_consumed) for a in burn.applications["z-free"]] == [(D("0.01"), D("0.00"))]
        assert burn.balance("cr/s").remaining == 0


def test_commit_rate_after_a_partial_list_rate_cover_prices_only_the_uncovered_part():
    grants = [grant("credit", CREDIT, "30"), grant("cr", PREPAID, "1000", rate_type=COMMIT_RATE)]
    burn = run(grants, [charge("x", 100, commit=80)])
    assert [(a.segment_id, a.amount, a.balance_consumed) for a in burn.applications["x"]] == [
        ("credit/s", D(30), D(30)),
        ("cr/s", D(70), D("56.00")),  # 70 of list at 80/100
    ]


def test_list_rate_commit_ignores_the_commit_amount():
    burn = run([grant("list", PREPAID, "1000")], [charge("x", 100, commit=80)])
    assert [(a.amount, a.balance_consumed) for a in burn.applications["x"]] == [(D(100), D(100))]


def test_prepaid_and_credit_applications_reduce_the_invoice():
    burn = run([grant("credit", CREDIT, "30"), grant("paid", PREPAID, "50")], [charge("x", 100)])
    assert burn.invoice_reduction("x") == D(80)


def test_postpaid_consumption_does_not_reduce_the_invoice_and_the_shortfall_is_trued_up():
    post = grant("post", POSTPAID, "100", at(1), at(2))
    burn = run([post], [charge("x", 30, finalized=True)], as_of=at(3))
    [application] = burn.applications["x"]
    assert (application.amount, application.balance_consumed, application.reduces_total) == (D(30), D(30), False)
    assert burn.invoice_reduction("x") == 0
    assert [(e.type, e.amount, e.timestamp) for e in burn.ledger] == [
        (T.POSTPAID_COMMIT_INITIAL_BALANCE, D(100), at(1)),
        (T.POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION, D(-30), at(1, 10)),
        (T.POSTPAID_COMMIT_TRUEUP, D(-70), at(2)),
    ]
    assert [(t.segment_id, t.invoice_item_id, t.timestamp, t.amount) for t in burn.true_ups] == [
        ("post/s", "post/i", at(2), D(70))
    ]


def test_a_postpaid_commit_used_up_trues_up_nothing():
    burn = run([grant("post", POSTPAID, "100")], [charge("x", 130)], as_of=at(3))
    assert drawn(burn, "x") == [("post/s", D(100))]
    assert [t.amount for t in burn.true_ups] == [D(0)]
    assert T.POSTPAID_COMMIT_TRUEUP not in [e.type for e in burn.ledger]


def test_no_true_up_before_its_invoice_date():
    post = grant("post", POSTPAID, "100", at(1), at(2))
    burn = run([post], [charge("x", 30)], as_of=at(1, 31))
    assert burn.true_ups == ()
    assert burn.balance("post/s").remaining == D(70)


def test_postpaid_rollover_is_part_of_the_shortfall_and_then_reduces_invoices():
    post = grant("post", POSTPAID, "100", at(1), at(2), rollover_fraction=D("0.5"))
    burn = run([post], [charge("jan", 40), charge("feb", 10, at(2, 3), invoice="inv-feb")], as_of=at(4))
    assert [t.amount for t in burn.true_ups] == [D(60)]  # 100 committed, 40 used
    assert drawn(burn, "feb") == [("post/s:rollover", D(10))]
    assert burn.applications["feb"][0].reduces_total  # the rolled-over part was paid by the true-up
    assert [(e.segment_id, e.type, e.amount) for e in burn.ledger if e.timestamp >= at(2)] == [
        ("post/s", T.POSTPAID_COMMIT_ROLLOVER, D("-30.00")),
        ("post/s", T.POSTPAID_COMMIT_TRUEUP, D("-30.00")),
        ("post/s:rollover", T.POSTPAID_COMMIT_INITIAL_BALANCE, D("30.00")),
        ("post/s:rollover", T.POSTPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION, D(-10)),
        ("post/s:rollover", T.POSTPAID_COMMIT_EXPIRATION, D("-20.00")),
    ]


def test_expiration_entry_for_the_unused_remainder():
    burn = run([grant("c", CREDIT, "100")], [charge("x", 30)], as_of=at(2))
    assert [(e.type, e.amount, e.timestamp) for e in burn.ledger] == [
        (T.CREDIT_SEGMENT_START, D(100), at(1)),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, D(-30), at(1, 10)),
        (T.CREDIT_EXPIRATION, D(-70), at(2)),
    ]
    assert burn.balance("c/s").remaining == 0


def test_rollover_fraction_moves_part_of_the_remainder():
    burn = run([grant("p", PREPAID, "100", rollover_fraction=D("0.25"))], [charge("x", 30)], as_of=at(2))
    assert [(e.segment_id, e.type, e.amount, e.timestamp) for e in burn.ledger if e.timestamp == at(2)] == [
        ("p/s", T.PREPAID_COMMIT_ROLLOVER, D("-17.50"), at(2)),
        ("p/s", T.PREPAID_COMMIT_EXPIRATION, D("-52.50"), at(2)),
        ("p/s:rollover", T.PREPAID_COMMIT_SEGMENT_START, D("17.50"), at(2)),
    ]
    rolled = burn.balance("p/s:rollover")
    assert (rolled.starting_at, rolled.ending_before, rolled.remaining, rolled.rolled_over_from) == (
        at(2), at(2) + (at(2) - at(1)), D("17.50"), "p/s"
    )


def test_a_rolled_amount_is_cut_down_to_the_credit_types_precision():
    burn = run([grant("p", PREPAID, "0.05", rollover_fraction=D("0.5"))], as_of=at(2))
    assert burn.balance("p/s:rollover").starting_amount == D("0.02")
    assert burn.balance("p/s").remaining == 0


def test_a_rollover_segment_expires_at_its_end_and_does_not_roll_again():
    burn = run([grant("p", PREPAID, "100", rollover_fraction=D(1))], as_of=at(6))
    assert [(e.segment_id, e.type, e.amount) for e in burn.ledger] == [
        ("p/s", T.PREPAID_COMMIT_SEGMENT_START, D(100)),
        ("p/s", T.PREPAID_COMMIT_ROLLOVER, D("-100.00")),
        ("p/s:rollover", T.PREPAID_COMMIT_SEGMENT_START, D("100.00")),
        ("p/s:rollover", T.PREPAID_COMMIT_EXPIRATION, D("-100.00")),
    ]


def test_usage_at_a_segment_end_draws_from_the_rollover_it_opens():
    burn = run([grant("p", PREPAID, "100", rollover_fraction=D(1))], [charge("x", 10, at(2), invoice="inv-feb")])
    assert drawn(burn, "x") == [("p/s:rollover", D(10))]


def test_entries_exist_only_up_to_as_of():
    grants = [grant("jan", CREDIT, "100", at(1), at(2)), grant("feb", CREDIT, "100", at(2), at(3))]
    burn = run(grants, [charge("x", 10), charge("later", 10, at(2, 5))], as_of=at(1, 20))
    assert [(e.segment_id, e.type) for e in burn.ledger] == [
        ("jan/s", T.CREDIT_SEGMENT_START),
        ("jan/s", T.CREDIT_AUTOMATED_INVOICE_DEDUCTION),
    ]
    assert "later" not in burn.applications
    assert burn.balance("feb/s").remaining == 0


def test_deductions_are_one_entry_per_segment_and_invoice_dated_at_the_last_charge():
    charges = [
        charge("a", 10, at(1, 3)),
        charge("b", 15, at(1, 9)),
        charge("c", 5, at(1, 4), invoice="inv-other", contract="c2", finalized=True),
    ]
    burn = run([grant("c", CREDIT)], charges, as_of=at(1, 20))
    deductions = [(e.invoice_id, e.amount, e.timestamp, e.pending, e.contract_id) for e in burn.ledger[1:]]
    assert deductions == [("inv-other", D(-5), at(1, 4), False, "c2"), ("inv-jan", D(-25), at(1, 9), True, "c1")]


def test_net_balance_counts_draft_deductions_only_when_asked():
    grants = [grant("c", CREDIT, "100"), grant("later", CREDIT, "50", at(3), at(4))]
    charges = [charge("final", 10, finalized=True, invoice="inv-dec"), charge("draft", 25, at(1, 12))]
    burn = run(grants, charges, as_of=at(1, 20))
    assert net_balance(burn, include_drafts=True) == D(65)
    assert net_balance(burn, include_drafts=False) == D(90)
    assert net_balance(burn, credit_type_id="cloud-units") == 0
    assert burn.balance("c/s").pending_deductions == D(25)


def test_net_balance_counts_every_kind_postpaid_too_or_only_the_grants_named():
    grants = [grant("c", CREDIT, "100"), grant("pre", PREPAID, "200", priority=D(2)), grant("post", POSTPAID, "1000", priority=D(3))]
    burn = run(grants, [charge("x", 150, at(1, 10))], as_of=at(1, 20))
    # The credit pays 100, the prepaid commit 50; the postpaid commit still covers its 1000.
    assert net_balance(burn) == D(1150)
    assert net_balance(burn, grant_ids={"pre", "c"}) == D(150)
    assert net_balance(burn, grant_ids=set()) == 0


@pytest.mark.parametrize(
    "balance_filter, matched",
    [
        (BalanceFilter(), {"c", "pre", "post"}),
        (BalanceFilter(kinds=frozenset({PREPAID, CREDIT})), {"c", "pre"}),
        (BalanceFilter(ids=frozenset({"post"})), {"post"}),
        (BalanceFilter(custom_fields={"campaign": "launch"}), {"pre"}),
        (BalanceFilter(kinds=frozenset({CREDIT}), custom_fields={"campaign": "launch"}), set()),
    ],
    ids=["no condition takes every grant", "by kind", "by id", "by custom field", "conditions are AND'd"],
)
def test_a_balance_filter_matches_a_grant_when_every_condition_holds(balance_filter, matched):
    grants = {"c": (CREDIT, {}), "pre": (PREPAID, {"campaign": "launch", "tier": "gold"}), "post": (POSTPAID, {"campaign": "x"})}
    assert {g for g, (kind, fields) in grants.items() if balance_filter.matches(g, kind, fields)} == matched


def test_a_grants_balance_counts_only_its_segments_active_at_the_instant_and_its_ledger_is_its_own():
    split = (AccessSegment("s/jan", D(100), at(1), at(2)), AccessSegment("s/feb", D(40), at(2), at(3)))
    grants = [grant("s", CREDIT, segments=split, priority=D(1)), grant("o", CREDIT, "10", priority=D(2))]
    burn = run(grants, [charge("x", 30, at(1, 10))], as_of=at(2, 20))
    # January's segment paid the 30 and expired with 70 left; February's 40 is whole.
    assert burn.grant_balance("s") == D(40)
    assert burn.grant_balance("s", at(1, 20)) == 0  # what January's segment holds as of the run: it expired
    assert burn.grant_balance("s", at(3, 5)) == 0
    assert burn.grant_balance("o") == 0  # ended with January
    assert [(e.type, e.amount) for e in burn.grant_ledger("s")] == [
        (T.CREDIT_SEGMENT_START, D(100)), (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, D(-30)), (T.CREDIT_EXPIRATION, D(-70)),
        (T.CREDIT_SEGMENT_START, D(40))]
    assert {e.grant_id for e in burn.grant_ledger("o")} == {"o"}


def test_a_positive_manual_entry_adds_to_the_balance():
    burn = run([grant("c", CREDIT, "10")], [charge("x", 30, at(1, 10))], [manual("c", 15, at(1, 5))])
    assert drawn(burn, "x") == [("c/s", D(25))]
    assert [(e.type, e.amount, e.reason) for e in burn.ledger if e.type is T.CREDIT_MANUAL] == [
        (T.CREDIT_MANUAL, D(15), "goodwill")
    ]


def test_a_manual_entry_starved_by_late_usage_takes_only_what_is_left():
    burn = run([grant("c", CREDIT, "10")], [charge("late-usage", 8, at(1, 2))], [manual("c", -5, at(1, 5))])
    assert [e.amount for e in burn.ledger if e.type is T.CREDIT_MANUAL] == [D(-2)]
    assert burn.unapplied_manual == D(3)
    assert burn.balance("c/s").remaining == 0


def test_segment_edges_include_where_a_rollover_segment_would_end():
    grants = [
        grant("p", PREPAID, segments=(AccessSegment("a", D(1), at(1), at(2)), AccessSegment("b", D(1), at(3), at(4)))),
        grant("r", CREDIT, start=at(5), end=at(5, 11), rollover_fraction=D("0.5")),
    ]
    assert segment_edges(grants) == frozenset({at(1), at(2), at(3), at(4), at(5), at(5, 11), at(5, 21)})


def test_the_same_inputs_in_another_order_give_the_same_burn_down():
    grants = [grant("a", CREDIT, "40"), grant("b", PREPAID, "60", rollover_fraction=D("0.5")), grant("p", POSTPAID)]
    charges = [charge(f"k{n}", 7 + n, at(1, 1 + n)) for n in range(12)]
    entries = [manual("a", 5, at(1, 3)), manual("b", -3, at(1, 3))]
    forward = run(grants, charges, entries, as_of=at(3))
    backward = run(grants[::-1], charges[::-1], entries[::-1], as_of=at(3))
    assert forward == backward


def test_a_segment_id_used_twice_is_refused():
    with pytest.raises(ValueError):
        run([grant("a", CREDIT, segments=(AccessSegment("s", D(1), at(1), at(2)),)),
             grant("b", CREDIT, segments=(AccessSegment("s", D(1), at(3), at(4)),))])


def test_rollover_segment_windows_keep_the_parent_length():
    parent = AccessSegment("s", D(1), at(1), at(1) + timedelta(hours=5))
    child = parent.rolled_over(D(1))
    assert (child.id, child.starting_at, child.ending_before) == ("s:rollover", parent.ending_before, at(1, 1, 10))


def test_a_deduction_is_dated_at_its_last_charge_so_a_replay_never_dips_below_zero():
    charges = [charge("a", 10, at(1, 3)), charge("b", 10, at(1, 7))]
    burn = run([grant("c", CREDIT, "10")], charges, [manual("c", 10, at(1, 5))])
    assert [(e.type, e.amount, e.timestamp) for e in burn.ledger if e.timestamp < at(2)] == [
        (T.CREDIT_SEGMENT_START, D(10), at(1)),
        (T.CREDIT_MANUAL, D(10), at(1, 5)),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, D(-20), at(1, 7)),
    ]


def test_postpaid_rollover_burns_before_prepaid_rollover():
    grants = [
        grant("a-pre", PREPAID, "100", rollover_fraction=D(1)),
        grant("b-post", POSTPAID, "100", rollover_fraction=D(1)),
    ]
    burn = run(grants, [charge("x", 10, at(2, 2), invoice="inv-feb")])
    assert drawn(burn, "x") == [("b-post/s:rollover", D(10))]


def test_a_zero_commit_rate_covers_the_line_without_drawing():
    burn = run([grant("cr", PREPAID, "10", rate_type=COMMIT_RATE)], [charge("x", 100, commit=0)], as_of=at(1, 20))
    assert [(a.amount, a.balance_consumed) for a in burn.applications["x"]] == [(D(100), D(0))]
    assert burn.balance("cr/s").remaining == D(10)
