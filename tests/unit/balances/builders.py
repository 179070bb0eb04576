"""Small builders for the burn-down tests: one customer, two contracts, a four-product catalog."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from tally.billing.balances import (
    AccessSegment,
    BurnDown,
    Charge,
    CommitRateType,
    Grant,
    GrantKind,
    InvoiceItem,
    ManualEntry,
    burn_down,
)

UTC = timezone.utc
D = Decimal
USD = "usd"
CATALOG = {"api": ("compute",), "gpu": ("compute", "premium"), "storage": ("storage",), "support": ()}
PREPAID, POSTPAID, CREDIT = GrantKind.PREPAID, GrantKind.POSTPAID, GrantKind.CREDIT
COMMIT_RATE = CommitRateType.COMMIT_RATE


def at(month: int, day: int = 1, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def grant(
    id: str,
    kind: GrantKind = PREPAID,
    amount="100",
    start: datetime = at(1),
    end: datetime = at(2),
    *,
    paid: bool = True,
    segments: tuple[AccessSegment, ...] | None = None,
    **fields,
) -> Grant:
    """One segment "<id>/s" over [start, end). A prepaid commit is paid (invoiced for its amount) unless
    paid=False; a postpaid commit's true-up is due when its access ends."""
    segments = segments or (AccessSegment(f"{id}/s", D(amount), start, end),)
    if kind is PREPAID and paid:
        fields.setdefault("invoice_schedule", (InvoiceItem(f"{id}/i", start, D(amount)),))
    if kind is POSTPAID:
        fields.setdefault("invoice_schedule", (InvoiceItem(f"{id}/i", end, D(amount)),))
    return Grant(id, kind, "fixed", fields.pop("credit_type_id", USD), segments, **fields)


def charge(
    key: str,
    amount,
    when: datetime = at(1, 10),
    *,
    product: str = "api",
    contract: str = "c1",
    invoice: str = "inv-jan",
    commit=None,
    finalized: bool = False,
    **fields,
) -> Charge:
    return Charge(
        key=key,
        invoice_id=invoice,
        contract_id=contract,
        product_id=product,
        product_tags=CATALOG.get(product, ()),
        credit_type_id=fields.pop("credit_type_id", USD),
        starting_at=when,
        ending_before=fields.pop("ending_before", None),
        amount=D(amount),
        commit_amount=None if commit is None else D(commit),
        finalized=finalized,
        **fields,
    )


def manual(grant_id: str, amount, when: datetime, segment_id: str | None = None, reason="goodwill") -> ManualEntry:
    return ManualEntry(grant_id, segment_id or f"{grant_id}/s", D(amount), when, reason)


def run(grants, charges=(), manual_entries=(), as_of: datetime = at(12, 31)) -> BurnDown:
    return burn_down(grants, charges, manual_entries, CATALOG, as_of)


def drawn(burn: BurnDown, key: str) -> list[tuple[str, Decimal]]:
    """(segment id, list amount covered) of a charge, in draw order."""
    return [(a.segment_id, a.amount) for a in burn.applications[key]]
