"""`POST /v1/contracts/createHistoricalInvoices`: usage invoices of past billing periods, for
migrations from another billing system.

Each invoice is one of its contract's USAGE billing periods that has ended, priced once from the
given quantities (billing/pricing/historical.py) and stored FINALIZED in that period's USAGE slot,
so it is never re-priced and cycle close finds the period closed. It draws on no commit or credit
(the system migrated from settled those). Idempotent by slot: the same invoice again answers the
stored one; a different one for a period already finalized is refused. All the request's invoices
are written in one conditional write, or none (`preview` writes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Mapping

from tally.billing.errors import InvalidInput, NotFound
from tally.billing.pricing.historical import HistoricalQuantity, price_historical_invoice
from tally.billing.pricing.periods import Period
from tally.billing.time import format_rfc3339
from tally.services.contracts import ContractService
from tally.services.invoice_records import FINALIZED, FinalizationRaced, InvoiceStore, StoredInvoice
from tally.services.invoices import invoice_id

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class HistoricalInvoiceIn:
    customer_id: str
    contract_id: str
    credit_type_id: str
    starting_at: datetime
    ending_before: datetime
    quantities: tuple[HistoricalQuantity, ...]
    custom_fields: Mapping[str, str] = field(default_factory=dict)


class HistoricalInvoiceService:
    def __init__(self, contracts: ContractService, store: InvoiceStore, clock: Callable[[], datetime]) -> None:
        self._contracts = contracts
        self._store = store
        self._clock = clock

    def create(self, requested: list[HistoricalInvoiceIn], preview: bool) -> list[tuple[StoredInvoice, object]]:
        """(record, engine contract) per requested invoice, in request order."""
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            priced, new, by_customer = [], {}, {}
            for i, item in enumerate(requested):
                if item.customer_id not in by_customer:
                    written = self._store.records_written(item.customer_id)
                    by_customer[item.customer_id] = (written, {r.slot: r for r in self._store.list_for_customer(item.customer_id)})
                record, contract = self._priced(item, f"invoices[{i}]", now)
                stored = by_customer[item.customer_id][1].get(record.slot) or new.get(record.slot)
                if stored is not None:
                    if stored.status != FINALIZED or stored.invoice.line_items != record.invoice.line_items:
                        raise InvalidInput(f"invoices[{i}].inclusive_start_date",
                                           "the contract has a finalized invoice for this period already")
                    priced.append((stored, contract))
                    continue
                new[record.slot] = record
                priced.append((record, contract))
            if preview or not new:
                return priced
            try:
                for customer_id, (written, _) in by_customer.items():
                    records = [r for r in new.values() if r.customer_id == customer_id]
                    if records:
                        self._store.create(customer_id, written, records)
            except FinalizationRaced:
                continue
            return priced
        raise FinalizationRaced("the customer's invoices kept changing; retry")

    def _priced(self, item: HistoricalInvoiceIn, field: str, now: datetime):
        try:
            document = self._contracts.get(item.customer_id, item.contract_id)
        except NotFound as exc:
            raise InvalidInput(f"{field}.contract_id", str(exc)) from exc
        contract = self._contracts.contract(document)
        fiat = contract.rate_card.fiat_credit_type
        if item.credit_type_id != fiat.id:
            raise InvalidInput(f"{field}.credit_type_id", f"must be the contract's rate card credit type {fiat.id}")
        if item.ending_before > now:
            raise InvalidInput(f"{field}.exclusive_end_date", "must not be in the future: a historical invoice is of a past period")
        periods = [(p.starting_at, p.ending_before) for p in contract.periods(until=item.ending_before)]
        if (item.starting_at, item.ending_before) not in periods:
            raise InvalidInput(
                f"{field}.inclusive_start_date",
                "inclusive_start_date and exclusive_end_date must be one of the contract's billing periods "
                f"(from {format_rfc3339(contract.starting_at)}, per its usage statement schedule)",
            )
        for i, q in enumerate(item.quantities):
            if not item.starting_at <= q.at < item.ending_before:
                raise InvalidInput(f"{field}.usage_line_items[{i}].inclusive_start_date", "must fall within the invoice's period")
        period = Period(item.starting_at, item.ending_before)
        invoice = price_historical_invoice(contract, self._contracts.products(), period, item.quantities, field)
        slot = invoice_id(contract.id, period.starting_at, fiat)
        record = StoredInvoice(
            id=slot, slot=slot, customer_id=item.customer_id, contract_id=contract.id,
            period_start=period.starting_at, period_end=period.ending_before,
            invoice=replace(invoice, status=FINALIZED), drawdowns=(), finalized_at=now,
            custom_fields=dict(item.custom_fields),
        )
        return record, contract
