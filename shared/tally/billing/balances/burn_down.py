"""Burn-down: which commits and credits pay for which charges, replayed deterministically from scratch.

Nothing is stored between runs: the grants, every charge of the customer's invoices and the manual
entries go in, and the applications, the ledger and the balances come out. So a late usage event on
a draft simply changes the next run's answer, and the same inputs, in any order, give the same output.

Time. Events are applied in time order up to and including `as_of`. At one instant:
  1. segment ends (rollover, then expiration), then postpaid true-ups: a segment's window is
     [starting_at, ending_before), so it is over before anything else happens at its end, and the
     rollover segment it opens is already there for usage at that instant;
  2. segment starts (SEGMENT_START / INITIAL_BALANCE);
  3. manual entries, by grant, segment, larger amount first;
  4. charges, by invoice id then key.
A charge draws at its starting_at from the segments covering that instant (the rating engine cuts
lines at `segment_edges`, so a line never straddles an edge).

Drawing. The eligible segments with a balance are taken in `burn_rank` order until the charge's list
amount is covered; the rest is billed at list price. A balance never goes below zero.
  * LIST_RATE segments spend what they cover.
  * COMMIT_RATE segments, when the charge has a commit_amount C for its list amount L, spend at the
    commit rate: covering the uncovered list amount U costs U×C/L (exactly C when U = L, otherwise
    rounded once with the credit type). A balance B short of that cost is spent whole and covers
    B×L/C of list, rounded once with the credit type and never more than U. A charge whose commit
    amount is 0 costs nothing, so such a segment covers it even when its balance is spent.
  * Commit-specific overrides give a charge its price when a given grant (or any grant) pays
    (`eligibility.spend_price`); that grant spends at that price C, exactly as above. So usage a
    commit pays for costs the commit the overridden price, and what it cannot cover stays at list.
  * A QUANTITY grant (access_type QUANTITY, Grant.by_quantity) counts units: it spends as a
    COMMIT_RATE segment would with the charge's quantity as its price (covering U of list costs
    U x quantity / L units). Its balances are in NO_CREDIT_TYPE, so money totals leave them out.
  * Prepaid and credit applications reduce the invoice. Postpaid ones are recorded but do not: the
    usage is paid in arrears, and the commit only counts it toward the promised spend.

Segment ends. With rollover_fraction f, ROLLOVER moves f × remaining (cut down to the credit type's
precision) into a new segment of the same grant, as long as the old one, starting at its end, with
id f"{old id}:rollover". It is opened even for 0, so its id is stable as usage changes. A rollover
segment was paid for already, so it reduces invoices like prepaid money, and at its own end it
expires (a rollover happens once). What a prepaid commit or credit does not roll over expires.
A postpaid commit keeps its remainder until its invoice item's timestamp, when POSTPAID_COMMIT_TRUEUP
settles it; the true-up invoiced is the shortfall: access amount plus manual adjustments minus
consumption, i.e. what was left including any part that rolled over.

Ledger. Deductions are one entry per (segment, invoice) with the summed amount, dated at the last
charge of that invoice which drew from the segment: a replay of the ledger in time order then never
shows a balance the burn-down did not have. A draft invoice's deductions are `pending`.

Finalized invoices. A finalized invoice's charges carry the applications they were finalized with
(`Charge.applications`). Those are replayed exactly, whatever changed since (late usage on drafts,
manual entries, rate changes, new grants), and their deductions are not pending. The money they
need is reserved: a draft charge, or a negative manual entry, takes only what leaves every later
finalized draw on the segment covered, counting the positive manual entries that come before it,
and, on a segment that rolls over, what the rollover segment must receive for the finalized draws
on it. Before the j-th finalized event of a segment (a draw, or a positive manual entry), in the
order above, the reserve is R_j = max(0, outflow_j + R_{j+1}), and after the last one it is that
rollover need. So finalizing changes no draft's answer while nothing else changes (whatever a draft
took then left the later finalized draws covered), a finalized draw is never short, and no balance
goes below zero. Only an edited grant (an access schedule cut after finalization) can leave a
finalized draw without its segment; it is then skipped and counted in `unapplied_frozen`.
A voided invoice's charges draw nothing. Each of its deductions is still listed, with a CANCELED
entry that gives the amount back at the same instant, just before it (no type exists for postpaid
commits, whose voided drawdowns simply disappear).
Segment ends (rollover, expiration, true-up) are `pending` unless the caller names the segment in
`settled_segments` (every invoice it served is finalized); without that argument none is pending.

Checkpoints. Once every charge before an instant T is frozen (finalized or voided), the state of
every segment after the events before T (`checkpoint_burn`) is all a later run needs of that past:
`burn_down(..., resume=checkpoint)` starts from it and replays only the events at or after T, with
the same answers as a run from scratch (applications, balances, true-ups; its ledger holds only the
entries at or after T). The reserve of a frozen draw only depends on the frozen events after it, so
the plans of the events after T are the same computed from those alone. A checkpoint holds only if
the past it summarizes is unchanged: `resumable` compares digests of the grants' segments and the
manual entries before T, and refuses a charge before T (the caller must also see that no frozen
charge before T was added, voided or regenerated: services/invoices.py).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Callable, Collection, Iterable, Mapping

from tally.billing.balances.eligibility import Charge, applicable_product_count, burn_rank, grant_applies_to, spend_price
from tally.billing.balances.grants import AccessSegment, Application, Grant, GrantKind
from tally.billing.balances.ledger import LedgerEntry, ManualEntry, Movement, entry_type, has_entry_type
from tally.billing.errors import InvalidInput
from tally.billing.pricing.money import PRICING_CONTEXT, CreditType
from tally.billing.pricing.validation import as_decimal, aware

ZERO = Decimal(0)
_ROUND_UP = PRICING_CONTEXT.copy()
_ROUND_UP.rounding = ROUND_CEILING


@dataclass(frozen=True, slots=True)
class SegmentBalance:
    grant_id: str
    segment_id: str
    kind: GrantKind
    credit_type_id: str
    contract_id: str | None
    starting_at: datetime
    ending_before: datetime
    starting_amount: Decimal
    remaining: Decimal  # the sum of its ledger entries up to as_of, draft deductions included
    pending_deductions: Decimal  # what draft invoices took, positive
    as_of: datetime
    rolled_over_from: str | None = None

    @property
    def remaining_finalized(self) -> Decimal:
        """The balance counting only finalized invoices' deductions (invoice_inclusion_mode FINALIZED)."""
        return self.remaining + self.pending_deductions

    def active_at(self, instant: datetime) -> bool:
        return self.starting_at <= instant < self.ending_before


