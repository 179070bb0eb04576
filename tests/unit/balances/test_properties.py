"""Properties of burn-down over random grants, charges and manual entries.

The checks re-derive what they need from the documented rules (eligibility, burn order) rather than
from the engine's own helpers, so a mistake there shows up here.
"""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally.billing.balances import (
    AccessSegment,
    CommitRateType,
    Grant,
    GrantKind,
    InvoiceItem,
    ManualEntry,
    burn_down,
    net_balance,
)
from tests.unit.balances.builders import CATALOG, at, charge

START = at(1)
DAY = timedelta(days=1)
CONTRACT_OF = {"i-final": "c1", "i-draft": "c1", "i-other": "c2"}
PRODUCTS = sorted(CATALOG)
TAGS = sorted({tag for tags in CATALOG.values() for tag in tags})

cents = st.integers(0, 5000).map(lambda n: Decimal(n).scaleb(-2))


@st.composite
def grants(draw, index: int) -> Grant:
    kind = draw(st.sampled_from(list(GrantKind)))
    days = sorted(draw(st.sets(st.integers(0, 30), min_size=2, max_size=2 if kind is GrantKind.POSTPAID else 5)))
    bounds = list(zip(days, days[1:]))[:: draw(st.sampled_from([1, 2]))]  # adjacent or with gaps
    segments = tuple(
        AccessSegment(f"g{index}s{n}", draw(cents), START + a * DAY, START + b * DAY) for n, (a, b) in enumerate(bounds)
    )
    if kind is GrantKind.POSTPAID:
        segments = segments[:1]
        due = segments[0].ending_before + draw(st.integers(0, 3)) * DAY
        invoices = (InvoiceItem(f"g{index}i", due, segments[0].amount),)
    elif kind is GrantKind.PREPAID and draw(st.booleans()):
        invoices = (InvoiceItem(f"g{index}i", segments[0].starting_at, draw(cents)),)
    else:
        invoices = ()
    scope = draw(st.sampled_from(["all", "all", "ids", "tags"]))
    return Grant(
        id=f"g{index}",
        kind=kind,
        product_id="fixed",
        credit_type_id=draw(st.sampled_from(["usd"] * 9 + ["cpu"])),
        access_schedule=segments,
        contract_id=draw(st.sampled_from([None, None, None, "c1", "c2"])),
        priority=draw(st.sampled_from([None, None, None, Decimal(1), Decimal("0.5")])),
        applicable_product_ids=tuple(draw(st.sets(st.sampled_from(PRODUCTS), min_size=1))) if scope == "ids" else (),
        applicable_product_tags=tuple(draw(st.sets(st.sampled_from(TAGS), min_size=1))) if scope == "tags" else (),
        rate_type=draw(st.sampled_from(list(CommitRateType))),
        rollover_fraction=draw(st.sampled_from([None, Decimal(0), Decimal("0.5"), Decimal("0.33"), Decimal(1)])),
        invoice_schedule=invoices,
    )


@st.composite
def scenarios(draw):
    grant_list = [draw(grants(n)) for n in range(draw(st.integers(1, 5)))]
    charges = []
    for n in range(draw(st.integers(0, 15))):
        invoice = draw(st.sampled_from(sorted(CONTRACT_OF)))
        amount = draw(cents)
        charges.append(
            charge(
                f"k{n}",
                amount,
                START + draw(st.integers(0, 35)) * DAY + draw(st.sampled_from([0, 12])) * timedelta(hours=1),
                product=draw(st.sampled_from(PRODUCTS)),
                contract=CONTRACT_OF[invoice],
                invoice=invoice,
                finalized=invoice == "i-final",
                commit=draw(st.one_of(st.none(), cents)),
                credit_type_id=draw(st.sampled_from(["usd"] * 9 + ["cpu"])),
            )
        )
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        grant = draw(st.sampled_from(grant_list))
        segment = draw(st.sampled_from(grant.access_schedule))
        hours = int((segment.ending_before - segment.starting_at) / timedelta(hours=1))
        entries.append(
            ManualEntry(
                grant.id,
                segment.id,
                Decimal(draw(st.integers(-3000, 2000))).scaleb(-2),
                segment.starting_at + draw(st.integers(0, hours - 1)) * timedelta(hours=1),
                "adjustment",
            )
        )
    as_of = START + draw(st.sampled_from([10, 20, 40, 70])) * DAY
    return grant_list, charges, entries, as_of


def burn(scenario):
    grant_list, charges, entries, as_of = scenario
    return burn_down(grant_list, charges, entries, CATALOG, as_of)


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the rules, restated for the checks ----------------------------------------------------------


def matches_product(grant: Grant, product_id: str, tags: tuple[str, ...]) -> bool:
    return product_id in grant.applicable_product_ids or bool(set(grant.applicable_product_tags) & set(tags))


def applies(grant: Grant, c) -> bool:
    if grant.credit_type_id != c.credit_type_id or grant.contract_id not in (None, c.contract_id):
        return False
    if grant.applicable_product_ids or grant.applicable_product_tags:
        return matches_product(grant, c.product_id, c.product_tags)
    return True


