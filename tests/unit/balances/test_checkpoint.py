"""Burn-down checkpoints: a run resumed from the state before an instant T answers what a run from
scratch answers, as long as the past before T is unchanged; a changed past is refused (`resumable`).

Random grants, charges and manual entries (test_properties' scenarios): every charge before T is
frozen with what a first run gave it (some voided), some after T too, then the run from scratch and
the run resumed from `checkpoint_burn(.., T)` are compared."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.billing.balances import InvoiceItem, ManualEntry, burn_down, checkpoint_burn, resumable
from tests.unit.balances.builders import CATALOG
from tests.unit.balances.test_properties import START, scenarios

DAY = timedelta(days=1)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def histories(draw):
    grant_list, charges, entries, as_of = draw(scenarios())
    at = START + draw(st.integers(0, int((as_of - START) / DAY))) * DAY
    first = burn_down(grant_list, charges, entries, CATALOG, as_of)
    frozen = []
    for c in charges:
        settled = c.starting_at < at or (c.invoice_id == "i-final" and draw(st.booleans()))
        if settled and c.key in first.applications:
            c = replace(c, applications=first.applications[c.key], finalized=True, voided=draw(st.booleans()) and c.starting_at < at)
        elif c.starting_at < at:
            c = replace(c, applications=(), finalized=True)  # after as_of in the first run: drew nothing
        frozen.append(c)
    return grant_list, frozen, entries, as_of, at


def _answers(burn, keys):
    return (
        {k: burn.applications.get(k) for k in keys},
        burn.balances,
        burn.true_ups,
        burn.unapplied_manual,
        burn.unapplied_frozen,
    )


@SETTINGS
@given(histories())
def test_a_run_resumed_from_a_checkpoint_answers_what_a_run_from_scratch_answers(history):
    grant_list, charges, entries, as_of, at = history
    checkpoint = checkpoint_burn(grant_list, charges, entries, CATALOG, at)
    later = [c for c in charges if c.starting_at >= at]
    assert resumable(checkpoint, grant_list, later, entries)
    whole = burn_down(grant_list, charges, entries, CATALOG, as_of)
    resumed = burn_down(grant_list, later, entries, CATALOG, as_of, resume=checkpoint)
    keys = [c.key for c in later]
    assert _answers(resumed, keys) == _answers(whole, keys)
    assert [e for e in resumed.ledger if e.invoice_id is None] == [
        e for e in whole.ledger if e.invoice_id is None and e.timestamp >= at
    ]


@SETTINGS
@given(histories(), st.data())
def test_a_changed_past_is_refused(history, data):
    grant_list, charges, entries, as_of, at = history
    checkpoint = checkpoint_burn(grant_list, charges, entries, CATALOG, at)
    later = [c for c in charges if c.starting_at >= at]
    early = [(g, s) for g in grant_list for s in g.access_schedule if s.starting_at < at]
    if early:
        grant, segment = data.draw(st.sampled_from(early))
        # A manual entry dated before T, or the segment's amount edited: both change what T holds.
        entry = ManualEntry(grant.id, segment.id, Decimal("1.00"), segment.starting_at, "backdated")
        assert not resumable(checkpoint, grant_list, later, [*entries, entry])
        edited = replace(grant, access_schedule=tuple(
            replace(s, amount=s.amount + 1) if s.id == segment.id else s for s in grant.access_schedule))
        assert not resumable(checkpoint, [edited if g.id == grant.id else g for g in grant_list], later, entries)
    # A commit bought later, billed before T (a purchase invoice in a period before it), is refused too.
    bought = replace(grant_list[0], id="bought", access_schedule=(), invoice_schedule=(InvoiceItem("buy", at - DAY, Decimal(5)),))
    assert not resumable(checkpoint, [*grant_list, bought], later, entries)
    drafts = [c for c in charges if c.starting_at < at and c.amount > 0]
    if drafts:
        assert not resumable(checkpoint, grant_list, later + drafts[:1], entries)


def test_a_draft_charge_before_the_instant_cannot_be_checkpointed():
    from tests.unit.balances.builders import at as instant, charge, grant

    try:
        checkpoint_burn([grant("g")], [charge("k", "5", instant(1, 3))], [], CATALOG, instant(1, 10))
    except ValueError:
        return
    raise AssertionError("a draft charge before the checkpoint was accepted")