@dataclass(frozen=True, slots=True)
class TrueUp:
    """What a postpaid commit's invoice item bills: the part of the commitment usage did not consume."""

    grant_id: str
    segment_id: str
    product_id: str
    contract_id: str | None
    invoice_item_id: str
    timestamp: datetime
    amount: Decimal


@dataclass(frozen=True)
class BurnDown:
    as_of: datetime
    applications: Mapping[str, tuple[Application, ...]]  # by charge key, in draw order
    ledger: tuple[LedgerEntry, ...]  # in time order
    balances: tuple[SegmentBalance, ...]  # by grant id, then starting_at
    true_ups: tuple[TrueUp, ...]
    # Negative manual entries can only take what is left; late usage on a draft may leave less than
    # when the entry was checked. This is what they could not take (0 for a consistent ledger).
    unapplied_manual: Decimal = ZERO
    # Finalized drawdowns whose segment no longer holds them (a grant edited after finalization).
    unapplied_frozen: Decimal = ZERO

    def balance(self, segment_id: str) -> SegmentBalance:
        for balance in self.balances:
            if balance.segment_id == segment_id:
                return balance
        raise KeyError(segment_id)

    def invoice_reduction(self, charge_key: str) -> Decimal:
        """How much the charge's invoice total goes down (prepaid commits and credits only)."""
        return sum((a.amount for a in self.applications.get(charge_key, ()) if a.reduces_total), ZERO)

    def grant_balance(self, grant_id: str, at: datetime | None = None) -> Decimal:
        """A commit's or credit's balance (Metronome's `balance`): what its segments active at `at`
        (as_of by default) hold as of the run; expired and upcoming segments count 0."""
        instant = self.as_of if at is None else at
        return sum((b.remaining for b in self.balances if b.grant_id == grant_id and b.active_at(instant)), ZERO)

    def grant_ledger(self, grant_id: str) -> list[LedgerEntry]:
        """A commit's or credit's ledger entries, in time order."""
        return [e for e in self.ledger if e.grant_id == grant_id]


@dataclass(frozen=True, slots=True)
class SegmentState:
    """One segment as a checkpoint holds it, after every event before the checkpoint's instant."""

    grant_id: str
    segment_id: str
    amount: Decimal  # what it started with (a rollover segment's: what rolled into it)
    rolled_over_from: str | None
    started: bool
    ended: bool
    balance: Decimal
    pending: Decimal
    rolled_out: Decimal


@dataclass(frozen=True)
class BurnCheckpoint:
    """A customer's burn-down state after every event before `at` (see the module docstring)."""

    at: datetime
    segments: tuple[SegmentState, ...]
    true_ups: tuple[TrueUp, ...]
    unapplied_manual: Decimal
    unapplied_frozen: Decimal
    grants_digest: str  # grants_digest(grants, at) of the grants it was made from
    manual_digest: str  # manual_digest(entries, at)


