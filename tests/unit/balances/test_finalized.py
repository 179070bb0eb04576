"""Finalized invoices in the burn-down: frozen drawdowns, the reserve that protects them, voids.

A finalized invoice's charges carry the applications they were finalized with. Whatever changes
afterwards (late usage on drafts, re-rated drafts, manual entries, new grants, a later as_of), those
applications and the invoice's ledger entries stay exactly as they were, and no segment is overdrawn.
"""

from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.billing.balances import (
    AccessSegment,
    Application,
    Charge,
    Grant,
    GrantKind,
    LedgerEntryType as T,
    ManualEntry,
    burn_down,
    check_manual_entry,
)
from tally.billing.errors import InvalidInput
from tests.unit.balances.builders import CATALOG, CREDIT, D, POSTPAID, PREPAID, at, charge, grant, manual, run
from tests.unit.balances.test_properties import CONTRACT_OF, PRODUCTS, SETTINGS, START, cents, scenarios

DAY = timedelta(days=1)


def freeze(charges: list[Charge], burn, invoices: set[str]) -> list[Charge]:
    """The charges of `invoices` finalized with the applications `burn` gave them."""
    return [
        replace(c, applications=burn.applications[c.key], finalized=True)
        if c.invoice_id in invoices and c.key in burn.applications
        else c
        for c in charges
    ]


def entries_of(burn, invoices: set[str]) -> list:
    return [e for e in burn.ledger if e.invoice_id in invoices]


def assert_consistent(burn) -> None:
    """Every replay of the ledger in time order stays at or above zero, and each balance is the sum
    of its entries; no finalized drawdown went missing."""
    running: dict[str, Decimal] = defaultdict(Decimal)
    for entry in burn.ledger:
        running[entry.segment_id] += entry.amount
        assert running[entry.segment_id] >= 0, entry
    assert all(b.remaining == running[b.segment_id] for b in burn.balances)
    assert all(b.remaining >= 0 for b in burn.balances)
    assert burn.unapplied_frozen == 0


finalized_sets = st.sets(st.sampled_from(sorted(CONTRACT_OF)), min_size=1)


@SETTINGS
@given(scenarios(), finalized_sets)
def test_finalizing_changes_no_answer_while_nothing_else_changes(scenario, finalized):
    grants, charges, entries, as_of = scenario
    before = burn_down(grants, charges, entries, CATALOG, as_of)
    after = burn_down(grants, freeze(charges, before, finalized), entries, CATALOG, as_of)
    assert after.applications == before.applications
    assert [(b.segment_id, b.remaining) for b in after.balances] == [(b.segment_id, b.remaining) for b in before.balances]
    assert after.unapplied_manual == before.unapplied_manual
    assert [replace(e, pending=False) for e in after.ledger] == [replace(e, pending=False) for e in before.ledger]
    assert not any(e.pending for e in entries_of(after, finalized))
    assert_consistent(after)


@st.composite
def later_changes(draw, scenario, finalized: set[str]):
    """Drafts re-rated, dropped or added anywhere in time (late events), new manual entries on any
    segment, a new grant, and a later as_of."""
    grants, charges, entries, as_of = scenario
    drafts = []
    for c in charges:
        if c.invoice_id in finalized:
            continue
        change = draw(st.sampled_from(["keep", "keep", "re-rate", "drop"]))
        if change == "re-rate":
            c = replace(c, amount=draw(cents), commit_amount=draw(st.one_of(st.none(), cents)))
        if change != "drop":
            drafts.append(c)
    open_invoices = sorted({*CONTRACT_OF, "i-late"} - finalized)
    for n in range(draw(st.integers(0, 6))):
        invoice = draw(st.sampled_from(open_invoices))
        drafts.append(
            charge(
                f"late{n}",
                draw(cents),
                START + draw(st.integers(0, 35)) * DAY + draw(st.sampled_from([0, 6])) * timedelta(hours=1),
                product=draw(st.sampled_from(PRODUCTS)),
                contract=CONTRACT_OF.get(invoice, "c1"),
                invoice=invoice,
                commit=draw(st.one_of(st.none(), cents)),
            )
        )
    new_grants = []
    if draw(st.booleans()):
        days = sorted(draw(st.sets(st.integers(0, 30), min_size=2, max_size=2)))
        new_grants.append(
            Grant("new", draw(st.sampled_from([GrantKind.CREDIT, GrantKind.PREPAID])), "fixed", "usd",
                  (AccessSegment("new/s", draw(cents), START + days[0] * DAY, START + days[1] * DAY),),
                  priority=Decimal(0))
        )
    new_entries = []
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(grants + new_grants))
        segment = draw(st.sampled_from(target.access_schedule))
        hours = int((segment.ending_before - segment.starting_at) / timedelta(hours=1))
        new_entries.append(
            ManualEntry(target.id, segment.id, Decimal(draw(st.integers(-3000, 2000))).scaleb(-2),
                        segment.starting_at + draw(st.integers(0, hours - 1)) * timedelta(hours=1), "later")
        )
    later_as_of = as_of + draw(st.sampled_from([0, 5, 30])) * DAY
    return grants + new_grants, drafts, entries + new_entries, later_as_of


