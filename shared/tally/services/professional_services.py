"""Professional services invoices (Metronome's `POST /v1/contracts/scheduleProServicesInvoice`).

A contract's professional services are terms (billing/pricing/contract_charges.py). Scheduling an
invoice for them adds its line items to the contract, under `professional_service_invoices`, as
one entry {id, issued_at, line_items}; the SCHEDULED invoice issued at `issued_at` then bills them,
like a scheduled charge at that instant, and is finalized when it is due, as every SCHEDULED
invoice is. A finalized invoice never changes, so an `issued_at` whose SCHEDULED invoice is stored
already is refused. The write is conditional on the contract's version (a concurrent edit makes
this re-read and try again), so no edit and no other schedule is lost.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Callable, Protocol

from tally.billing.errors import Conflict, InvalidInput
from tally.billing.limits import MAX_SCHEDULE_ITEMS
from tally.billing.pricing import InvoiceType
from tally.billing.pricing.money import PRICING_CONTEXT
from tally.billing.time import format_rfc3339
from tally.services.contracts import ContractService, ContractStore
from tally.services.invoice_records import StoredInvoice
from tally.services.invoices import invoice_id

MAX_ATTEMPTS = 5


class InvoiceRecords(Protocol):
    def list_for_customer(self, customer_id: str) -> list[StoredInvoice]: ...


def _charge(line: dict, term: dict, field: str) -> tuple[Decimal, Decimal]:
    """(quantity, unit_price) of a line: an amount alone is one unit of it; a quantity takes the
    term's unit price unless the line gives its own."""
    amount, quantity, unit_price = line.get("amount"), line.get("quantity"), line.get("unit_price")
    if amount is not None:
        if quantity is not None or unit_price is not None:
            raise InvalidInput(f"{field}.amount", "give amount, or quantity (with unit_price to override the term's), not both")
        quantity, unit_price = Decimal(1), amount
    elif quantity is None:
        raise InvalidInput(f"{field}.quantity" if unit_price is not None else f"{field}.amount",
                           "give amount, or quantity (with unit_price to override the term's)")
    else:
        unit_price = unit_price if unit_price is not None else term["unit_price"]
    for name, value in (("quantity", quantity), ("unit_price", unit_price)):
        if value < 0:
            raise InvalidInput(f"{field}.{'amount' if line.get('amount') is not None else name}", "must not be negative")
    return quantity, unit_price


def _billed(document: dict) -> dict[str, Decimal]:
    """What each professional service has scheduled so far."""
    billed: dict[str, Decimal] = {}
    for invoice in document.get("professional_service_invoices") or ():
        for line in invoice["line_items"]:
            amount = PRICING_CONTEXT.multiply(line["quantity"], line["unit_price"])
            billed[line["professional_service_id"]] = billed.get(line["professional_service_id"], Decimal(0)) + amount
    return billed


class ProServiceInvoicing:
    def __init__(
        self,
        contracts: ContractService,
        store: ContractStore,
        records: InvoiceRecords | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._contracts = contracts
        self._store = store
        self._records = records
        self._clock = clock

    def schedule(self, customer_id: str, contract_id: str, issued_at: datetime, lines: list[dict], header: dict) -> str:
        """Schedule `lines` (the normalized request's line items) on the contract's SCHEDULED invoice
        issued at `issued_at`; returns that invoice's id. `header` is kept with the entry."""
        if not lines:
            raise InvalidInput("line_items", "must hold at least one line item")
        entry_id = str(uuid.uuid4())
        line_ids = [str(uuid.uuid4()) for _ in lines]
        for _ in range(MAX_ATTEMPTS):
            document = self._contracts.get(customer_id, contract_id)
            if document.get("archived_at"):
                raise InvalidInput("contract_id", "the contract is archived")
            self._check_not_finalized(document, issued_at)
            changed = dict(document)
            changed["professional_service_invoices"] = [
                *(document.get("professional_service_invoices") or ()),
                self._entry(document, entry_id, line_ids, issued_at, lines, header),
            ]
            try:
                self._contracts.validate(changed)
            except InvalidInput as exc:
                if exc.field == "issued_at" or exc.field.startswith("line_items"):
                    raise
                raise InvalidInput("line_items", exc.rule) from exc
            try:
                self._store.replace(changed)  # conditional on the version read: nothing is lost to a race
            except Conflict:  # the contract changed since it was read: read it again
                continue
            fiat = self._contracts.contract(changed).rate_card.fiat_credit_type
            return invoice_id(contract_id, issued_at, fiat, InvoiceType.SCHEDULED)
        raise Conflict("the contract kept changing while the invoice was scheduled; retry it")

    def _entry(
        self, document: dict, entry_id: str, line_ids: list[str], issued_at: datetime, lines: list[dict], header: dict
    ) -> dict:
        terms = {t["id"]: t for t in document.get("professional_services") or ()}
        held = sum(len(i["line_items"]) for i in document.get("professional_service_invoices") or ())
        if held + len(lines) > MAX_SCHEDULE_ITEMS:  # they live in the contract's item
            raise InvalidInput(
                "line_items", f"the contract would hold more than {MAX_SCHEDULE_ITEMS:,} professional service lines"
            )
        billed = _billed(document)
        items = []
        for index, (line, line_id) in enumerate(zip(lines, line_ids)):
            field = f"line_items[{index}]"
            term = terms.get(line["professional_service_id"])
            if term is None:
                raise InvalidInput(f"{field}.professional_service_id", "is not a professional service of the contract")
            quantity, unit_price = _charge(line, term, field)
            total = billed.get(term["id"], Decimal(0)) + PRICING_CONTEXT.multiply(quantity, unit_price)
            if total > term["max_amount"]:
                raise InvalidInput(
                    f"{field}.{'amount' if line.get('amount') is not None else 'quantity'}",
                    f"would bring what professional service {term['id']} bills to {total}, over its max_amount "
                    f"{term['max_amount']}",
                )
            billed[term["id"]] = total
            kept = {k: v for k, v in line.items() if k not in ("amount", "quantity", "unit_price") and v is not None}
            items.append(kept | {"id": line_id, "quantity": quantity, "unit_price": unit_price})
        return {"id": entry_id, "issued_at": format_rfc3339(issued_at), "created_at": format_rfc3339(self._clock()),
                "line_items": items} | {k: v for k, v in header.items() if v is not None}

    def _check_not_finalized(self, document: dict, issued_at: datetime) -> None:
        if self._records is None:
            return
        for record in self._records.list_for_customer(document["customer_id"]):
            if (
                record.contract_id == document["id"]
                and record.type is InvoiceType.SCHEDULED
                and record.invoice.starting_at == issued_at
            ):
                raise InvalidInput(
                    "issued_at",
                    f"the invoice issued at {format_rfc3339(issued_at)} is finalized already; a finalized invoice never changes",
                )