@dataclass(frozen=True, slots=True)
class BalanceFilter:
    """One filter of a net balance: a grant matches when every condition given holds. Filters are
    OR'd together; no filter at all takes every grant."""

    kinds: frozenset[GrantKind] | None = None
    ids: frozenset[str] | None = None
    custom_fields: Mapping[str, str] | None = None

    def matches(self, grant_id: str, kind: GrantKind, custom_fields: Mapping[str, str]) -> bool:
        return (
            (self.kinds is None or kind in self.kinds)
            and (self.ids is None or grant_id in self.ids)
            and all(custom_fields.get(key) == value for key, value in (self.custom_fields or {}).items())
        )


def net_balance(
    burn: BurnDown,
    *,
    include_drafts: bool = True,
    credit_type_id: str | None = None,
    grant_ids: Collection[str] | None = None,
) -> Decimal:
    """What the customer can still use at `burn.as_of`: the remaining of every segment active then,
    of every kind (a postpaid commit's remaining is what it still covers), or of `grant_ids` only.
    include_drafts False counts only finalized invoices' deductions (Metronome FINALIZED)."""
    return sum(
        (
            b.remaining if include_drafts else b.remaining_finalized
            for b in burn.balances
            if b.active_at(burn.as_of)
            and (credit_type_id is None or b.credit_type_id == credit_type_id)
            and (grant_ids is None or b.grant_id in grant_ids)
        ),
        ZERO,
    )


@dataclass(slots=True, eq=False)
class _Live:
    grant: Grant
    segment: AccessSegment
    rank: tuple
    rolled_over_from: str | None = None
    started: bool = False
    ended: bool = False
    balance: Decimal = ZERO
    pending: Decimal = ZERO
    rolled_out: Decimal = ZERO
    plan: tuple[Decimal, ...] = ()  # the reserve before each finalized event ahead, then at the end
    planned: int = 0  # finalized events of this segment applied so far

    @property
    def available(self) -> Decimal:
        """What a draft charge or a negative manual entry may take now."""
        reserved = self.plan[min(self.planned, len(self.plan) - 1)] if self.plan else ZERO
        return max(self.balance - reserved, ZERO)

    @property
    def reduces_total(self) -> bool:
        return self.grant.kind is not GrantKind.POSTPAID or self.rolled_over_from is not None


@dataclass(slots=True)
class _Deduction:
    live: _Live
    invoice_id: str
    contract_id: str
    amount: Decimal = ZERO
    last_at: datetime | None = None
    pending: bool = False


