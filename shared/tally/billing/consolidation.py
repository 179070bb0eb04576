"""Consolidated invoices of customer hierarchies (metronome-sdk v1 contract create
HierarchyConfiguration, and types/v1/customers/invoice.py: USAGE_CONSOLIDATED, constituent_invoices,
payer, line_items[].origin).

- A child with payer PARENT has its charges billed to its parent: its invoices name the parent's
  contract and customer as `payer`, and are delivered to the parent's billing provider customer.
- A child with usage_statement_behavior CONSOLIDATE (which needs payer PARENT, under a parent whose
  parent_behavior.invoice_consolidation_type is CONCATENATE) has its usage statements added to the
  parent's consolidated invoice.
- A parent contract with CONCATENATE has one USAGE_CONSOLIDATED invoice per billing period in its
  rate card's fiat credit type: its own USAGE invoice of the period, then the fiat USAGE invoices of
  its consolidating children whose period starts within it, each line copied with its `origin`
  (contract, customer, invoice, line). Its total is theirs added up, and `constituent_invoices`
  links them. The constituents stay readable on their own customers, and are not billable: the
  consolidated invoice is what is billed, to the parent.

A consolidated invoice is a draft until every constituent is finalized; it is then stored once,
FINALIZED, by the parent's cycle close (services/consolidation.py), and never changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Sequence

from tally.billing.pricing import CreditType, Invoice, InvoiceType
from tally.billing.pricing.lines import LineOrigin

_CONSOLIDATED_NAMESPACE = uuid.UUID("5b3e9f4c-2a71-4d8e-b0c6-9e4d1a7f3c25")
_LINE_NAMESPACE = uuid.UUID("c2a8d1e6-7f34-4b09-a5d2-6e1f8b3c9a47")
FINALIZED = "FINALIZED"


def _config(contract: Mapping) -> Mapping:
    return contract.get("hierarchy_configuration") or {}


def payer_of(contract: Mapping) -> tuple[str, str] | None:
    """(contract id, customer id) paying a child contract's invoices when payer is PARENT, else None."""
    config = _config(contract)
    if config.get("payer") != "PARENT" or not config.get("parent"):
        return None
    return config["parent"]["contract_id"], config["parent"]["customer_id"]


def consolidates(contract: Mapping) -> bool:
    """A child contract whose usage statements go onto its parent's consolidated invoices."""
    return _config(contract).get("usage_statement_behavior") == "CONSOLIDATE"


def concatenates(contract: Mapping) -> bool:
    """A parent contract that has consolidated invoices."""
    return (_config(contract).get("parent_behavior") or {}).get("invoice_consolidation_type") == "CONCATENATE"


def consolidated_invoice_id(parent_contract_id: str, period_start: datetime, credit_type: CreditType) -> str:
    """Stable per (parent contract, period, credit type): a draft and its finalized record share it."""
    return str(uuid.uuid5(_CONSOLIDATED_NAMESPACE, f"{parent_contract_id}|{period_start.isoformat()}|{credit_type.id}"))


def line_item_id(invoice_id: str, index: int) -> str:
    """Tally's lines have no ids of their own; a constituent's line is named by its place on it."""
    return str(uuid.uuid5(_LINE_NAMESPACE, f"{invoice_id}|{index}"))


def starts_within(instant: datetime, period_start: datetime, period_end: datetime) -> bool:
    """A child's period belongs to the parent's period it starts in: each goes on exactly one."""
    return period_start <= instant < period_end


@dataclass(frozen=True, slots=True)
class Constituent:
    invoice_id: str
    invoice: Invoice


def consolidate(
    parent_contract_id: str,
    parent_customer_id: str,
    credit_type: CreditType,
    starting_at: datetime,
    ending_before: datetime,
    constituents: Sequence[Constituent],
) -> Invoice:
    """The parent's USAGE_CONSOLIDATED invoice of a period from its constituents (the parent's own
    USAGE invoice first): every line copied with its origin, totals added, FINALIZED only when
    every constituent is."""
    lines = []
    for part in constituents:
        source = part.invoice
        for index, line in enumerate(source.line_items):
            origin = LineOrigin(source.contract_id, source.customer_id, part.invoice_id, line_item_id(part.invoice_id, index))
            lines.append(replace(line, origin=origin))
    final = bool(constituents) and all(part.invoice.status == FINALIZED for part in constituents)
    return Invoice(
        contract_id=parent_contract_id,
        customer_id=parent_customer_id,
        credit_type=credit_type,
        starting_at=starting_at,
        ending_before=ending_before,
        line_items=tuple(lines),
        subtotal=sum((part.invoice.subtotal for part in constituents), Decimal(0)),
        total=sum((part.invoice.total for part in constituents), Decimal(0)),
        status=FINALIZED if final else "DRAFT",
        type=InvoiceType.USAGE_CONSOLIDATED,
        payer=(parent_contract_id, parent_customer_id),
        constituent_invoices=tuple((p.invoice.contract_id, p.invoice.customer_id, p.invoice_id) for p in constituents),
    )
