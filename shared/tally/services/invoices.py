"""Invoices: drafts computed at read time from the counters, finalized ones served from storage.

Every period of every live (unarchived) contract, up to and including the one holding "now",
has a USAGE invoice per credit type with charges (the rate card's fiat type always), and SCHEDULED
invoices at their issue instants. An invoice's id is a UUIDv5 of (contract, type, period start or
issue instant, credit type): its "slot". A draft is computed on every read and has the slot's id.

Cycle close (services/cycle_close.py) stores a slot's invoice once, FINALIZED, under the same id,
with the drawdowns it made (invoice_records.py). From then on the slot is served from storage and
the burn-down replays those drawdowns exactly. Once a period's USAGE invoice is stored the period
is closed: late usage still counts in /v1/usage but lands on no invoice, so a closed period is
rated without usage, only to find SCHEDULED invoices that are new (a commit bought later with a
past invoice date). A voided invoice's slot has no draft and its drawdowns are given back, until a
regenerate recomputes that slot from current data into a new FINALIZED invoice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Mapping, Sequence

from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput, NotFound, TallyError
from tally.billing.balances import (
    BurnDown, Charge, Grant, GrantKind, TrueUp, burn_down, checkpoint_burn, grants_digest, manual_digest, segment_edges,
)
from tally.billing.pricing.invoices import ChargeWindow, on_usage_invoice
from tally.billing.pricing import (
    Contract,
    LineItem,
    LineType,
    ProductType,
    assemble_invoices,
    CreditType,
    Invoice,
    InvoiceType,
    Period,
    Product,
    UsageSource,
    build_draft_invoices,
)
from tally.billing.time import format_rfc3339
from tally.services.balances import CustomerGrants, GrantBook
from tally.services.contracts import ContractService
from tally.services.hierarchy import family_members, parent_contracts
from tally.services.together import together
from tally.services import consolidation
from tally.services.invoice_records import FINALIZED, VOID, BalanceCheckpoint, InvoiceStore, StoredInvoice

INVOICE_NAMESPACE = uuid.UUID("6f1c2b0e-5d3a-4c1e-9a57-7b7f1e0c2d41")


def invoice_id(contract_id: str, starting_at: datetime, credit_type: CreditType, type: InvoiceType = InvoiceType.USAGE) -> str:
    """Stable per (contract, invoice type, period start or issue instant, credit type)."""
    scope = "" if type is InvoiceType.USAGE else f"{type.value}|"
    return str(uuid.uuid5(INVOICE_NAMESPACE, f"{contract_id}|{scope}{format_rfc3339(starting_at)}|{credit_type.id}"))


class PeriodNotFound(TallyError):
    """The contract has no such billing period (or is archived, or the period has not started)."""

    status = 404
    kind = "not_found"


@dataclass(frozen=True, slots=True)
class DraftInvoice:
    """An invoice as served: a draft, or a stored one (`invoice.status` FINALIZED or VOID; then
    `contract` is None when it was read by id alone)."""

    id: str
    invoice: Invoice
    contract: Contract | None
    regenerated_from_invoice_id: str | None = None
    # The catalog a draft was priced with (None for stored invoices): its JSON shows product tags
    # from the same snapshot, and a GET reads the catalog once.
    products: Mapping[str, Product] | None = field(default=None, compare=False, repr=False)
    custom_fields: Mapping[str, str] = field(default_factory=dict, compare=False)  # a stored invoice's


# Lines commits and credits may pay for (Metronome: usage, subscription and composite products).
DRAWABLE = (LineType.USAGE, LineType.SUBSCRIPTION)


def _draft(contract: Contract, invoice: Invoice, products: Mapping[str, Product]) -> DraftInvoice:
    slot = invoice_id(contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
    if contract.payer is not None or contract.consolidated_usage:
        # Hierarchies: a consolidated invoice bills the fiat USAGE invoices it holds (billing/consolidation.py).
        consolidated = (
            contract.consolidated_usage
            and invoice.type is InvoiceType.USAGE
            and invoice.credit_type == contract.rate_card.fiat_credit_type
        )
        invoice = replace(invoice, payer=contract.payer, billable=not consolidated)
    return DraftInvoice(slot, invoice, contract, products=products)


def _by_period(drafts: list[DraftInvoice]) -> list[list[DraftInvoice]]:
    """Consecutive drafts grouped by (contract, period): a USAGE invoice opens each group."""
    groups: list[list[DraftInvoice]] = []
    for draft in drafts:
        if draft.invoice.type is InvoiceType.USAGE or not groups:
            groups.append([draft])
        else:
            groups[-1].append(draft)
    return groups


def _charge(key: str, draft_id: str, contract_id: str, line: LineItem, products: dict[str, Product]) -> Charge:
    product = products.get(line.product_id)
    return Charge(
        key=key,
        invoice_id=draft_id,
        contract_id=contract_id,
        product_id=line.product_id,
        product_tags=tuple(product.at(line.starting_at).tags) if product else (),
        credit_type_id=line.credit_type.id,
        starting_at=line.starting_at,
        ending_before=line.ending_before,
        amount=line.total,
        commit_amount=line.commit_total,
        commit_prices=tuple(line.commit_prices),
        pricing_group_values=line.pricing_group_values,
        presentation_group_values=line.presentation_group_values,
        quantity=line.quantity,
    )


def _grant_name(grant: Grant, products: dict[str, Product], at: datetime) -> str:
    product = products.get(grant.product_id)
    return grant.name or (product.at(at).name if product else grant.product_id)


def _applied_lines(rated, charge_ids: dict[str, str], burn: BurnDown, grants: CustomerGrants) -> dict:
    """One applied_commit_or_credit line per (invoice, segment): the drawdowns of its draft lines,
    summed. `charge_ids`: the draft slots, and the id their charges are keyed by."""
    line_of = {}
    for d, invoices in rated:
        for invoice in invoices:
            slot = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
            if slot not in charge_ids:
                continue
            for index, line in enumerate(invoice.line_items):
                line_of[f"{charge_ids[slot]}|{index}"] = (d, invoice, line)
    grant_by_id = {g.id: g for g in grants.grants}
    sums: dict[tuple, list] = {}
    for key, applications in burn.applications.items():
        if key not in line_of:
            continue  # a finalized or voided invoice's charge: its lines are stored
        d, invoice, line = line_of[key]
        for a in applications:
            group = (d.contract.id, d.period.starting_at, invoice.type, invoice.starting_at, a.grant_id, a.segment_id)
            entry = sums.setdefault(group, [Decimal(0), line.starting_at, line.ending_before, a, line.credit_type, invoice])
            entry[0] += a.amount
            entry[1] = min(entry[1], line.starting_at)
            if line.ending_before is not None and (entry[2] is None or line.ending_before > entry[2]):
                entry[2] = line.ending_before
    result: dict[tuple, list[LineItem]] = {}
    for (contract_id, period_start, type_, issued, grant_id, segment_id), (amount, start, end, a, credit_type, invoice) in sorted(
        sums.items(), key=lambda kv: tuple(str(x) for x in kv[0])
    ):
        if amount == 0:
            continue
        grant = grant_by_id[grant_id]
        result.setdefault((contract_id, period_start), []).append(
            LineItem(
                type=LineType.APPLIED_COMMIT_OR_CREDIT,
                name=grant.name or grant.id,
                product_id=grant.product_id,
                product_type=ProductType.FIXED,
                credit_type=credit_type,
                quantity=Decimal(1),
                unit_price=None,
                total=-amount,
                precise_total=-amount,
                starting_at=start,
                ending_before=end,
                commit_id=grant_id,
                commit_segment_id=segment_id,
                commit_type=grant.kind.value,
                counts_in_total=a.reduces_total,
                scheduled_at=issued if type_ is InvoiceType.SCHEDULED else None,
            )
        )
    return result


def _invoice_contract(grant: Grant, grants: CustomerGrants) -> str | None:
    return grant.contract_id or grants.documents[grant.id].get("invoice_contract_id")


def _purchase_lines(d: DuePeriod, grants: CustomerGrants, products: dict[str, Product]) -> list[LineItem]:
    """Prepaid commits' invoice schedule items due in the period, on the invoicing contract."""
    fiat = d.contract.rate_card.fiat_credit_type
    lines = []
    for grant in grants.grants:
        if grant.kind is not GrantKind.PREPAID or _invoice_contract(grant, grants) != d.contract.id:
            continue
        billed_here = ChargeWindow.of(d.contract, d.period)  # a period's end too, when consolidated
        for item in grant.invoice_schedule:
            if not billed_here.contains(item.timestamp):
                continue
            lines.append(
                LineItem(
                    type=LineType.COMMIT_PURCHASE,
                    name=_grant_name(grant, products, item.timestamp),
                    product_id=grant.product_id,
                    product_type=ProductType.FIXED,
                    credit_type=fiat,
                    quantity=item.quantity if item.quantity is not None else Decimal(1),
                    unit_price=item.unit_price if item.unit_price is not None else item.amount,
                    total=fiat.round(item.amount),
                    precise_total=item.amount,
                    starting_at=item.timestamp,
                    ending_before=None,
                    commit_id=grant.id,
                    commit_type=grant.kind.value,
                    scheduled_at=item.timestamp,
                )
            )
    return lines