@dataclass
class _Run:
    catalog_tags: Mapping[str, tuple[str, ...]]
    credit_types: Mapping[str, CreditType]
    as_of: datetime
    settled: frozenset[str] | None = None
    plans: Mapping[str, tuple[Decimal, ...]] = field(default_factory=dict)
    segments: dict[str, _Live] = field(default_factory=dict)
    active: dict[str, _Live] = field(default_factory=dict)
    queue: list = field(default_factory=list)
    entries: list[tuple[tuple, LedgerEntry]] = field(default_factory=list)
    deductions: dict[tuple[str, str], _Deduction] = field(default_factory=dict)
    canceled: dict[tuple[str, str], _Deduction] = field(default_factory=dict)
    applications: dict[str, tuple[Application, ...]] = field(default_factory=dict)
    true_ups: list[TrueUp] = field(default_factory=list)
    unapplied_manual: Decimal = ZERO
    unapplied_frozen: Decimal = ZERO
    _seq: int = 0

    def credit_type(self, credit_type_id: str) -> CreditType:
        return self.credit_types.get(credit_type_id) or CreditType(credit_type_id, credit_type_id)

    def push(self, at: datetime, movement: Movement, tie: tuple, handler, payload) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (at, movement.rank, tie, self._seq, handler, payload))

    def record(self, live: _Live, movement: Movement, amount: Decimal, at: datetime, **extra) -> None:
        self._seq += 1
        entry = LedgerEntry(live.grant.id, live.segment.id, entry_type(live.grant.kind, movement), amount, at, **extra)
        key = (at, movement.rank, live.grant.id, live.segment.id, extra.get("invoice_id") or "", self._seq)
        self.entries.append((key, entry))

    # --- segments -------------------------------------------------------------------------------

    def open(self, grant: Grant, segment: AccessSegment, rolled_over_from: str | None = None) -> None:
        if segment.id in self.segments:
            raise ValueError(f"segment id {segment.id!r} is used twice")
        live = _Live(
            grant,
            segment,
            burn_rank(grant, segment, rolled_over_from is not None, applicable_product_count(grant, self.catalog_tags)),
            rolled_over_from,
            plan=self.plans.get(segment.id, ()),
        )
        self.segments[segment.id] = live
        tie = (grant.id, segment.id)
        self.push(segment.starting_at, Movement.START, tie, _Run.start, live)
        self.push(segment.ending_before, Movement.ROLLOVER, tie, _Run.end, live)

    def restore(self, grant: Grant, segment: AccessSegment, state: SegmentState) -> None:
        """A segment as a checkpoint left it: only what is still ahead of it is queued."""
        rollover = state.rolled_over_from is not None
        live = _Live(
            grant,
            segment,
            burn_rank(grant, segment, rollover, applicable_product_count(grant, self.catalog_tags)),
            state.rolled_over_from,
            started=state.started,
            ended=state.ended,
            balance=state.balance,
            pending=state.pending,
            rolled_out=state.rolled_out,
            plan=self.plans.get(segment.id, ()),
        )
        self.segments[segment.id] = live
        tie = (grant.id, segment.id)
        if not state.started:
            self.push(segment.starting_at, Movement.START, tie, _Run.start, live)
        elif not state.ended:
            self.active[segment.id] = live
        if not state.ended:
            self.push(segment.ending_before, Movement.ROLLOVER, tie, _Run.end, live)

    def start(self, live: _Live, at: datetime) -> None:
        live.started, live.balance = True, live.segment.amount
        self.active[live.segment.id] = live
        self.record(live, Movement.START, live.segment.amount, at)

    def end_pending(self, live: _Live) -> bool:
        return self.settled is not None and live.segment.id not in self.settled

    def end(self, live: _Live, at: datetime) -> None:
        live.ended = True
        self.active.pop(live.segment.id, None)
        grant = live.grant
        pending = self.end_pending(live)
        if grant.rolls_over and live.rolled_over_from is None:
            assert grant.rollover_fraction is not None
            precision = Decimal(1).scaleb(-self.credit_type(grant.credit_type_id).precision)
            rolled = PRICING_CONTEXT.multiply(live.balance, grant.rollover_fraction).quantize(
                precision, rounding=ROUND_DOWN, context=PRICING_CONTEXT
            )
            if rolled:
                self.record(live, Movement.ROLLOVER, -rolled, at, pending=pending)
            live.balance -= rolled
            live.rolled_out = rolled
            self.open(grant, live.segment.rolled_over(rolled), rolled_over_from=live.segment.id)
        if grant.kind is GrantKind.POSTPAID and live.rolled_over_from is None:
            return  # the true-up settles the rest
        if live.balance:
            self.record(live, Movement.EXPIRATION, -live.balance, at, pending=pending)
        live.balance = ZERO

    def true_up(self, payload: tuple[_Live, str], at: datetime) -> None:
        live, item_id = payload
        due = live.balance + live.rolled_out
        if live.balance:
            pending = self.end_pending(live)
            self.record(live, Movement.TRUEUP, -live.balance, at, contract_id=live.grant.contract_id, pending=pending)
        live.balance = ZERO
        grant = live.grant
        self.true_ups.append(TrueUp(grant.id, live.segment.id, grant.product_id, grant.contract_id, item_id, at, due))

    def manual(self, entry: ManualEntry, at: datetime) -> None:
        live = self.segments.get(entry.segment_id)
        if live is None or live.grant.id != entry.grant_id:
            raise ValueError(f"manual entry for unknown segment {entry.grant_id}/{entry.segment_id}")
        if not (live.started and not live.ended):
            raise ValueError(f"manual entry at {at} is outside segment {entry.segment_id}")
        if entry.amount > 0:
            amount = entry.amount
            live.planned += 1  # positive entries are events of the reserve plan
        else:
            amount = entry.amount if live.available + entry.amount >= 0 else -live.available
        self.unapplied_manual += amount - entry.amount
        live.balance += amount
        self.record(live, Movement.MANUAL, amount, at, reason=entry.reason)

    # --- charges ----------------------------------------------------------------------------------

    def charge(self, charge: Charge, at: datetime) -> None:
        if charge.voided:
            self.cancel(charge, at)
        elif charge.applications is not None:
            self.replay(charge, at)
        else:
            self.draw(charge, at)

    def draw(self, charge: Charge, at: datetime) -> None:
        applied: list[Application] = []
        uncovered = charge.amount
        eligible = sorted(
            (
                live
                for live in self.active.values()
                if (live.available > 0 or _costs_nothing(live, charge))
                and live.segment.covers(at)
                and grant_applies_to(live.grant, charge)
            ),
            key=lambda live: live.rank,
        )
        credit_type = self.credit_type(charge.credit_type_id)
        for live in eligible:
            if uncovered <= 0:
                break
            covered, consumed = _draw(live, charge, uncovered, credit_type, live.available)
            uncovered -= covered
            live.balance -= consumed
            applied.append(
                Application(live.grant.id, live.segment.id, live.grant.kind, covered, consumed, live.reduces_total)
            )
            self.deduct(self.deductions, live, charge, consumed, at, pending=not charge.finalized)
        self.applications[charge.key] = tuple(applied)

    def replay(self, charge: Charge, at: datetime) -> None:
        """A finalized charge: each application takes again what it took (reserved, so it is there)."""
        assert charge.applications is not None
        for application in charge.applications:
            live = self.segments.get(application.segment_id)
            if (
                live is None
                or live.grant.id != application.grant_id
                or not (live.started and not live.ended and live.segment.covers(at))
            ):
                self.unapplied_frozen += application.balance_consumed
                continue
            taken = min(application.balance_consumed, live.balance)
            self.unapplied_frozen += application.balance_consumed - taken
            live.balance -= taken
            live.planned += 1
            self.deduct(self.deductions, live, charge, taken, at, pending=False)
        self.applications[charge.key] = charge.applications

    def cancel(self, charge: Charge, at: datetime) -> None:
        """A voided invoice's charge: nothing drawn; its drawdowns are listed with their reversal."""
        for application in charge.applications or ():
            live = self.segments.get(application.segment_id)
            if live is None or live.grant.id != application.grant_id:
                continue
            if has_entry_type(live.grant.kind, Movement.CANCELED):
                self.deduct(self.canceled, live, charge, application.balance_consumed, at, pending=False)
        self.applications[charge.key] = ()

    def deduct(
        self, deductions: dict, live: _Live, charge: Charge, amount: Decimal, at: datetime, pending: bool
    ) -> None:
        key = (live.segment.id, charge.invoice_id)
        deduction = deductions.get(key)
        if deduction is None:
            deduction = deductions[key] = _Deduction(live, charge.invoice_id, charge.contract_id)
        deduction.amount += amount
        deduction.last_at = at
        deduction.pending = deduction.pending or pending
        if pending and deductions is self.deductions:
            live.pending += amount

    def finish(self) -> BurnDown:
        for deduction in self.deductions.values():
            if deduction.amount:
                assert deduction.last_at is not None
                self.record(
                    deduction.live,
                    Movement.DEDUCTION,
                    -deduction.amount,
                    deduction.last_at,
                    invoice_id=deduction.invoice_id,
                    pending=deduction.pending,
                    contract_id=deduction.contract_id,
                )
        for reversed_ in self.canceled.values():
            if reversed_.amount:
                assert reversed_.last_at is not None
                extra = {"invoice_id": reversed_.invoice_id, "contract_id": reversed_.contract_id}
                self.record(reversed_.live, Movement.DEDUCTION, -reversed_.amount, reversed_.last_at, **extra)
                self.record(reversed_.live, Movement.CANCELED, reversed_.amount, reversed_.last_at, **extra)
        balances = tuple(
            SegmentBalance(
                live.grant.id,
                live.segment.id,
                live.grant.kind,
                live.grant.balance_credit_type_id,
                live.grant.contract_id,
                live.segment.starting_at,
                live.segment.ending_before,
                live.segment.amount,
                live.balance,
                live.pending,
                self.as_of,
                live.rolled_over_from,
            )
            for live in sorted(self.segments.values(), key=lambda l: (l.grant.id, l.segment.starting_at, l.segment.id))
        )
        return BurnDown(
            as_of=self.as_of,
            applications=self.applications,
            ledger=tuple(entry for _, entry in sorted(self.entries, key=lambda pair: pair[0])),
            balances=balances,
            true_ups=tuple(sorted(self.true_ups, key=lambda t: (t.timestamp, t.grant_id, t.segment_id))),
            unapplied_manual=self.unapplied_manual,
            unapplied_frozen=self.unapplied_frozen,
        )