@SETTINGS
@given(scenarios(), finalized_sets, st.data())
def test_a_finalized_invoice_keeps_its_drawdowns_and_ledger_entries_whatever_comes_later(scenario, finalized, data):
    grants, charges, entries, as_of = scenario
    first = burn_down(grants, charges, entries, CATALOG, as_of)
    frozen = [c for c in freeze(charges, first, finalized) if c.frozen]
    at_finalization = burn_down(grants, frozen + [c for c in charges if not c.frozen and c.invoice_id not in finalized],
                                entries, CATALOG, as_of)

    later_grants, drafts, later_entries, later_as_of = data.draw(later_changes(scenario, finalized))
    later = burn_down(later_grants, frozen + drafts, later_entries, CATALOG, later_as_of)

    assert {c.key: later.applications[c.key] for c in frozen} == {c.key: c.applications for c in frozen}
    assert entries_of(later, finalized) == entries_of(at_finalization, finalized)
    assert_consistent(later)


@SETTINGS
@given(scenarios(), finalized_sets, st.data())
def test_voiding_an_invoice_is_as_if_its_charges_were_never_drawn_but_the_ledger_shows_the_reversal(
    scenario, finalized, data
):
    grants, charges, entries, as_of = scenario
    first = burn_down(grants, charges, entries, CATALOG, as_of)
    charges = freeze(charges, first, finalized)
    voided = data.draw(st.sampled_from(sorted(finalized)))
    with_void = [replace(c, voided=True) if c.invoice_id == voided and c.frozen else c for c in charges]
    without = [c for c in charges if not (c.invoice_id == voided and c.frozen)]

    burn = burn_down(grants, with_void, entries, CATALOG, as_of)
    absent = burn_down(grants, without, entries, CATALOG, as_of)

    assert {k: v for k, v in burn.applications.items() if k in absent.applications} == dict(absent.applications)
    assert [(b.segment_id, b.remaining) for b in burn.balances] == [(b.segment_id, b.remaining) for b in absent.balances]
    reversal = entries_of(burn, {voided})
    net: dict[str, Decimal] = defaultdict(Decimal)
    for entry in reversal:
        assert entry.type in (
            T.PREPAID_COMMIT_AUTOMATED_INVOICE_DEDUCTION, T.PREPAID_COMMIT_CANCELED,
            T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, T.CREDIT_CANCELED,
        )
        net[entry.segment_id] += entry.amount
    assert all(amount == 0 for amount in net.values())
    assert [e for e in burn.ledger if e.invoice_id != voided] == [e for e in absent.ledger if e.invoice_id != voided]
    assert_consistent(burn)


# --- the cases, worked by hand -----------------------------------------------------------------------


def finalized_at(grants, charges, invoices, as_of=at(12, 31), entries=()):
    """Charges of `invoices` frozen with the applications they get from these inputs."""
    return freeze(list(charges), run(grants, charges, entries, as_of), set(invoices))


def test_a_late_draft_before_a_finalized_draw_cannot_take_its_money():
    credit = [grant("c", CREDIT, "100")]
    finalized = finalized_at(credit, [charge("later", 60, at(1, 20), contract="c2", invoice="inv-c2")], ["inv-c2"])
    # A late event lands on contract c1 on Jan 10, before c2's finalized draw of Jan 20.
    burn = run(credit, finalized + [charge("late", 80, at(1, 10))])
    assert burn.applications["later"] == finalized[0].applications
    assert [(a.segment_id, a.amount) for a in burn.applications["late"]] == [("c/s", D(40))]
    assert burn.balance("c/s").remaining == 0


def test_a_segment_keeps_what_its_rollover_must_hand_to_finalized_draws():
    rolling = [grant("p", PREPAID, "100", paid=False, rollover_fraction=D("0.5"))]
    # February's invoice was finalized drawing 30 from the rollover (half of the 60 left in January).
    january = charge("jan", 40, at(1, 10))
    finalized = finalized_at(rolling, [january, charge("feb", 30, at(2, 3), invoice="inv-feb")], ["inv-feb"])
    assert [(a.segment_id, a.amount) for a in finalized[1].applications] == [("p/s:rollover", D(30))]
    # January's usage grows from 40 to 90: only 40 more can be drawn, so that 60 × 0.5 = 30 rolls over.
    burn = run(rolling, [replace(january, amount=D(90)), finalized[1]])
    assert [(a.segment_id, a.amount) for a in burn.applications["jan"]] == [("p/s", D(40))]
    assert burn.applications["feb"] == finalized[1].applications
    assert burn.balance("p/s:rollover").starting_amount == D(30)