def bills_true_up(d: DuePeriod, timestamp: datetime) -> bool:
    """Whether the period's SCHEDULED invoices bill a true-up due then: one in the period, or, for the
    last period of a contract that has ended, one due at or after its end (a postpaid commit's
    true-up at the contract's end, or after a transition moved the end earlier: never lost)."""
    if d.period.contains(timestamp):
        return True
    end = d.contract.ending_before
    return end is not None and d.period.ending_before == end and timestamp >= end


def _true_up_lines(
    d: DuePeriod, true_ups: Sequence[TrueUp], grants: CustomerGrants, products: dict[str, Product]
) -> list[LineItem]:
    """Postpaid shortfalls settled in the period, billed on the invoicing contract. A true-up of 0
    is billed too: the SCHEDULED invoice at the commit's invoice item is its settlement record, and
    cycle close can tell it is due without running the burn-down."""
    fiat = d.contract.rate_card.fiat_credit_type
    grant_by_id = {g.id: g for g in grants.grants}
    lines = []
    for true_up in true_ups:
        grant = grant_by_id[true_up.grant_id]
        if _invoice_contract(grant, grants) != d.contract.id or not bills_true_up(d, true_up.timestamp):
            continue
        lines.append(
            LineItem(
                type=LineType.POSTPAID_TRUEUP,
                name=_grant_name(grant, products, true_up.timestamp),
                product_id=grant.product_id,
                product_type=ProductType.FIXED,
                credit_type=fiat,
                quantity=Decimal(1),
                unit_price=true_up.amount,
                total=fiat.round(true_up.amount),
                precise_total=true_up.amount,
                starting_at=true_up.timestamp,
                ending_before=None,
                commit_id=grant.id,
                commit_segment_id=true_up.segment_id,
                commit_type=grant.kind.value,
                scheduled_at=true_up.timestamp,
            )
        )
    return lines


def _expected_true_ups(grants: CustomerGrants) -> list[TrueUp]:
    """Every postpaid commit's true-up, its amount unknown (0): where its SCHEDULED invoice will be."""
    return [
        TrueUp(g.id, g.access_schedule[0].id, g.product_id, g.contract_id, g.invoice_schedule[0].id,
               g.invoice_schedule[0].timestamp, Decimal(0))
        for g in grants.grants
        if g.kind is GrantKind.POSTPAID and g.invoice_schedule and g.access_schedule
    ]


class _NoUsage:
    """The usage of a closed period: its USAGE invoices are stored, so pricing it again only looks
    for SCHEDULED invoices, which never depend on usage."""

    measures_nothing = True  # build_draft_invoices skips the usage and composite lines it would price at 0

    def quantity(self, metric_id, group_values, start, end) -> Decimal:
        return Decimal(0)

    def group_values(self, metric_id, group_keys, start, end) -> list:
        return []


NO_USAGE = _NoUsage()


@dataclass(frozen=True, slots=True)
class DuePeriod:
    contract: Contract
    period: Period

    @property
    def key(self) -> tuple[str, datetime]:
        return self.contract.id, self.period.starting_at

    @property
    def usage_slot(self) -> str:
        return invoice_id(self.contract.id, self.period.starting_at, self.contract.rate_card.fiat_credit_type)

    def usage_closed(self, stored_slots) -> bool:
        """No usage lands on the period any more: its USAGE invoice is stored, or is never generated
        (before usage_statement_schedule.invoice_generation_starting_at; createHistoricalInvoices
        may store one)."""
        return self.usage_slot in stored_slots or not self.contract.usage_statement_schedule.generates_usage_invoice(self.period)


@dataclass
class _PeriodState:
    """Which of a period's slots are stored, and which are drafts."""

    due: DuePeriod
    records: list[StoredInvoice]
    regenerating: str | None = None  # the voided slot a regenerate recomputes
    finalized: dict[str, StoredInvoice] = field(init=False)
    awaiting: set[str] = field(init=False)  # voided slots not regenerated: no invoice, no draft
    closed: bool = field(init=False)  # the USAGE invoice is stored: usage lands nowhere any more

    def __post_init__(self) -> None:
        self.finalized = {r.slot: r for r in self.records if r.status == FINALIZED}
        self.awaiting = {r.slot for r in self.records if r.status == VOID} - self.finalized.keys()
        self.closed = self.due.usage_closed({r.slot for r in self.records})

    def is_draft(self, slot: str, type_: InvoiceType) -> bool:
        if slot == self.regenerating:
            return True
        if slot in self.finalized or slot in self.awaiting:
            return False
        return not (self.closed and type_ is InvoiceType.USAGE)

    @property
    def rated_with_usage(self) -> bool:
        return not self.closed or self.regenerating is not None

    @property
    def settled(self) -> bool:
        """Final for the burn-down: its USAGE invoice is finalized (draft charges checked apart)."""
        return self.due.usage_slot in self.finalized


@dataclass
class _PeriodView:
    state: _PeriodState
    drafts: list[DraftInvoice]  # draft slots, in assembly order
    # draft charges by slot, keyed by the id their charges carry (the slot, or a regenerated id)
    charges: dict[str, list[Charge]] = field(default_factory=dict)

    @property
    def current(self) -> list[DraftInvoice]:
        """The period's invoices: drafts and finalized ones, in assembly order."""
        fiat = self.state.due.contract.rate_card.fiat_credit_type
        stored = [
            DraftInvoice(r.id, r.invoice, self.state.due.contract, r.regenerated_from_invoice_id, custom_fields=r.custom_fields)
            for r in self.state.finalized.values()
        ]
        return sorted(self.drafts + stored, key=lambda d: _invoice_order(d.invoice, fiat))

    @property
    def voided(self) -> list[DraftInvoice]:
        records = sorted(
            (r for r in self.state.records if r.status == VOID),
            key=lambda r: (r.invoice.type is not InvoiceType.USAGE, r.invoice.starting_at, r.finalized_at, r.id),
        )
        return [
            DraftInvoice(r.id, r.invoice, self.state.due.contract, r.regenerated_from_invoice_id, custom_fields=r.custom_fields)
            for r in records
        ]


def _invoice_order(invoice: Invoice, fiat: CreditType) -> tuple:
    """assemble_invoices' order: USAGE first, then SCHEDULED by issue instant; fiat first."""
    return (
        invoice.type is not InvoiceType.USAGE,
        invoice.starting_at,
        invoice.credit_type != fiat,
        invoice.credit_type.name,
        invoice.credit_type.id,
    )