def _costs_nothing(live: _Live, charge: Charge) -> bool:
    """A COMMIT_RATE segment covers a charge whose commit rate prices it at 0 without spending
    anything, so it covers it whatever its balance: otherwise whether it does would depend on the
    order charges draw in, and finalizing another invoice could change a draft's answer."""
    return spend_price(live.grant, charge) == 0


def _draw(
    live: _Live, charge: Charge, uncovered: Decimal, credit_type: CreditType, balance: Decimal
) -> tuple[Decimal, Decimal]:
    """(list amount covered, balance consumed) when `live` pays toward `uncovered` of the charge,
    out of `balance` (what the segment may give a draft)."""
    commit_amount = spend_price(live.grant, charge)
    if commit_amount is None:
        covered = min(uncovered, balance)
        return covered, covered
    list_amount = charge.amount
    if uncovered == list_amount:
        cost = commit_amount  # the whole line at its commit rate, exactly
    else:
        cost = credit_type.round(_scale(uncovered, commit_amount, list_amount))
    if cost <= balance:
        return uncovered, cost
    # Short: spend everything, cover its list-rate worth. cost > balance > 0 implies commit_amount > 0.
    covered = credit_type.round(_scale(balance, list_amount, commit_amount))
    return min(covered, uncovered), balance