def test_a_negative_manual_entry_cannot_take_money_a_finalized_invoice_drew():
    credit = [grant("c", CREDIT, "100")]
    finalized = finalized_at(credit, [charge("x", 70, at(1, 20))], ["inv-jan"])
    burn = run(credit, finalized, [manual("c", -50, at(1, 5))])
    assert burn.unapplied_manual == D(20)  # only 30 was not promised to the finalized invoice
    assert burn.balance("c/s").remaining == 0
    with pytest.raises(InvalidInput) as refused:
        check_manual_entry(manual("c", -50, at(1, 5)), credit, finalized, [], CATALOG)
    assert refused.value.field == "amount"


def test_a_positive_manual_entry_before_a_finalized_draw_is_counted_in_the_reserve():
    credit = [grant("c", CREDIT, "100")]
    entries = [manual("c", 50, at(1, 10))]
    charges = [charge("early", 100, at(1, 5), invoice="inv-a"), charge("late", 50, at(1, 20), invoice="inv-b")]
    finalized = finalized_at(credit, charges, ["inv-b"], entries=entries)
    burn = run(credit, finalized, entries)
    assert [(a.segment_id, a.amount) for a in burn.applications["early"]] == [("c/s", D(100))]


def test_a_voided_invoice_draws_nothing_and_its_ledger_shows_the_reversal():
    credit = [grant("c", CREDIT, "100")]
    finalized = finalized_at(credit, [charge("x", 30, at(1, 10))], ["inv-jan"])
    burn = run(credit, [replace(finalized[0], voided=True)], as_of=at(1, 20))
    assert [(e.type, e.amount, e.timestamp, e.invoice_id) for e in burn.ledger] == [
        (T.CREDIT_SEGMENT_START, D(100), at(1), None),
        (T.CREDIT_CANCELED, D(30), at(1, 10), "inv-jan"),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, D(-30), at(1, 10), "inv-jan"),
    ]
    assert burn.balance("c/s").remaining == D(100)
    assert burn.applications["x"] == ()


def test_a_voided_postpaid_drawdown_simply_disappears():
    postpaid = [grant("pp", POSTPAID, "100")]
    finalized = finalized_at(postpaid, [charge("x", 30, at(1, 10))], ["inv-jan"])
    burn = run(postpaid, [replace(finalized[0], voided=True)], as_of=at(1, 20))
    assert [e.type for e in burn.ledger] == [T.POSTPAID_COMMIT_INITIAL_BALANCE]


def test_finalized_deductions_are_not_pending_and_segment_ends_wait_for_settlement():
    credit = [grant("c", CREDIT, "100")]
    finalized = finalized_at(credit, [charge("x", 30, at(1, 10))], ["inv-jan"])
    charges = finalized + [charge("y", 10, at(1, 11), invoice="inv-other", contract="c2")]

    def kinds(burn):
        return [(e.type, e.invoice_id, e.pending) for e in burn.ledger if e.type is not T.CREDIT_SEGMENT_START]

    def settled(segments):
        return burn_down(credit, charges, (), CATALOG, at(12, 31), settled_segments=segments)

    assert kinds(settled(set())) == [
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, "inv-jan", False),
        (T.CREDIT_AUTOMATED_INVOICE_DEDUCTION, "inv-other", True),
        (T.CREDIT_EXPIRATION, None, True),  # inv-other may still change what expires
    ]
    assert kinds(settled({"c/s"}))[-1] == (T.CREDIT_EXPIRATION, None, False)
    assert kinds(run(credit, charges))[-1] == (T.CREDIT_EXPIRATION, None, False)  # not tracked: as before


def test_a_finalized_draw_whose_segment_was_cut_away_is_reported_not_overdrawn():
    credit = [grant("c", CREDIT, "100")]
    finalized = finalized_at(credit, [charge("x", 30, at(1, 20))], ["inv-jan"])
    cut = [grant("c", CREDIT, "100", at(1), at(1, 15))]  # the access schedule now ends on Jan 15
    burn = run(cut, finalized)
    assert burn.unapplied_frozen == D(30)
    assert burn.balance("c/s").remaining == 0  # expired on Jan 15, never below zero


def test_applications_carry_what_finalization_needs():
    application = Application("g", "g/s", GrantKind.CREDIT, D(5), D(5), True)
    assert replace(charge("x", 5), applications=(application,)).frozen
