"""Draft invoices, computed at read time from the counters and never stored.

Every period of every live (unarchived) contract, up to and including the one holding "now",
has a draft invoice per credit type with charges (the rate card's fiat type always). Its id is a
UUIDv5 of (contract, period start, credit type), so the same draft has the same id on every read
and a later finalized invoice can keep it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable

from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.balances import BurnDown, Charge, Grant, GrantKind, burn_down, segment_edges
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

INVOICE_NAMESPACE = uuid.UUID("6f1c2b0e-5d3a-4c1e-9a57-7b7f1e0c2d41")


def invoice_id(contract_id: str, starting_at: datetime, credit_type: CreditType, type: InvoiceType = InvoiceType.USAGE) -> str:
    """Stable per (contract, invoice type, period start or issue instant, credit type)."""
    scope = "" if type is InvoiceType.USAGE else f"{type.value}|"
    return str(uuid.uuid5(INVOICE_NAMESPACE, f"{contract_id}|{scope}{format_rfc3339(starting_at)}|{credit_type.id}"))


@dataclass(frozen=True, slots=True)
class DraftInvoice:
    id: str
    invoice: Invoice
    contract: Contract


# Lines commits and credits may pay for (Metronome: usage, subscription and composite products).
DRAWABLE = (LineType.USAGE, LineType.SUBSCRIPTION)


def _draft(contract: Contract, invoice: Invoice) -> DraftInvoice:
    return DraftInvoice(invoice_id(contract.id, invoice.starting_at, invoice.credit_type, invoice.type), invoice, contract)


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
        pricing_group_values=line.pricing_group_values,
        presentation_group_values=line.presentation_group_values,
    )


def _grant_name(grant: Grant, products: dict[str, Product], at: datetime) -> str:
    product = products.get(grant.product_id)
    return grant.name or (product.at(at).name if product else grant.product_id)


def _applied_lines(rated, charges: list[Charge], burn: BurnDown, grants: CustomerGrants, credit_types) -> dict:
    """One applied_commit_or_credit line per (invoice, segment): the drawdowns of its lines, summed."""
    line_of = {}
    for d, invoices in rated:
        for invoice in invoices:
            draft_id = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
            for index, line in enumerate(invoice.line_items):
                line_of[f"{draft_id}|{index}"] = (d, invoice, line)
    grant_by_id = {g.id: g for g in grants.grants}
    sums: dict[tuple, list] = {}
    for key, applications in burn.applications.items():
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
        for item in grant.invoice_schedule:
            if not d.period.contains(item.timestamp):
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


def _true_up_lines(d: DuePeriod, burn: BurnDown, grants: CustomerGrants, products: dict[str, Product]) -> list[LineItem]:
    """Postpaid shortfalls settled in the period, billed on the invoicing contract."""
    fiat = d.contract.rate_card.fiat_credit_type
    grant_by_id = {g.id: g for g in grants.grants}
    lines = []
    for true_up in burn.true_ups:
        grant = grant_by_id[true_up.grant_id]
        if _invoice_contract(grant, grants) != d.contract.id or not d.period.contains(true_up.timestamp):
            continue
        if true_up.amount == 0:
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


@dataclass(frozen=True, slots=True)
class _BurnRun:
    drafts: list  # [(DuePeriod, [DraftInvoice])]
    burn: BurnDown
    inputs: tuple


@dataclass(frozen=True, slots=True)
class DuePeriod:
    contract: Contract
    period: Period


class InvoiceService:
    def __init__(
        self,
        contracts: ContractService,
        usage_for: Callable[[Customer], UsageSource],
        clock: Callable[[], datetime],
        grants: GrantBook | None = None,
    ) -> None:
        self._contracts = contracts
        self._usage_for = usage_for
        self._clock = clock
        self._grants = grants

    def due_periods(self, customer_id: str, contract_id: str | None = None) -> tuple[Customer, list[DuePeriod]]:
        """(contract, period) pairs with a draft: periods started by now, oldest first."""
        customer = self._contracts.customer(customer_id)
        now = self._clock()
        due = []
        for document in self._contracts.list(customer_id):
            if contract_id is not None and document["id"] != contract_id:
                continue
            contract = self._contracts.contract(document)
            due += [DuePeriod(contract, p) for p in contract.periods(until=now) if p.starting_at <= now]
        due.sort(key=lambda d: (d.period.starting_at, d.contract.starting_at, d.contract.id))
        return customer, due

    def pricing_inputs(self, customer: Customer) -> tuple[UsageSource, dict[str, Product]]:
        """What pricing a customer's periods reads: its usage and the catalog's products."""
        return self._usage_for(customer), self._contracts.products()

    def _price(self, customer: Customer, due: list[DuePeriod], wanted: list[DuePeriod] | None = None) -> list[DraftInvoice]:
        """Drafts of the `wanted` periods (all of `due` by default), in `wanted` order.

        Without commits or credits each period is priced on its own. With them, every period of the
        customer is priced (a balance carries from one invoice to the next), the burn-down runs once
        over all their lines, and each invoice gets its drawdowns, commit purchases and true-ups."""
        wanted = due if wanted is None else wanted
        usage, products = self.pricing_inputs(customer)
        grants = self._grants.of_customer(customer.id) if self._grants is not None else None
        if grants is None or not grants.grants:
            return [
                _draft(d.contract, invoice)
                for d in wanted
                for invoice in build_draft_invoices(d.contract, products, d.period, usage)
            ]
        run = self._burn(customer, due, grants, products, usage)
        keys = {(w.contract.id, w.period.starting_at) for w in wanted}
        by_period = {
            (d.contract.id, d.period.starting_at): drafts
            for d, drafts in run.drafts
            if (d.contract.id, d.period.starting_at) in keys
        }
        return [draft for w in wanted for draft in by_period[(w.contract.id, w.period.starting_at)]]

    def _burn(
        self, customer: Customer, due: list[DuePeriod], grants: CustomerGrants, products: dict[str, Product], usage: UsageSource
    ) -> _BurnRun:
        edges = segment_edges(grants.grants)
        rated = [(d, build_draft_invoices(d.contract, products, d.period, usage, cuts=edges)) for d in due]
        charges, credit_types = [], {}
        for d, invoices in rated:
            for invoice in invoices:
                draft_id = invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                for index, line in enumerate(invoice.line_items):
                    credit_types[line.credit_type.id] = line.credit_type
                    if line.type in DRAWABLE:
                        charges.append(_charge(f"{draft_id}|{index}", draft_id, d.contract.id, line, products))
        tags = {p.id: tuple(p.at(self._clock()).tags) if p.versions else () for p in products.values()}
        burn = burn_down(grants.grants, charges, grants.manual_entries, tags, self._clock(), credit_types)
        applied = _applied_lines(rated, charges, burn, grants, credit_types)
        drafts = []
        for d, invoices in rated:
            lines = [line for inv in invoices for line in inv.line_items if line.type is not LineType.CPU_CONVERSION]
            lines += applied.get((d.contract.id, d.period.starting_at), [])
            lines += _purchase_lines(d, grants, products)
            lines += _true_up_lines(d, burn, grants, products)
            drafts.append((d, [_draft(d.contract, inv) for inv in assemble_invoices(d.contract, d.period, lines)]))
        return _BurnRun(drafts, burn, (grants.grants, charges, grants.manual_entries, tags, credit_types))

    def burn_down(self, customer_id: str) -> BurnDown:
        """The customer's burn-down now, over every draft invoice of every contract."""
        return self._burn_run(customer_id).burn

    def burn_inputs(self, customer_id: str) -> tuple:
        """(grants, charges, manual entries, catalog tags, credit types): what burn_down reads."""
        return self._burn_run(customer_id).inputs

    def _burn_run(self, customer_id: str) -> _BurnRun:
        assert self._grants is not None, "balances need the grant book"
        customer, due = self.due_periods(customer_id)
        usage, products = self.pricing_inputs(customer)
        return self._burn(customer, due, self._grants.of_customer(customer_id), products, usage)

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
        """A page of drafts and the offset of the next page (None: last page).

        Only the page's periods are priced: filters on dates narrow the (contract, period) list
        first. A page counts periods, so a period with two credit types may add one invoice more."""
        if status is not None and status.upper() not in ("DRAFT", "FINALIZED", "VOID"):
            raise InvalidInput("status", "must be DRAFT, FINALIZED or VOID")
        customer, all_due = self.due_periods(customer_id)
        due = [d for d in all_due if contract_id is None or d.contract.id == contract_id]
        if status is not None and status.upper() != "DRAFT":
            return [], None  # nothing is finalized or voided yet
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
        page: list[DraftInvoice] = []
        position = offset
        while position < len(due) and len(page) < limit:
            take = due[position : position + max(1, limit - len(page))]
            for period_drafts in _by_period(self._price(customer, all_due, take)):
                if len(page) >= limit:
                    break
                page += [d for d in period_drafts if credit_type_id is None or d.invoice.credit_type.id == credit_type_id]
                position += 1
        return page, position if position < len(due) else None

    def get(self, customer_id: str, invoice_id_: str) -> DraftInvoice:
        customer, due = self.due_periods(customer_id)
        # Usage invoice ids are known without pricing; scheduled ones need the period priced.
        for d in due:
            if invoice_id(d.contract.id, d.period.starting_at, d.contract.rate_card.fiat_credit_type) == invoice_id_:
                return self._price(customer, due, [d])[0]
        for draft in self._price(customer, due):
            if draft.id == invoice_id_:
                return draft
        raise NotFound(f"invoice {invoice_id_} not found for customer {customer_id}")