def _scale(amount: Decimal, numerator: Decimal, denominator: Decimal) -> Decimal:
    return PRICING_CONTEXT.divide(PRICING_CONTEXT.multiply(amount, numerator), denominator)


def burn_down(
    grants: Iterable[Grant],
    charges: Iterable[Charge],
    manual_entries: Iterable[ManualEntry],
    catalog_tags: Mapping[str, tuple[str, ...]],
    as_of: datetime,
    credit_types: Mapping[str, CreditType] | None = None,
    *,
    settled_segments: Iterable[str] | None = None,
    resume: BurnCheckpoint | None = None,
) -> BurnDown:
    """Replay the customer's grants against its charges up to `as_of` (see the module docstring).

    `charges` are the lines of all the customer's invoices (a finalized one with its applications),
    `catalog_tags` maps every product id of the catalog to its tags (to count applicable products),
    `credit_types` gives each credit type's precision and rounding (an unknown id rounds to 2
    places, half up). `settled_segments`: segments every invoice of which is finalized, whose ends
    are therefore final (None: the caller does not track it, and no segment end is pending).
    `resume`: start from that checkpoint (`resumable` said so); `charges` and `manual_entries` may
    then leave out those before it (manual entries before it are skipped)."""
    run = _started(grants, charges, manual_entries, catalog_tags, as_of, credit_types, settled_segments, resume)
    while run.queue and run.queue[0][0] <= as_of:
        at, _, _, _, handler, payload = heapq.heappop(run.queue)
        handler(run, payload, at)
    return run.finish()


def checkpoint_burn(
    grants: Iterable[Grant],
    charges: Iterable[Charge],
    manual_entries: Iterable[ManualEntry],
    catalog_tags: Mapping[str, tuple[str, ...]],
    at: datetime,
    credit_types: Mapping[str, CreditType] | None = None,
) -> BurnCheckpoint:
    """The state after every event before `at`, for `burn_down(..., resume=)`. Every charge before
    `at` must be frozen (finalized or voided): a draft's draw depends on what comes after it."""
    grants, charges, manual_entries = list(grants), list(charges), list(manual_entries)
    if any(c.applications is None and c.amount > 0 and c.starting_at < at for c in charges):
        raise ValueError("a draft charge before the checkpoint")
    run = _started(grants, charges, manual_entries, catalog_tags, at, credit_types, None, None)
    while run.queue and run.queue[0][0] < at:
        instant, _, _, _, handler, payload = heapq.heappop(run.queue)
        handler(run, payload, instant)
    states = tuple(
        SegmentState(live.grant.id, live.segment.id, live.segment.amount, live.rolled_over_from, live.started, live.ended,
                     live.balance, live.pending, live.rolled_out)
        for live in sorted(run.segments.values(), key=lambda l: (l.rolled_over_from is not None, l.segment.id))
        if live.segment.starting_at < at or live.rolled_over_from is not None
    )
    return BurnCheckpoint(
        at, states, tuple(run.true_ups), run.unapplied_manual, run.unapplied_frozen,
        grants_digest(grants, at), manual_digest(manual_entries, at),
    )


def resumable(checkpoint: BurnCheckpoint, grants: Iterable[Grant], charges: Iterable[Charge],
              manual_entries: Iterable[ManualEntry]) -> bool:
    """Whether `burn_down(..., resume=checkpoint)` answers what a run from scratch would: the
    grants' segments and the manual entries before the checkpoint are those it was made from, and
    no charge given is before it (the frozen charges before it are the caller's to keep unchanged)."""
    return (
        grants_digest(grants, checkpoint.at) == checkpoint.grants_digest
        and manual_digest(manual_entries, checkpoint.at) == checkpoint.manual_digest
        and all(c.starting_at >= checkpoint.at for c in charges if c.amount > 0)
    )


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def grants_digest(grants: Iterable[Grant], at: datetime) -> str:
    """What a checkpoint at `at` depends on of the grants: each segment that starts before it, with
    its grant's rollover and postpaid true-up, and each invoice schedule item before it (a purchase
    billed then: a SCHEDULED invoice in a period before it). A segment or an item later, or an edit
    of one, does not count."""
    parts = []
    for grant in sorted(grants, key=lambda g: g.id):
        early = [s for s in grant.access_schedule if s.starting_at < at]
        true_up = grant.invoice_schedule[0] if grant.kind is GrantKind.POSTPAID and grant.invoice_schedule else None
        billed = [(i.id, str(i.amount), i.timestamp.isoformat()) for i in grant.invoice_schedule if i.timestamp < at]
        if not early and not billed and (true_up is None or true_up.timestamp >= at):
            continue
        parts.append(repr((
            grant.id, grant.kind.value, grant.credit_type_id, grant.balance_credit_type_id, grant.product_id,
            grant.contract_id, str(grant.rollover_fraction), grant.access_schedule[0].id if grant.access_schedule else None,
            None if true_up is None else (true_up.id, true_up.timestamp.isoformat()),
            [(s.id, str(s.amount), s.starting_at.isoformat(), s.ending_before.isoformat(),
              None if s.rollover_ending_before is None else s.rollover_ending_before.isoformat()) for s in early],
            billed,
        )))
    return _digest(parts)