@dataclass(frozen=True)
class _Read:
    """What a read of one customer's invoices has read already, for pricing them."""

    products: dict[str, Product]
    grants: CustomerGrants | None  # the customer's own (a hierarchy's are read as a family)
    members: list[str]  # the other customers of its hierarchy
    usage: UsageSource  # the customer's
    # The balance checkpoint the records read start from (then only the records it does not
    # summarize were read), and how to read them all if it does not hold after all.
    checkpoint: BalanceCheckpoint | None = None
    all_records: Callable[[], list[StoredInvoice]] | None = None


@dataclass(frozen=True)
class _Computed:
    views: dict[tuple[str, datetime], _PeriodView]
    burn: BurnDown | None
    inputs: tuple | None


@dataclass(frozen=True)
class CloseOutlook:
    """A customer's due closes as of an instant, and when it may next have one (close_outlook)."""

    found: list[dict]
    next_at: datetime | None  # None: never, as its documents stand
    pending: bool  # something may become due that no instant predicts: read it again next run
    versions: dict[str, int]  # the version of each document item read (`contract#<id>`, `grant#<id>`)
    records: int = 0  # how many invoice records it was computed from


@dataclass(frozen=True)
class PeriodClose:
    """What closing one (contract, period) stores: the invoices due and not stored yet, with the
    drawdowns they made. `final_ids`: the period's FINALIZED invoices, those stored before too."""

    final_ids: list[str]
    new: list[StoredInvoice]
    checkpoint: BalanceCheckpoint | None = None  # the customer's, made with `new` (None: none any more)


def _beyond_their_contract(due: list[DuePeriod], records: list[StoredInvoice]) -> dict[tuple[str, datetime], DuePeriod]:
    """Periods with stored invoices that their (live) contract no longer bills: its end was moved
    before them, which Metronome allows and which leaves finalized invoices as they are. Listed
    from storage only."""
    live = {d.key for d in due}
    contracts = {d.contract.id: d.contract for d in due}
    found: dict[tuple[str, datetime], DuePeriod] = {}
    for record in records:
        key = (record.contract_id, record.period_start)
        if key not in live and record.contract_id in contracts:
            found.setdefault(key, DuePeriod(contracts[record.contract_id], Period(record.period_start, record.period_end)))
    return found


def _settled_reusable(grants: CustomerGrants, settled: set[str]) -> frozenset[str]:
    """Settled segments whose drawdowns a draft's burn-down can leave out: no draft line draws
    from a settled segment (its window is over and every invoice it served is final), and these
    hand nothing on either (no rollover from them, no postpaid true-up counting them)."""
    return frozenset(
        segment.id
        for grant in grants.grants
        if not grant.rolls_over and grant.kind is not GrantKind.POSTPAID
        for segment in grant.access_schedule
        if segment.id in settled
    )


def _serves(grant: Grant, contract_id: str) -> bool:
    """Whether `grant` may pay for the contract's charges (eligibility.grant_applies_to, products aside)."""
    if grant.contract_id is None:
        return grant.customer_contract_ids is None or contract_id in grant.customer_contract_ids
    return contract_id in (grant.contract_id, grant.rollover_contract_id) or contract_id in grant.child_contract_ids


def _overlaps(period: Period, start: datetime, end: datetime) -> bool:
    return period.starting_at < end and start < period.ending_before


