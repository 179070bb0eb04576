"""Consolidated invoices of a hierarchy parent (billing/consolidation.py has the rules), as use
cases InvoiceService runs: finding a parent period's constituents, composing its draft on reads,
and the record its cycle close stores.

Exactly once, never changed. The consolidated invoice of (parent contract, period, credit type) has
one id, a UUIDv5, for its draft and its record. The parent's cycle close stores it FINALIZED once
the parent's USAGE invoice of the period and every consolidating child's are FINALIZED, in the same
conditional write as the parent's finalization (the parent's record count, every member's, the
parent contracts' versions: CycleCloseService.finalize), composed from those stored records only.
A create of an id that exists fails, so a second close stores nothing. Until it is stored, a read
shows it as a DRAFT composed from the constituents as they are (drafts priced, stored ones served).
When children finalize after the parent, the next close run finds the period again
(InvoiceService.due_closes) and stores it then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from tally.billing.consolidation import (
    FINALIZED,
    Constituent,
    concatenates,
    consolidate,
    consolidated_invoice_id,
    consolidates,
    starts_within,
)
from tally.billing.errors import NotFound
from tally.billing.hierarchy import children_of
from tally.billing.pricing import InvoiceType


@dataclass(frozen=True, slots=True)
class ChildSlot:
    customer_id: str
    contract_id: str
    slot: str  # the child's USAGE invoice id of a period starting within the parent's


def consolidated_id(d) -> str:
    """The consolidated invoice id of a parent's DuePeriod."""
    return consolidated_invoice_id(d.contract.id, d.period.starting_at, d.contract.rate_card.fiat_credit_type)


def is_concatenating(contracts, d) -> bool:
    """A due period of a parent contract that has consolidated invoices (a cheap test first)."""
    if not d.contract.consolidated_usage or d.contract.payer is not None:
        return False
    try:
        return concatenates(contracts.get(d.contract.customer_id, d.contract.id))
    except NotFound:
        return False


def child_slots(contracts, due_periods: Callable, d, until: datetime | None = None) -> list[ChildSlot]:
    """The USAGE invoice slots of the parent period `d`'s consolidating children, in the order the
    children joined: each child period starting within `d`'s, in the parent's fiat credit type."""
    parent = contracts.get(d.contract.customer_id, d.contract.id)
    fiat = d.contract.rate_card.fiat_credit_type
    found = []
    for child in children_of(parent):
        try:
            document = contracts.get(child["customer_id"], child["contract_id"])
        except NotFound:
            continue
        if document.get("archived_at") or not consolidates(document):
            continue
        _, due = due_periods(child["customer_id"], child["contract_id"], until=until)
        for c in due:
            if (
                starts_within(c.period.starting_at, d.period.starting_at, d.period.ending_before)
                and c.contract.rate_card.fiat_credit_type == fiat
                and c.contract.usage_statement_schedule.generates_usage_invoice(c.period)
            ):
                found.append(ChildSlot(child["customer_id"], child["contract_id"], c.usage_slot))
    return found


def compose(d, parent_usage: Constituent | None, children: list[Constituent]):
    """The consolidated Invoice of the parent period `d` from its constituents."""
    parts = ([parent_usage] if parent_usage is not None else []) + children
    return consolidate(
        d.contract.id, d.contract.customer_id, d.contract.rate_card.fiat_credit_type,
        d.period.starting_at, d.period.ending_before, parts,
    )


def parent_usage_of(d, invoices) -> Constituent | None:
    """The parent's own fiat USAGE invoice of the period among `invoices` ((id, Invoice) pairs)."""
    fiat = d.contract.rate_card.fiat_credit_type
    for invoice_id, invoice in invoices:
        if invoice.type is InvoiceType.USAGE and invoice.credit_type == fiat and invoice.status != "VOID":
            return Constituent(invoice_id, invoice)
    return None


def finalized_children(slots: list[ChildSlot], records) -> list[Constituent] | None:
    """The children's FINALIZED records for `slots`, or None while one is not finalized."""
    by_slot = {r.slot: r for r in records if r.status == FINALIZED}
    found = []
    for s in slots:
        record = by_slot.get(s.slot)
        if record is None:
            return None
        found.append(Constituent(record.id, record.invoice))
    return found