def product_count(grant: Grant) -> int:
    if not (grant.applicable_product_ids or grant.applicable_product_tags):
        return len(CATALOG)
    return sum(1 for product_id, tags in CATALOG.items() if matches_product(grant, product_id, tags))


def rank(grant: Grant, balance) -> tuple:
    rollover = balance.rolled_over_from is not None
    free = grant.kind is GrantKind.CREDIT or (
        grant.kind is GrantKind.PREPAID and sum(i.amount for i in grant.invoice_schedule) == 0
    )
    return (
        not rollover,
        not (rollover and grant.kind is GrantKind.POSTPAID),
        grant.priority is None,
        grant.priority or 0,
        not free,
        product_count(grant),
        balance.ending_before,
        balance.starting_at,
        grant.id,
        balance.segment_id,
    )


def processing_order(c):
    return (c.starting_at, c.invoice_id, c.key)


# --- properties ---------------------------------------------------------------------------------------


@SETTINGS
@given(scenarios())
def test_every_balance_is_the_sum_of_its_ledger_entries_and_a_replay_never_overdraws(scenario):
    result = burn(scenario)
    timestamps = [e.timestamp for e in result.ledger]
    assert timestamps == sorted(timestamps)
    assert all(t <= scenario[3] for t in timestamps)
    running = defaultdict(Decimal)
    for entry in result.ledger:
        running[entry.segment_id] += entry.amount
        assert running[entry.segment_id] >= 0, entry
    assert set(running) <= {b.segment_id for b in result.balances}
    assert all(b.remaining == running[b.segment_id] for b in result.balances)


@SETTINGS
@given(scenarios())
def test_applications_follow_the_documented_order(scenario):
    """No charge drew from a segment while an eligible, better-ranked segment still had money."""
    grant_list, charges, _, as_of = scenario
    result = burn(scenario)
    grants_by_id = {g.id: g for g in grant_list}
    balances = {b.segment_id: b for b in result.balances}
    manual_by_segment = defaultdict(list)
    for entry in result.ledger:
        if entry.reason is not None:
            manual_by_segment[entry.segment_id].append(entry)
    consumed = defaultdict(Decimal)  # by segment, over the charges processed so far
    for c in sorted((c for c in charges if c.starting_at <= as_of), key=processing_order):
        applications = result.applications[c.key]
        eligible = [
            b
            for b in balances.values()
            if b.starting_at <= c.starting_at < b.ending_before and applies(grants_by_id[b.grant_id], c)
        ]
        before = {
            b.segment_id: b.starting_amount
            + sum(m.amount for m in manual_by_segment[b.segment_id] if m.timestamp <= c.starting_at)
            - consumed[b.segment_id]
            for b in eligible
        }
        after = dict(before)
        for a in applications:
            after[a.segment_id] -= a.balance_consumed
        ranks = {b.segment_id: rank(grants_by_id[b.grant_id], b) for b in eligible}
        drawn = [a.segment_id for a in applications]
        assert set(drawn) <= set(ranks), "drew from an ineligible segment"
        assert [ranks[s] for s in drawn] == sorted(ranks[s] for s in drawn)
        assert len(set(drawn)) == len(drawn)
        for a in applications:
            segment_id = a.segment_id
            # A segment with no money left draws only charges that cost it nothing (a COMMIT_RATE
            # commit covering usage whose commit rate is 0: see burn_down's module notes).
            assert before[segment_id] > 0 or a.balance_consumed == 0
            skipped = [s for s in ranks if ranks[s] < ranks[segment_id] and after[s] > 0]
            assert skipped == [], f"{c.key} drew {segment_id} while {skipped} still had money"
        covered = sum((a.amount for a in applications), Decimal(0))
        if c.amount > 0 and covered < c.amount:
            assert all(after[s] == 0 for s in ranks), "left money unused on a charge not covered"
        for a in applications:
            consumed[a.segment_id] += a.balance_consumed
            assert after[a.segment_id] >= 0


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_shuffled_inputs_give_identical_output(scenario, random):
    grant_list, charges, entries, as_of = scenario
    shuffled_grants = []
    for g in grant_list:
        segments = list(g.access_schedule)
        random.shuffle(segments)
        shuffled_grants.append(Grant(**{**{f: getattr(g, f) for f in g.__slots__}, "access_schedule": tuple(segments)}))
    for items in (shuffled_grants, charges, entries):
        random.shuffle(items)
    assert burn((shuffled_grants, charges, entries, as_of)) == burn(scenario)


@SETTINGS
@given(scenarios())
def test_applications_never_cover_more_than_the_charge_and_drafts_only_lower_the_net_balance(scenario):
    result = burn(scenario)
    for c in scenario[1]:
        applications = result.applications.get(c.key, ())
        assert all(a.amount >= 0 and a.balance_consumed >= 0 for a in applications)
        assert sum((a.amount for a in applications if a.reduces_total), Decimal(0)) <= max(c.amount, 0)
        assert sum((a.amount for a in applications), Decimal(0)) <= max(c.amount, 0)
    assert net_balance(result, include_drafts=False) >= net_balance(result, include_drafts=True) >= 0