class InvoiceService:
    def __init__(
        self,
        contracts: ContractService,
        usage_for: Callable[[Customer], UsageSource],
        clock: Callable[[], datetime],
        grants: GrantBook | None = None,
        records: InvoiceStore | None = None,
        reuse_settled: bool = True,
    ) -> None:
        self._contracts = contracts
        self._usage_for = usage_for
        self._clock = clock
        self._grants = grants
        self._records = records
        # False: reads of invoices and balances run the whole burn-down, every stored drawdown
        # replayed, no balance checkpoint (the reference the reuse is checked against; see
        # _compute's drafts_only and _checkpoint_tail).
        self._reuse_settled = reuse_settled

    @property
    def _checkpoints(self) -> bool:
        return self._reuse_settled and self._records is not None and self._grants is not None

    def with_usage(self, usage_for: Callable[[Customer], UsageSource]) -> InvoiceService:
        """The same invoices priced from other usage (previewEvents' events), nothing else changed."""
        return InvoiceService(self._contracts, usage_for, self._clock, self._grants, self._records, self._reuse_settled)

    # -- periods and inputs ----------------------------------------------------------------------
    def due_periods(
        self, customer_id: str, contract_id: str | None = None, until: datetime | None = None
    ) -> tuple[Customer, list[DuePeriod]]:
        """(contract, period) pairs with an invoice: periods started by `until` (now), oldest first."""
        if contract_id is None:
            customer, documents = self._contracts.customer_and_contracts(customer_id)
        else:
            customer = self._contracts.customer(customer_id)
            documents = self._documents(customer_id, contract_id)
        return customer, self._due_of(documents, now=self._clock() if until is None else until)

    def _due_of(self, documents: list[dict], now: datetime) -> list[DuePeriod]:
        # Each contract reads its rate card: independent reads, sent together.
        contracts = together([lambda document=document: self._contracts.contract(document) for document in documents])
        due = [DuePeriod(contract, p) for contract in contracts for p in contract.periods(until=now) if p.starting_at <= now]
        due.sort(key=lambda d: (d.period.starting_at, d.contract.starting_at, d.contract.id))
        return due

    def _documents(self, customer_id: str, contract_id: str | None) -> list[dict]:
        if contract_id is None:
            return self._contracts.list(customer_id)
        # That contract alone is read and interpreted, so that another one that no longer parses
        # cannot hide it (cycle close retries a failing customer contract by contract).
        try:
            document = self._contracts.get(customer_id, contract_id)
        except NotFound:
            return []
        return [] if document.get("archived_at") else [document]

    def contract_version(self, customer_id: str, contract_id: str) -> int | None:
        """The contract's stored version (None if it does not exist): what a finalization is
        conditional on, so that an edit committed between its pricing and its write is not missed."""
        try:
            return self._contracts.get(customer_id, contract_id)["_version"]
        except NotFound:
            return None

    def family(self, customer_id: str) -> list[str]:
        """The other customers of its hierarchy, priced together with it ([]: none)."""
        return family_members(customer_id, self._contracts.list)

    def parent_contracts(self, customer_id: str) -> list[dict]:
        """The parent contracts of its hierarchy (with their `_version`), read now ([]: none)."""
        return parent_contracts(customer_id, self._contracts.list)

    def contract_ids(self, customer_id: str) -> list[str]:
        """The customer's unarchived contracts, named even if one no longer parses."""
        return self._contracts.ids(customer_id)

    def pricing_inputs(self, customer: Customer) -> tuple[UsageSource, dict[str, Product]]:
        """What pricing a customer's periods reads: its usage and the catalog's products."""
        return self._usage_for(customer), self._contracts.products()

    def records(self, customer_id: str) -> list[StoredInvoice]:
        """The customer's finalized and voided invoices (none without a record store)."""
        return self._records.list_for_customer(customer_id) if self._records is not None else []

    # -- computing ---------------------------------------------------------------------------------
    def _compute(
        self,
        customer: Customer,
        due: list[DuePeriod],
        records: list[StoredInvoice],
        now: datetime,
        wanted: list[DuePeriod] | None = None,
        regenerating: StoredInvoice | None = None,
        regenerated_id: str | None = None,
        grants: CustomerGrants | None = None,
        family_records: bool = False,
        read: _Read | None = None,
        drafts_only: bool = False,
    ) -> _Computed:
        """The views of the `wanted` periods (all of `due` by default).

        Without commits or credits each period is priced on its own. With them, every period of the
        customer is priced (a balance carries from one invoice to the next), the burn-down runs once
        over all their draft lines and every stored invoice's drawdowns, and each draft gets its
        drawdowns, commit purchases and true-ups.

        In a customer hierarchy (services/hierarchy.py) the burn-down runs over the whole family:
        every member's periods, stored invoices and grants, each member priced from its own usage;
        only `customer`'s views are answered. `family_records`: `records` holds the members' too.

        A closed period's usage and composite lines are never priced again (`_NoUsage`): its USAGE
        invoices are stored, and only the charges that do not depend on usage can make new
        (SCHEDULED) invoices. `drafts_only`: only the views are wanted, not the burn-down's
        ledgers; the stored drawdowns that only take from settled segments (`_settled_reusable`)
        are then left out of the burn-down: no draft line can draw from those, so every draft's
        drawdowns are the same without them.
        """
        usages = {customer.id: self._usage_for(customer) if read is None else read.usage}
        members = self.family(customer.id) if read is None else read.members
        if members:
            wanted = list(due) if wanted is None else wanted
            due = list(due)
            records = list(records)
            for member in members:
                try:
                    member_customer, member_due = self.due_periods(member, until=now)
                except NotFound:
                    continue
                usages[member] = self._usage_for(member_customer)
                due += member_due
                if not family_records:
                    records += self.records(member)
            if self._grants is not None:
                grants = self._grants.of_family(customer.id, members)
        all_due = due
        carried: list[Charge] = []  # charges from the checkpoint's instant on, of records it summarizes
        plan = read.checkpoint if read is not None else None
        if plan is not None:  # only the periods from its instant, and their records
            tail = self._checkpoint_tail(plan, due, records, wanted, members, now)
            if tail is None:
                return self._without_checkpoint(customer, due, now, wanted, regenerating, regenerated_id, grants, read, drafts_only)
            due, records, carried = tail
        by_period: dict[tuple[str, datetime], list[StoredInvoice]] = {}
        for record in records:
            by_period.setdefault((record.contract_id, record.period_start), []).append(record)
        regen_key = None if regenerating is None else (regenerating.contract_id, regenerating.period_start)
        states = {
            d.key: _PeriodState(d, by_period.get(d.key, []), regenerating.slot if d.key == regen_key else None) for d in due
        }

        def charge_id(slot: str) -> str:
            """Draft charges are keyed by their slot; a regenerated slot's by the new invoice's id,
            since the voided invoice's drawdowns still carry the slot."""
            return regenerated_id if regenerating is not None and slot == regenerating.slot and regenerated_id else slot

        products = self._contracts.products() if read is None else read.products
        if grants is None and read is not None and not members:
            grants = read.grants
        if grants is None and self._grants is not None:
            grants = self._grants.of_customer(customer.id)
        if grants is None or not grants.grants:
            views = {}
            for d in due if wanted is None else wanted:
                state = states[d.key]
                invoices = build_draft_invoices(d.contract, products, d.period, self._usage_of(state, usages[d.contract.customer_id]))
                view = _PeriodView(state, [])
                for invoice in invoices:
                    slot = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                    if state.is_draft(slot, invoice.type):
                        view.drafts.append(_draft(d.contract, invoice, products))
                        view.charges[slot] = []  # nothing to draw from: no drawdown to freeze
                views[d.key] = view
            return _Computed(views, None, None)

        edges = segment_edges(grants.grants)
        validated: set[int] = set()  # a contract's periods share its object: validated with the first

        def priced(d: DuePeriod) -> tuple[Invoice, ...]:
            first = id(d.contract) not in validated
            validated.add(id(d.contract))
            usage = self._usage_of(states[d.key], usages[d.contract.customer_id])
            return build_draft_invoices(d.contract, products, d.period, usage, cuts=edges, validate=first)

        rated = [(d, priced(d)) for d in due]
        charges: list[Charge] = []
        credit_types: dict[str, CreditType] = {}
        charge_ids: dict[str, str] = {}
        draft_charges: dict[tuple[str, datetime], dict[str, list[Charge]]] = {}
        for d, invoices in rated:
            state = states[d.key]
            for invoice in invoices:
                slot = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                for line in invoice.line_items:
                    credit_types[line.credit_type.id] = line.credit_type
                if not state.is_draft(slot, invoice.type):
                    continue
                charge_ids[slot] = charge_id(slot)
                slot_charges = draft_charges.setdefault(d.key, {}).setdefault(slot, [])
                for index, line in enumerate(invoice.line_items):
                    if line.type in DRAWABLE:
                        charge = _charge(f"{charge_ids[slot]}|{index}", charge_ids[slot], d.contract.id, line, products)
                        slot_charges.append(charge)
                        charges.append(charge)
        settled = self._settled_segments(grants, states, draft_charges, now)
        reusable = _settled_reusable(grants, settled) if drafts_only else frozenset()
        for record in records:
            for credit_type_id, credit_type in record.credit_types().items():
                credit_types.setdefault(credit_type_id, credit_type)
            charges += record.charges(leaving_out=reusable)
        charges += carried
        tags = {p.id: tuple(p.at(self._clock()).tags) if p.versions else () for p in products.values()}
        # The digests were checked when the grants were read (_summarizes); the charges are checked here.
        if plan is not None and any(c.starting_at < plan.burn.at for c in charges if c.amount > 0):
            return self._without_checkpoint(customer, all_due, now, wanted, regenerating, regenerated_id, grants, read, drafts_only)
        burn = burn_down(grants.grants, charges, grants.manual_entries, tags, now, credit_types, settled_segments=settled,
                         resume=None if plan is None else plan.burn)
        applied = _applied_lines(rated, charge_ids, burn, grants)
        views = {}
        keys = None if wanted is None else {w.key for w in wanted}
        for d, invoices in rated:
            if keys is not None and d.key not in keys:
                continue
            state = states[d.key]
            lines = [line for inv in invoices for line in inv.line_items if line.type is not LineType.CPU_CONVERSION]
            lines += applied.get(d.key, [])
            lines += _purchase_lines(d, grants, products)
            lines += _true_up_lines(d, burn.true_ups, grants, products)
            view = _PeriodView(state, [])
            for invoice in assemble_invoices(d.contract, d.period, lines):
                slot = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                if state.is_draft(slot, invoice.type):
                    view.drafts.append(_draft(d.contract, invoice, products))
                    view.charges[slot] = draft_charges.get(d.key, {}).get(slot, [])
            views[d.key] = view
        return _Computed(views, burn, (grants.grants, charges, grants.manual_entries, tags, credit_types))

    def _without_checkpoint(self, customer, due, now, wanted, regenerating, regenerated_id, grants, read, drafts_only):
        """_compute from every record, the checkpoint set aside (it does not hold)."""
        assert read is not None and read.all_records is not None
        every = replace(read, checkpoint=None)
        return self._compute(customer, due, read.all_records(), now, wanted, regenerating, regenerated_id, grants,
                             read=every, drafts_only=drafts_only)

    @staticmethod
    def _checkpoint_tail(
        plan: BalanceCheckpoint, due: list[DuePeriod], records: list[StoredInvoice], wanted: list[DuePeriod] | None,
        members: list[str], now: datetime,
    ) -> tuple[list[DuePeriod], list[StoredInvoice], list[Charge]] | None:
        """What a computation from the checkpoint prices and replays: the periods starting at or after
        its instant, their records, and the charges from then on of the records it summarizes that
        drew on past it (`straddling`). None if it cannot answer: a hierarchy, a period wanted from
        before it, a record it counts on missing from the listing, a clock before it."""
        since = plan.burn.at
        assert not members, "a hierarchy is read without a checkpoint"
        if now < since or any(d.contract.payer is not None or d.contract.consolidated_usage for d in due):
            return None
        if wanted is not None and any(w.period.starting_at < since for w in wanted):
            return None
        later = [r for r in records if r.period_start >= since]
        straddling = [r for r in records if r.period_start < since and r.id in plan.straddling]
        if len(straddling) != len(plan.straddling):
            return None
        carried = [c for r in straddling for c in r.charges() if c.starting_at >= since]
        return [d for d in due if d.period.starting_at >= since], later, carried

    def _checkpoint_after(
        self, computed: _Computed, due: list[DuePeriod], records: list[StoredInvoice], new: list[StoredInvoice],
        grants: CustomerGrants | None, documents: list[dict], now: datetime, members: bool,
    ) -> BalanceCheckpoint | None:
        """The balance checkpoint once `new` is stored: at the start of the earliest period that still
        has a draft, a voided invoice awaiting its regenerate or its USAGE invoice to come (never
        after `now`), every invoice before it being final. None for a hierarchy or a consolidation
        (their balances are shared), or without grants."""
        if members or grants is None or not grants.grants or computed.inputs is None:
            return None
        if any(d.contract.payer is not None or d.contract.consolidated_usage for d in due):
            return None
        finalized = {r.slot for r in new}
        slots = {r.slot for r in records} | finalized
        open_at = [now]
        for d in due:
            view = computed.views.get(d.key)
            if view is None:
                return None
            drafts = [draft for draft in view.drafts if draft.id not in finalized]
            awaiting = view.state.awaiting
            if drafts or awaiting or not d.usage_closed(slots):
                open_at.append(d.period.starting_at)
            open_at += [c.starting_at for draft in drafts for c in view.charges.get(draft.id, [])]
        since = min(open_at)
        every = records + new
        frozen = [c for r in every for c in r.charges()]
        straddling = tuple(sorted(
            r.id for r in every if r.period_start < since and any(c.starting_at >= since and c.amount > 0 for c in r.charges())
        ))
        listed_from = min([r.period_start for r in every if r.id in straddling], default=since)
        grant_list, _, manual, tags, credit_types = computed.inputs
        burn = checkpoint_burn(grant_list, frozen, manual, tags, since, credit_types)
        versions = tuple(sorted((d["id"], d["_version"]) for d in documents))
        return BalanceCheckpoint(burn, listed_from, straddling, versions, sum(1 for r in records if r.status == VOID))

    def _repaired(
        self, customer: Customer, documents: list[dict], due: list[DuePeriod], grants: CustomerGrants | None,
        members: list[str], records: list[StoredInvoice], usage: UsageSource, products: dict[str, Product],
        written: int, voids: int, now: datetime,
    ) -> BalanceCheckpoint | None:
        """A checkpoint made by this read, which read every record (the stored one could not be used:
        an edit, a void, a regenerate since), and stored if nothing was finalized or voided since the
        count was read; None when there is nothing to make it from (no grants, a hierarchy, a listing
        behind the records written or their voids)."""
        if not self._checkpoints or members or grants is None or not grants.grants or len(records) < written:
            return None
        if sum(1 for r in records if r.status == VOID) != voids:  # the listing lags (or voids before the count)
            return None
        if any(d.contract.payer is not None or d.contract.consolidated_usage for d in due):
            return None
        computed = self._compute(customer, due, records, now, None, grants=grants, read=_Read(products, grants, members, usage))
        plan = self._checkpoint_after(computed, due, records, [], grants, documents, now, False)
        if plan is None or plan.voids != voids or not self._records.put_checkpoint(customer.id, written, voids, plan):
            return None
        return plan

    @staticmethod
    def _summarizes(plan: BalanceCheckpoint, grants: CustomerGrants | None) -> bool:
        """The grants' segments and the manual entries before the checkpoint are those it was made
        from (billing.balances.resumable's digests; _compute checks its charges)."""
        if grants is None:
            return False
        at = plan.burn.at
        return (grants_digest(grants.grants, at) == plan.burn.grants_digest
                and manual_digest(grants.manual_entries, at) == plan.burn.manual_digest)

    @staticmethod
    def _usable(plan: BalanceCheckpoint | None, documents: list[dict]) -> BalanceCheckpoint | None:
        """The stored checkpoint, if it was made with the contracts as they are now (an edit may have
        moved what it summarizes: a read then replays every record, until a finalization makes a
        new one)."""
        if plan is None or dict(plan.contracts) != {d["id"]: d.get("_version") for d in documents}:
            return None
        return plan

    @staticmethod
    def _usage_of(state: _PeriodState, usage: UsageSource) -> UsageSource:
        return usage if state.rated_with_usage else NO_USAGE

    @staticmethod
    def _settled_segments(
        grants: CustomerGrants,
        states: dict[tuple[str, datetime], _PeriodState],
        draft_charges: dict[tuple[str, datetime], dict[str, list[Charge]]],
        now: datetime,
    ) -> set[str]:
        """Segments whose every invoice is final: the window is over, and every period it overlaps,
        of every contract the grant serves, has its USAGE invoice finalized and no draft line to draw."""
        settled = set()
        for grant in grants.grants:
            windows = [(s.id, s.starting_at, s.ending_before) for s in grant.access_schedule]
            if grant.rolls_over:
                rollovers = [s.rolled_over(Decimal(0)) for s in grant.access_schedule]
                windows += [(c.id, c.starting_at, c.ending_before) for c in rollovers]
            for segment_id, start, end in windows:
                if end > now:
                    continue
                served = [
                    state
                    for state in states.values()
                    if _serves(grant, state.due.contract.id) and _overlaps(state.due.period, start, end)
                ]
                if all(state.settled and not any(draft_charges.get(state.due.key, {}).values()) for state in served):
                    settled.add(segment_id)
        return settled

    def _views(
        self, customer: Customer, due: list[DuePeriod], wanted: list[DuePeriod], records=None, read: _Read | None = None
    ) -> list[_PeriodView]:
        records = self.records(customer.id) if records is None else records
        computed = self._compute(customer, due, records, self._clock(), wanted, read=read, drafts_only=self._reuse_settled)
        return [computed.views[w.key] for w in wanted]

    def burn_down(self, customer_id: str) -> BurnDown:
        """The customer's burn-down now, over every invoice of every contract."""
        return self._burn_run(customer_id).burn

    def burn_inputs(self, customer_id: str) -> tuple:
        """(grants, charges, manual entries, catalog tags, credit types): what burn_down reads."""
        return self._burn_run(customer_id).inputs

    def _burn_run(self, customer_id: str) -> _Computed:
        assert self._grants is not None, "balances need the grant book"
        customer, due = self.due_periods(customer_id)
        grants = self._grants.of_customer(customer_id)
        if not grants.grants:  # nothing to burn: no need to price
            products = self._contracts.products()
            tags = {p.id: tuple(p.at(self._clock()).tags) if p.versions else () for p in products.values()}
            return _Computed({}, burn_down((), (), (), tags, self._clock()), ((), [], (), tags, {}))
        return self._compute(customer, due, self.records(customer_id), self._clock(), grants=grants)

    def balances_burn_down(self, customer_id: str) -> BurnDown:
        """The customer's burn-down now, for its balances: from the balance checkpoint when it holds
        (only the records it does not summarize are read, and only the periods from its instant
        priced), else as burn_down. Its ledger then holds only the entries from the checkpoint on."""
        assert self._grants is not None, "balances need the grant book"
        assert self._records is not None
        (customer, documents), (stored, written, voids), products = together([
            lambda: self._contracts.customer_and_contracts(customer_id),
            lambda: self._records.checkpoint_item(customer_id) if self._checkpoints else (None, 0, 0),
            self._contracts.products,
        ])
        plan, now = self._usable(stored, documents), self._clock()
        usage = self._usage_for(customer)
        due, grants, members, _, records = together([
            lambda: self._due_of(documents, now),
            lambda: self._grants.of_customer(customer_id, documents),
            lambda: family_members(customer_id, lambda member: documents if member == customer_id else self._contracts.list(member)),
            getattr(usage, "read_metrics", lambda: None),
            (lambda: self.records(customer_id)) if plan is None else (lambda: self._records.list_since(customer_id, plan.listed_from)),
        ])
        if members or not grants.grants:
            return self.burn_down(customer_id)
        if plan is not None and not self._summarizes(plan, grants):  # a grant or a ledger entry before it changed
            plan, records = None, self.records(customer_id)
        every = records if plan is None else None  # every record, if that is what was read
        if plan is None and written:
            plan = self._repaired(customer, documents, due, grants, members, records, usage, products, written, voids, now)
            if plan is not None:
                records = [r for r in records if r.period_start >= plan.listed_from]
        read = _Read(products, grants, members, usage, plan, lambda: every if every is not None else self.records(customer_id))
        return self._compute(customer, due, records, now, [], grants=grants, read=read).burn

    def archived_burn_down(self, customer_id: str, grants: CustomerGrants) -> BurnDown:
        """The ledgers and balances of the customer's archived grants (`grants.archived`): the
        drawdowns finalized invoices made from them, replayed, and their manual entries. No draft
        charge is in it, so an archived grant draws nothing new, as in pricing (where it is absent)."""
        records = self.records(customer_id)
        charges = [c for record in records for c in record.charges() if c.applications is not None]
        credit_types = {line.credit_type.id: line.credit_type for r in records for line in r.invoice.line_items}
        archived = {g.id for g in grants.archived}
        manual = [e for e in grants.manual_entries if e.grant_id in archived]
        now = self._clock()
        tags = {p.id: tuple(p.at(now).tags) if p.versions else () for p in self._contracts.products().values()}
        return burn_down(grants.archived, charges, manual, tags, now, credit_types)

    def commit_invoice_ids(self, customer_id: str, grants: CustomerGrants) -> dict[str, str]:
        """The invoice that bills each commit invoice schedule item, by item id: the SCHEDULED
        invoice of the commit's invoicing contract at the item's timestamp (a prepaid commit's
        purchase, a postpaid commit's true-up), for the items whose invoice exists, i.e. whose
        billing period has begun on a live contract. That is the draft's id, the FINALIZED invoice
        of the slot once stored (after a void, the one regenerated from it), or the VOID one while
        it awaits a regenerate. Read without pricing anything."""
        billed: dict[str, tuple[str, datetime]] = {}  # item id -> (invoicing contract, timestamp)
        purchases: set[str] = set()
        for grant in grants.grants:
            contract_id = _invoice_contract(grant, grants)
            if grant.kind is GrantKind.PREPAID and contract_id is not None:
                billed |= {item.id: (contract_id, item.timestamp) for item in grant.invoice_schedule}
                purchases |= {item.id for item in grant.invoice_schedule}
        by_id = {g.id: g for g in grants.grants}
        for true_up in _expected_true_ups(grants):
            contract_id = _invoice_contract(by_id[true_up.grant_id], grants)
            if contract_id is not None:
                billed[true_up.invoice_item_id] = (contract_id, true_up.timestamp)
        if not billed:
            return {}
        _, due = self.due_periods(customer_id)
        stored: dict[str, str] = {}
        for record in sorted(self.records(customer_id), key=lambda r: (r.status == FINALIZED, r.finalized_at)):
            stored[record.slot] = record.id  # a slot's FINALIZED record wins over voided ones
        ids = {}
        for item_id, (contract_id, timestamp) in billed.items():
            if item_id in purchases:
                d = next((d for d in due if d.contract.id == contract_id
                          and ChargeWindow.of(d.contract, d.period).contains(timestamp)), None)
            else:
                d = next((d for d in due if d.contract.id == contract_id and bills_true_up(d, timestamp)), None)
            if d is not None:
                fiat = d.contract.rate_card.fiat_credit_type
                if item_id in purchases and on_usage_invoice(d.contract, d.period, timestamp):
                    slot = invoice_id(contract_id, d.period.starting_at, fiat)
                else:
                    slot = invoice_id(contract_id, timestamp, fiat, InvoiceType.SCHEDULED)
                ids[item_id] = stored.get(slot, slot)
        return ids

    # -- reads -------------------------------------------------------------------------------------
    def list(
        self,
        customer_id: str,
        *,
        offset: int = 0,
        limit: int = 100,
        status: str | None = None,
        starting_on: datetime | None = None,
        ending_before: datetime | None = None,
        contract_id: str | None = None,
        credit_type_id: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[DraftInvoice], int | None]:
        """A page of invoices and the offset of the next page (None: last page).

        A period lists its drafts and finalized invoices, then its voided ones. Only the page's
        periods are priced (none when listing FINALIZED or VOID invoices: those are stored). Filters
        on dates narrow the (contract, period) list first. A page counts periods, so a period with
        several invoices may add more than one."""
        if status is not None and status.upper() not in ("DRAFT", FINALIZED, VOID):
            raise InvalidInput("status", "must be DRAFT, FINALIZED or VOID")
        wanted_status = None if status is None else status.upper()
        customer, all_due = self.due_periods(customer_id)
        records = self.records(customer_id)
        beyond = _beyond_their_contract(all_due, records)
        due = sorted(all_due + list(beyond.values()), key=lambda d: (d.period.starting_at, d.contract.starting_at, d.contract.id))
        due = [d for d in due if contract_id is None or d.contract.id == contract_id]
        # ending_before is exclusive and so is a period's end: a period "ends before" T when its
        # end is at or before T.
        due = [
            d
            for d in due
            if (starting_on is None or d.period.starting_at >= starting_on)
            and (ending_before is None or d.period.ending_before <= ending_before)
        ]
        if newest_first:
            due.reverse()

        def wanted(invoice: DraftInvoice) -> bool:
            return (wanted_status is None or invoice.invoice.status == wanted_status) and (
                credit_type_id is None or invoice.invoice.credit_type.id == credit_type_id
            )

        page: list[DraftInvoice] = []
        position = offset
        while position < len(due) and len(page) < limit:
            take = due[position : position + max(1, limit - len(page))]
            if wanted_status in (FINALIZED, VOID):
                groups = [self._stored_of(d, records, wanted_status) for d in take]
            else:
                live = [d for d in take if d.key not in beyond]
                views = iter(self._views(customer, all_due, live, records) if live else ())
                groups = []
                for d in take:
                    if d.key in beyond:
                        groups.append(self._stored_of(d, records, FINALIZED) + self._stored_of(d, records, VOID))
                    else:
                        view = next(views)
                        groups.append(view.current + self._consolidated_draft(d, view.current, records) + view.voided)
            for invoices in groups:
                if len(page) >= limit:
                    break
                page += [invoice for invoice in invoices if wanted(invoice)]
                position += 1
        return page, position if position < len(due) else None

    @staticmethod
    def _stored_of(d: DuePeriod, records: list[StoredInvoice], status: str) -> list[DraftInvoice]:
        state = _PeriodState(d, [r for r in records if (r.contract_id, r.period_start) == d.key])
        view = _PeriodView(state, [])
        return view.current if status == FINALIZED else view.voided

    def get(self, customer_id: str, invoice_id_: str) -> DraftInvoice:
        record = self._records.get(invoice_id_) if self._records is not None else None
        if record is not None:
            self._contracts.customer(customer_id)
            if record.customer_id != customer_id:
                raise NotFound(f"invoice {invoice_id_} not found for customer {customer_id}")
            return DraftInvoice(record.id, record.invoice, None, record.regenerated_from_invoice_id, custom_fields=record.custom_fields)
        # What pricing reads, sent together in two rounds (services/together.py): what the
        # customer's id names, then what its contracts name (rate cards, grants, the hierarchy).
        # With a balance checkpoint (stored with the records), only the records it does not summarize.
        (customer, documents), (stored_checkpoint, written, voids), products = together([
            lambda: self._contracts.customer_and_contracts(customer_id),
            lambda: self._records.checkpoint_item(customer_id) if self._checkpoints else (None, 0, 0),
            self._contracts.products,
        ])
        now = self._clock()
        plan = self._usable(stored_checkpoint, documents)

        def contracts_of(member: str) -> list[dict]:
            return documents if member == customer_id else self._contracts.list(member)

        usage = self._usage_for(customer)
        due, grants, members, _, records = together([
            lambda: self._due_of(documents, now),
            lambda: self._grants.of_customer(customer_id, documents) if self._grants is not None else None,
            lambda: family_members(customer_id, contracts_of),
            getattr(usage, "read_metrics", lambda: None),  # what a usage source reads first, if anything
            (lambda: self.records(customer_id)) if plan is None else (lambda: self._records.list_since(customer_id, plan.listed_from)),
        ])
        every: list[StoredInvoice] = [] if plan is not None else records

        def all_records() -> list[StoredInvoice]:
            if not every:
                every.extend(self.records(customer_id))
            return every

        if plan is not None and (members or not self._summarizes(plan, grants)):
            # A hierarchy shares its balances; or a grant or a ledger entry before it changed.
            plan, records = None, all_records()
        if plan is None and written:
            plan = self._repaired(customer, documents, due, grants, members, records, usage, products, written, voids, now)
            if plan is not None:
                records = [r for r in records if r.period_start >= plan.listed_from]
        read = _Read(products, grants, members, usage, plan, all_records)
        if plan is not None:  # periods before the checkpoint are final: no draft there
            due_drafts = [d for d in due if d.period.starting_at >= plan.burn.at]
        else:
            due_drafts = due
        for d in due:  # a hierarchy parent's consolidated draft: its id is known without pricing
            if d.contract.consolidated_usage and consolidation.consolidated_id(d) == invoice_id_:
                view = self._views(customer, due, [d], all_records(), replace(read, checkpoint=None))[0]
                found = self._consolidated_draft(d, view.current, all_records())
                if found:
                    return found[0]
        # Usage invoice ids are known without pricing; scheduled ones need the period priced.
        for d in due_drafts:
            if d.usage_slot == invoice_id_:
                found = [i for i in self._views(customer, due, [d], records, read)[0].drafts if i.id == invoice_id_]
                if found:
                    return found[0]
        for view in self._views(customer, due, due_drafts, records, read):
            for draft in view.drafts:
                if draft.id == invoice_id_:
                    return draft
        raise NotFound(f"invoice {invoice_id_} not found for customer {customer_id}")

    # -- cycle close -------------------------------------------------------------------------------
    def close_period(
        self,
        customer_id: str,
        contract_id: str,
        period_start: datetime,
        as_of: datetime,
        grace: timedelta,
        records: list[StoredInvoice],
        finalized_at: datetime,
        family_records: bool = False,
    ) -> PeriodClose:
        """The period's invoices due as of `as_of` and not stored yet, as FINALIZED records priced
        exactly as a read would price them now: the USAGE ones once the period's end plus `grace`
        has passed, SCHEDULED ones at their issue instant (one holding a postpaid true-up also waits
        `grace`, and for every USAGE invoice its commit served to be stored)."""
        now = max(self._clock(), as_of)
        customer, documents = self._contracts.customer_and_contracts(customer_id)
        due = self._due_of(documents, now)
        target = next((d for d in due if d.contract.id == contract_id and d.period.starting_at == period_start), None)
        if target is None:
            raise PeriodNotFound(
                f"contract {contract_id} of customer {customer_id} has no billing period starting {format_rfc3339(period_start)}"
            )
        grants = self._grants.of_customer(customer_id, documents) if self._grants is not None else None
        # Every period's view: the balance checkpoint stored with the new records starts where the
        # first of them still has a draft.
        computed = self._compute(customer, due, records, now, None, grants=grants, family_records=family_records)
        view = computed.views[target.key]
        stored = {r.slot for r in records}
        closed = {d.key: d.usage_closed(stored) for d in due}
        new = []
        for draft in view.drafts:  # USAGE invoices come first
            invoice = draft.invoice
            if invoice.type is InvoiceType.USAGE:
                if target.period.ending_before + grace > as_of:
                    continue
                closed[target.key] = True  # stored with the rest, from the same burn-down
            elif not self._scheduled_due(invoice, as_of, grace, grants, due, closed):
                continue
            new.append(self._record(draft, target, view.charges.get(draft.id, []), computed.burn, draft.id, finalized_at))
        new += self._consolidated_record(target, new, records, now, finalized_at)
        final_ids = [i.id for i in view.current if i.invoice.status == FINALIZED] + [r.id for r in new]
        checkpoint = self._checkpoint_after(computed, due, records, new, grants, documents, now, family_records) if new else None
        return PeriodClose(final_ids, new, checkpoint)

    def regenerated(
        self, voided: StoredInvoice, new_id: str, records: list[StoredInvoice], finalized_at: datetime,
        family_records: bool = False,
    ) -> StoredInvoice:
        """A voided invoice's slot recomputed from current data, as a FINALIZED record `new_id`."""
        now = self._clock()
        customer, due = self.due_periods(voided.customer_id, until=now)
        target = next((d for d in due if d.key == (voided.contract_id, voided.period_start)), None)
        if target is None:
            raise InvalidInput("id", "the invoice's contract is archived or no longer bills that period")
        computed = self._compute(
            customer, due, records, now, [target], regenerating=voided, regenerated_id=new_id, family_records=family_records
        )
        view = computed.views[target.key]
        draft = next((d for d in view.drafts if d.id == voided.slot), None)
        if draft is None:  # nothing is billed in that slot any more: an empty invoice
            empty = replace(voided.invoice, line_items=(), subtotal=Decimal(0), total=Decimal(0), status="DRAFT")
            draft = DraftInvoice(voided.slot, empty, target.contract)
        record = self._record(draft, target, view.charges.get(voided.slot, []), computed.burn, new_id, finalized_at)
        return replace(record, regenerated_from_invoice_id=voided.id)

    @staticmethod
    def _record(
        draft: DraftInvoice, d: DuePeriod, charges: list[Charge], burn: BurnDown | None, record_id: str, finalized_at: datetime
    ) -> StoredInvoice:
        """A draft frozen: its lines as priced, and the drawdowns its charges made in that burn-down."""
        drawdowns = []
        for charge in charges:
            applications = burn.applications.get(charge.key, ()) if burn is not None else ()
            if applications:
                key = f"{record_id}|{len(drawdowns)}"
                drawdowns.append(replace(charge, key=key, invoice_id=record_id, finalized=True, applications=applications))
        return StoredInvoice(
            id=record_id,
            slot=draft.id,
            customer_id=draft.invoice.customer_id,
            contract_id=d.contract.id,
            period_start=d.period.starting_at,
            period_end=d.period.ending_before,
            invoice=replace(draft.invoice, status=FINALIZED),
            drawdowns=tuple(drawdowns),
            finalized_at=finalized_at,
        )

    # -- hierarchies: a parent's consolidated invoices (services/consolidation.py) ------------------
    def _consolidated_draft(self, d: DuePeriod, current: list[DraftInvoice], records: list[StoredInvoice]) -> list[DraftInvoice]:
        """A CONCATENATE parent's period: its consolidated invoice as a DRAFT until cycle close
        stores it (stored, it is one of the period's records). [] for any other period."""
        if not d.contract.consolidated_usage or not consolidation.is_concatenating(self._contracts, d):
            return []
        cid = consolidation.consolidated_id(d)
        if any(r.slot == cid for r in records):
            return []
        parent_usage = consolidation.parent_usage_of(d, [(i.id, i.invoice) for i in current])
        children = []
        for s in consolidation.child_slots(self._contracts, self.due_periods, d):
            try:
                found = self.get(s.customer_id, s.slot)
                voided = self._records.get(s.slot) if found.invoice.status == VOID and self._records is not None else None
                if voided is not None and voided.regenerated_invoice_id is not None:  # the slot's invoice now
                    found = self.get(s.customer_id, voided.regenerated_invoice_id)
            except NotFound:
                continue
            if found.invoice.status != VOID:
                children.append(consolidation.Constituent(found.id, found.invoice))
        invoice = consolidation.compose(d, parent_usage, children)
        return [DraftInvoice(cid, replace(invoice, status="DRAFT"), d.contract)]

    def _consolidated_record(
        self, d: DuePeriod, new: list[StoredInvoice], records: list[StoredInvoice], until: datetime, finalized_at: datetime
    ) -> list[StoredInvoice]:
        """The parent period's consolidated invoice as a FINALIZED record, composed from stored
        records only, once the parent's USAGE invoice and every consolidating child's are FINALIZED
        (`records` holds the family's); [] before then, once stored, or for any other period."""
        if not d.contract.consolidated_usage or not consolidation.is_concatenating(self._contracts, d):
            return []
        cid = consolidation.consolidated_id(d)
        if any(r.slot == cid for r in records):
            return []
        own = [r for r in records if r.status == FINALIZED and (r.contract_id, r.period_start) == d.key] + new
        parent_usage = consolidation.parent_usage_of(d, [(r.id, r.invoice) for r in own])
        if parent_usage is None:
            return []
        slots = consolidation.child_slots(self._contracts, self.due_periods, d, until=until)
        children = consolidation.finalized_children(slots, records)
        if children is None:
            return []
        invoice = consolidation.compose(d, parent_usage, children)
        return [StoredInvoice(
            id=cid, slot=cid, customer_id=d.contract.customer_id, contract_id=d.contract.id,
            period_start=d.period.starting_at, period_end=d.period.ending_before,
            invoice=invoice, drawdowns=(), finalized_at=finalized_at,
        )]

    def _consolidation_due(self, d: DuePeriod, stored: set[str], as_of: datetime) -> bool:
        """The parent period's USAGE invoice is stored and its consolidated invoice is not, while
        every consolidating child's is finalized: a close stores the consolidated invoice."""
        if consolidation.consolidated_id(d) in stored or self._records is None:
            return False
        if not consolidation.is_concatenating(self._contracts, d):
            return False
        slots = consolidation.child_slots(self._contracts, self.due_periods, d, until=as_of)
        records = [r for customer in sorted({s.customer_id for s in slots}) for r in self._records.list_for_customer(customer)]
        return consolidation.finalized_children(slots, records) is not None

    def _scheduled_due(
        self,
        invoice: Invoice,
        as_of: datetime,
        grace: timedelta,
        grants: CustomerGrants | None,
        due: list[DuePeriod],
        closed: dict[tuple[str, datetime], bool],
    ) -> bool:
        if invoice.starting_at > as_of:
            return False
        true_ups = [line for line in invoice.line_items if line.type is LineType.POSTPAID_TRUEUP]
        if not true_ups:
            return True
        if invoice.starting_at + grace > as_of or grants is None:
            return False
        # A true-up is what usage did not consume: wait until every invoice that could consume is stored.
        by_id = {g.id: g for g in grants.grants}
        for line in true_ups:
            grant = by_id.get(line.commit_id or "")
            segment = grant.segment(line.commit_segment_id or "") if grant is not None else None
            if segment is None:
                continue
            for d in due:
                if (grant.contract_id is None or d.contract.id == grant.contract_id) and _overlaps(
                    d.period, segment.starting_at, segment.ending_before
                ):
                    if not closed[d.key]:
                        return False
        return True

    def due_closes(
        self,
        customer_id: str,
        as_of: datetime,
        grace: timedelta,
        records: list[StoredInvoice],
        unpublished_before: datetime | None = None,
        contract_id: str | None = None,
    ) -> list[dict]:
        """The customer's periods with an invoice due as of `as_of` and not stored yet (see
        close_period), found without reading usage: {customer_id, contract_id, period_start, kind}.
        With `unpublished_before`, also the periods with a FINALIZED invoice never published and
        not claimed for publication since then, finalized before then or regenerated (whenever).
        With `contract_id`, only that contract's."""
        return self.close_outlook(customer_id, as_of, grace, records, unpublished_before, contract_id).found

    def close_outlook(
        self,
        customer_id: str,
        as_of: datetime,
        grace: timedelta,
        records: list[StoredInvoice],
        unpublished_before: datetime | None = None,
        contract_id: str | None = None,
    ) -> CloseOutlook:
        """due_closes' periods, and when the customer may next have one (the cycle-close wake index,
        services/cycle_close.py): the earliest instant after `as_of` at which a period ends (its
        USAGE invoice, after `grace`), a new period or a contract starts, or an unstored SCHEDULED
        invoice is issued; `pending` when something may become due that only a later read can tell
        (a consolidation waiting for its children, an invoice waiting to be published)."""
        seen: dict[str, int] = {}
        documents = self._documents(customer_id, contract_id)
        customer = self._contracts.customer(customer_id)
        due: list[DuePeriod] = []
        wakes: list[datetime] = []
        for document in documents:
            seen[f"contract#{document['id']}"] = document["_version"]
            contract = self._contracts.contract(document)
            periods = [p for p in contract.periods(until=as_of) if p.starting_at <= as_of]
            due += [DuePeriod(contract, p) for p in periods]
            wakes += [contract.starting_at] + [p.ending_before for p in periods[-1:]]  # a contract, a period starts
        due.sort(key=lambda d: (d.period.starting_at, d.contract.starting_at, d.contract.id))
        stored = {r.slot for r in records}
        closed = {d.key: d.usage_closed(stored) for d in due}
        live = {d.key for d in due}
        unpublished = []
        pending = False
        for r in records:
            if r.status != FINALIZED or r.published_at is not None or (r.contract_id, r.period_start) not in live:
                continue
            if unpublished_before is not None and (
                # The run that finalized it had its chance; no run finalizes a regenerated invoice.
                (r.finalized_at < unpublished_before or r.regenerated_from_invoice_id is not None)
                and (r.publish_claimed_at is None or r.publish_claimed_at < unpublished_before)
            ):
                unpublished.append(r)
            else:
                pending = True  # its publication may yet fail
        products = self._contracts.products()
        grants = self._grants.of_customer(customer_id) if self._grants is not None else None
        if grants is not None:
            seen |= {f"grant#{i}": doc["_version"] for i, doc in grants.documents.items() if "_version" in doc}
        expected_true_ups = _expected_true_ups(grants) if grants is not None else []
        found = []
        for d in due:
            start = format_rfc3339(d.period.starting_at)
            item = {"customer_id": customer_id, "contract_id": d.contract.id, "period_start": start}
            if not closed[d.key]:
                wakes.append(d.period.ending_before + grace)
            if d.period.ending_before + grace <= as_of and not closed[d.key]:
                found.append(item | {"kind": InvoiceType.USAGE.value})
            elif d.usage_slot in stored and d.contract.consolidated_usage and self._consolidation_due(d, stored, as_of):
                found.append(item | {"kind": InvoiceType.USAGE.value})  # its children finalized after it
            elif (d.usage_slot in stored and d.contract.consolidated_usage and self._records is not None
                  and consolidation.consolidated_id(d) not in stored and consolidation.is_concatenating(self._contracts, d)):
                pending = True  # its children's invoices are not all finalized yet
            lines = [line for inv in build_draft_invoices(d.contract, products, d.period, NO_USAGE) for line in inv.line_items]
            if grants is not None:
                lines += _purchase_lines(d, grants, products) + _true_up_lines(d, expected_true_ups, grants, products)
            for invoice in assemble_invoices(d.contract, d.period, lines):
                slot = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                if invoice.type is not InvoiceType.SCHEDULED or slot in stored:
                    continue
                if self._scheduled_due(invoice, as_of, grace, grants, due, closed):
                    found.append(item | {"kind": InvoiceType.SCHEDULED.value})
                    break
                # Not due yet: at its issue instant (a true-up also waits out the grace). One whose
                # instant has passed waits for periods whose own ends are among the wakes.
                true_up = any(line.type is LineType.POSTPAID_TRUEUP for line in invoice.line_items)
                wakes.append(invoice.starting_at + (grace if true_up else timedelta(0)))
        for record in unpublished:
            found.append(
                {
                    "customer_id": customer_id,
                    "contract_id": record.contract_id,
                    "period_start": format_rfc3339(record.period_start),
                    "kind": record.invoice.type.value,
                }
            )
        later = [w for w in wakes if w > as_of]
        return CloseOutlook(found, min(later) if later else None, pending, seen, len(records))
