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
from typing import Callable

from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.pricing import (
    Contract,
    CreditType,
    Invoice,
    InvoiceType,
    Period,
    Product,
    UsageSource,
    build_draft_invoices,
)
from tally.billing.time import format_rfc3339
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
    ) -> None:
        self._contracts = contracts
        self._usage_for = usage_for
        self._clock = clock

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

    @staticmethod
    def _price(due: list[DuePeriod], products: dict[str, Product], usage: UsageSource) -> list[DraftInvoice]:
        return [
            DraftInvoice(invoice_id(d.contract.id, invoice.starting_at, invoice.credit_type, invoice.type), invoice, d.contract)
            for d in due
            for invoice in build_draft_invoices(d.contract, products, d.period, usage)
        ]

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
        customer, due = self.due_periods(customer_id, contract_id)
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
        usage, products = self._usage_for(customer), self._contracts.products()
        page: list[DraftInvoice] = []
        position = offset
        while position < len(due) and len(page) < limit:
            drafts = self._price([due[position]], products, usage)
            page += [d for d in drafts if credit_type_id is None or d.invoice.credit_type.id == credit_type_id]
            position += 1
        return page, position if position < len(due) else None

    def get(self, customer_id: str, invoice_id_: str) -> DraftInvoice:
        customer, due = self.due_periods(customer_id)
        usage, products = self._usage_for(customer), self._contracts.products()
        # Fiat ids are known without pricing; other credit types need the period priced.
        for d in due:
            if invoice_id(d.contract.id, d.period.starting_at, d.contract.rate_card.fiat_credit_type) == invoice_id_:
                return self._price([d], products, usage)[0]
        for draft in self._price(due, products, usage):
            if draft.id == invoice_id_:
                return draft
        raise NotFound(f"invoice {invoice_id_} not found for customer {customer_id}")