def manual_digest(manual_entries: Iterable[ManualEntry], at: datetime) -> str:
    """The manual entries dated before `at`, as a checkpoint at `at` depends on them."""
    return _digest(sorted(
        repr((e.grant_id, e.segment_id, str(e.amount), e.timestamp.isoformat(), e.reason))
        for e in manual_entries if e.timestamp < at
    ))


def _started(
    grants: Iterable[Grant],
    charges: Iterable[Charge],
    manual_entries: Iterable[ManualEntry],
    catalog_tags: Mapping[str, tuple[str, ...]],
    as_of: datetime,
    credit_types: Mapping[str, CreditType] | None,
    settled_segments: Iterable[str] | None,
    resume: BurnCheckpoint | None,
) -> _Run:
    """A run with every event queued: from scratch, or from `resume`'s state (events before it left out)."""
    settled = None if settled_segments is None else frozenset(settled_segments)
    run = _Run(catalog_tags, credit_types or {}, as_of, settled)
    grants = sorted(grants, key=lambda g: g.id)
    if len({g.id for g in grants}) != len(grants):
        raise ValueError("grant ids must be unique")
    charges, manual_entries = list(charges), list(manual_entries)
    since = None if resume is None else resume.at
    if since is not None:
        if any(c.starting_at < since and c.amount > 0 for c in charges):
            raise ValueError("a charge before the checkpoint it resumes from")
        manual_entries = [e for e in manual_entries if e.timestamp >= since]
        run.true_ups = list(resume.true_ups)
        run.unapplied_manual, run.unapplied_frozen = resume.unapplied_manual, resume.unapplied_frozen
    run.plans = _reserve_plans(grants, charges, manual_entries, as_of, run.credit_type)
    states = {} if resume is None else {s.segment_id: s for s in resume.segments}
    for grant in grants:
        for segment in sorted(grant.access_schedule, key=lambda s: (s.starting_at, s.id)):
            state = states.get(segment.id)
            if state is not None:
                run.restore(grant, segment, state)
            elif since is not None and segment.starting_at < since:
                raise ValueError(f"segment {segment.id} is not in the checkpoint it resumes from")
            else:
                run.open(grant, segment)
        if grant.kind is GrantKind.POSTPAID and grant.invoice_schedule and grant.access_schedule:
            item = grant.invoice_schedule[0]
            live = run.segments[grant.access_schedule[0].id]
            if since is None or item.timestamp >= since:
                run.push(item.timestamp, Movement.TRUEUP, (grant.id, live.segment.id), _Run.true_up, (live, item.id))
    for state in states.values():  # rollover segments, opened by their parent's end before the checkpoint
        if state.rolled_over_from is not None:
            parent = run.segments.get(state.rolled_over_from)
            if parent is None:
                raise ValueError(f"segment {state.segment_id} rolled over from a segment that is gone")
            run.restore(parent.grant, parent.segment.rolled_over(state.amount), state)
    for entry in manual_entries:
        run.push(entry.timestamp, Movement.MANUAL, (entry.grant_id, entry.segment_id, -entry.amount, entry.reason),
                 _Run.manual, entry)
    keys: set[str] = set()
    for charge in charges:
        if charge.key in keys:
            raise ValueError(f"charge key {charge.key!r} is used twice")
        keys.add(charge.key)
        if charge.amount > 0:  # credits and corrections on an invoice draw nothing
            run.push(charge.starting_at, Movement.DEDUCTION, (charge.invoice_id, charge.key), _Run.charge, charge)
        elif charge.starting_at <= as_of:
            run.applications[charge.key] = ()
    return run


def _reserve_plans(
    grants: list[Grant],
    charges: list[Charge],
    manual_entries: list[ManualEntry],
    as_of: datetime,
    credit_type: Callable[[str], CreditType],
) -> dict[str, tuple[Decimal, ...]]:
    """For each segment with finalized draws ahead: the reserve before each of its finalized events
    (draws and positive manual entries, in processing order), then at its end (module docstring)."""
    windows: dict[str, tuple[Grant, AccessSegment, bool]] = {}  # id -> (grant, window, is a rollover)
    for grant in grants:
        for segment in grant.access_schedule:
            windows[segment.id] = (grant, segment, False)
            if grant.rolls_over:
                child = segment.rolled_over(ZERO)
                windows[child.id] = (grant, child, True)

    def fits(segment_id: str, grant_id: str, at: datetime) -> bool:
        window = windows.get(segment_id)
        return window is not None and window[0].id == grant_id and window[1].covers(at) and at <= as_of

    # (processing order key, outflow) per segment; the keys mirror the queue's (instant, movement, tie).
    events: dict[str, list[tuple[tuple, Decimal]]] = defaultdict(list)
    for charge in charges:
        if charge.applications is None or charge.voided or charge.amount <= 0:
            continue
        for a in charge.applications:
            if fits(a.segment_id, a.grant_id, charge.starting_at):
                order = (charge.starting_at, Movement.DEDUCTION.rank, charge.invoice_id, charge.key)
                events[a.segment_id].append((order, a.balance_consumed))
    for entry in manual_entries:
        if entry.amount > 0 and fits(entry.segment_id, entry.grant_id, entry.timestamp):
            tie = (entry.grant_id, entry.segment_id, -entry.amount, entry.reason)
            events[entry.segment_id].append(((entry.timestamp, Movement.MANUAL.rank, *tie), -entry.amount))

    def plan(segment_id: str, at_end: Decimal) -> tuple[Decimal, ...]:
        flows = [flow for _, flow in sorted(events.get(segment_id, ()), key=lambda event: event[0])]
        reserve = [ZERO] * len(flows) + [at_end]
        for j in range(len(flows) - 1, -1, -1):
            reserve[j] = max(ZERO, flows[j] + reserve[j + 1])
        return tuple(reserve)

    plans = {
        segment_id: plan(segment_id, ZERO)
        for segment_id, (_, _, rollover) in windows.items()
        if rollover and segment_id in events
    }
    for segment_id, (grant, segment, rollover) in windows.items():
        if rollover:
            continue
        handed = plans.get(segment.rolled_over(ZERO).id, (ZERO,))[0]
        at_end = ZERO
        if handed > 0:
            # The rollover is f × remaining cut down to the precision: keep enough for it to be at
            # least `handed` (both rounded up to the precision, so drafts draw whole units).
            unit = Decimal(1).scaleb(-credit_type(grant.credit_type_id).precision)
            handed = handed.quantize(unit, rounding=ROUND_CEILING, context=PRICING_CONTEXT)
            assert grant.rollover_fraction is not None
            at_end = _ROUND_UP.divide(handed, grant.rollover_fraction).quantize(
                unit, rounding=ROUND_CEILING, context=PRICING_CONTEXT
            )
        if segment_id in events or at_end > 0:
            plans[segment_id] = plan(segment_id, at_end)
    return plans


def check_manual_entry(
    entry: ManualEntry,
    grants: Iterable[Grant],
    charges: Iterable[Charge],
    manual_entries: Iterable[ManualEntry],
    catalog_tags: Mapping[str, tuple[str, ...]],
    credit_types: Mapping[str, CreditType] | None = None,
) -> None:
    """Refuse a manual entry before it is stored. Field names are those of addManualBalanceEntry.
    The whole history is replayed with and without it: it is refused when it, or any entry after it
    that it starves, would take a balance below zero."""
    grants, charges, manual_entries = list(grants), list(charges), list(manual_entries)
    as_decimal(entry.amount, "amount")
    aware(entry.timestamp, "timestamp")
    if not isinstance(entry.reason, str) or not entry.reason.strip():
        raise InvalidInput("reason", "must be a non-empty string")
    grant = next((g for g in grants if g.id == entry.grant_id), None)
    if grant is None:
        raise InvalidInput("id", "is not a commit or credit of this customer")
    instants = [entry.timestamp, *(c.starting_at for c in charges), *(m.timestamp for m in manual_entries)]
    instants += [s.ending_before for g in grants for s in g.access_schedule]
    instants += [i.timestamp for g in grants for i in g.invoice_schedule]
    horizon = max(instants)
    before = burn_down(grants, charges, manual_entries, catalog_tags, horizon, credit_types)
    try:
        segment = before.balance(entry.segment_id)
    except KeyError:
        segment = None
    if segment is None or segment.grant_id != grant.id:
        raise InvalidInput("segment_id", "is not a segment of this commit or credit")
    if not segment.active_at(entry.timestamp):
        raise InvalidInput("timestamp", "must fall within the segment's access window")
    after = burn_down(grants, charges, [*manual_entries, entry], catalog_tags, horizon, credit_types)
    if after.unapplied_manual > before.unapplied_manual:
        raise InvalidInput("amount", "would take the balance below zero")
