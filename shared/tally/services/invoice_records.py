"""Finalized and voided invoices as stored records, and the store they live in.

A finalized invoice is written once and never rewritten: its lines and totals exactly as they were
priced, and its drawdowns (`drawdowns`: each drawable line's burn-down applications), which the
burn-down replays as they are from then on. Only its status (FINALIZED -> VOID), the pointer to
the invoice regenerated from it and its publication state change, and they live beside the
document, not in it.

`slot` is the id of the draft the record finalizes (the UUIDv5 of contract, type, instant and
credit type). The first finalized invoice of a slot keeps that id; an invoice regenerated from a
voided one gets an id derived from the voided id and keeps the slot, so a slot has at most one
FINALIZED record at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Protocol, Sequence

from tally.billing.balances import Application, BurnCheckpoint, Charge, GrantKind, SegmentState, TrueUp
from tally.billing.errors import TallyError
from tally.billing.pricing import (
    CreditType,
    Frequency,
    Invoice,
    InvoiceType,
    LineItem,
    LineType,
    ProductType,
    Rate,
    RateType,
    SubLineItem,
    Tier,
    TierCharge,
)
from tally.billing.pricing.lines import LineOrigin
from tally.billing.time import format_rfc3339, parse_rfc3339

FINALIZED = "FINALIZED"
VOID = "VOID"

_REGENERATED_NAMESPACE = uuid.UUID("0b7d6a2e-9c1f-4e55-8f3a-2d6c4b1e7a90")


def regenerated_invoice_id(voided_id: str) -> str:
    """The id of the invoice regenerated from a voided one: stable, so regenerating twice is one."""
    return str(uuid.uuid5(_REGENERATED_NAMESPACE, voided_id))


class FinalizationRaced(TallyError):
    """Another writer finalized, voided or regenerated an invoice of the customer between this
    one's read and its write. Nothing was written; recompute and try again."""

    status = 409
    kind = "conflict"


class InvoiceStore(Protocol):
    """Finalized and voided invoices (adapters/dynamo/invoices.py)."""

    def get(self, invoice_id: str) -> StoredInvoice | None:
        """Read consistently."""

    def list_for_customer(self, customer_id: str) -> list[StoredInvoice]: ...

    def records_written(self, customer_id: str) -> int:
        """How many records of the customer were ever created, read consistently: the version a
        `create` is conditional on."""

    def create(
        self, customer_id: str, written: int, records: list[StoredInvoice], regenerated_from: str | None = None,
        contract_version: tuple[str, int] | None = None, others_written: Sequence[tuple[str, int]] = (),
        parent_versions: Sequence[tuple[str, int]] = (), grant_edits: int | None = None,
        checkpoint: BalanceCheckpoint | None = None,
    ) -> None:
        """Write new records all at once (and, in the same write, the customer's balance checkpoint
        made with them: `checkpoint`, or none any more), only if none exists yet and the customer still has
        `written` records (and, with `regenerated_from`, that voided record is not regenerated
        yet, and it then points to the first record; with `contract_version` (contract id,
        version), that contract is still at that version; each (customer id, count) of
        `others_written` still has that many records, and each (contract id, version) of
        `parent_versions` is still at that version; with `grant_edits`, the customer's customer-level
        commits and credits were edited that many times). FinalizationRaced otherwise."""

    def grant_edits_made(self, customer_id: str) -> int:
        """How many edits of the customer's customer-level commits and credits were ever written."""

    def void(self, invoice_id: str, voided_at: datetime, customer_id: str | None = None) -> bool:
        """FINALIZED -> VOID; False if it was not FINALIZED. Counted in the customer's `voids`, which
        a balance checkpoint made before no longer matches."""

    def checkpoint(self, customer_id: str) -> BalanceCheckpoint | None:
        """The customer's balance checkpoint, if one is stored and no invoice was voided since it
        was made (read consistently)."""

    def checkpoint_item(self, customer_id: str) -> tuple[BalanceCheckpoint | None, int, int]:
        """(checkpoint as `checkpoint` answers it, records written, voids), read together."""

    def put_checkpoint(self, customer_id: str, written: int, voids: int, checkpoint: BalanceCheckpoint) -> bool:
        """Store a checkpoint made from a read (after an edit made the stored one unusable), only if
        the customer still has `written` records and `voids` voids; False otherwise."""

    def list_since(self, customer_id: str, period_start: datetime) -> list[StoredInvoice]:
        """The customer's records of periods starting at or after `period_start`."""

    def claim_publication(self, invoice_id: str, token: str, now: datetime, lease_expired_before: datetime) -> bool:
        """Claim the right to publish: False if published, or claimed after `lease_expired_before`."""

    def release_publication(self, invoice_id: str, token: str) -> None:
        """Give a claim back (the publish failed), so a retry need not wait for the lease."""

    def mark_published(self, invoice_id: str, token: str, now: datetime, message_id: str) -> bool: ...


@dataclass(frozen=True)
class StoredInvoice:
    id: str
    slot: str
    customer_id: str
    contract_id: str
    period_start: datetime  # the billing period the invoice belongs to
    period_end: datetime
    invoice: Invoice
    drawdowns: tuple[Charge, ...]  # frozen charges: key, instant, amount and applications
    finalized_at: datetime
    status: str = FINALIZED
    voided_at: datetime | None = None
    regenerated_from_invoice_id: str | None = None
    regenerated_invoice_id: str | None = None
    published_at: datetime | None = None
    publish_claimed_at: datetime | None = None
    # /v1/customFields values (entity invoice): metadata, so they may change on a finalized record
    custom_fields: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def type(self) -> InvoiceType:
        return self.invoice.type

    def credit_types(self) -> dict[str, CreditType]:
        """The credit types of its lines, by id (read from storage: without parsing the lines,
        once per stored record)."""
        lines = self.invoice.line_items
        if isinstance(lines, ParsedOnUse):
            return lines.derived("credit_types", lambda: _credit_types_of(lines))
        return {line.credit_type.id: line.credit_type for line in reversed(lines)}

    def charges(self, leaving_out: frozenset[str] = frozenset()) -> list[Charge]:
        """The drawdowns as the burn-down takes them: frozen, or voided (given back). `leaving_out`:
        segments; a drawdown only from those is left out (and, read from storage, never parsed)."""
        drawdowns: Sequence[Charge] = self.drawdowns
        if leaving_out:
            if isinstance(drawdowns, ParsedOnUse):
                drawdowns = drawdowns.derived(("leaving_out", leaving_out), lambda: _kept(self.drawdowns, leaving_out))
            else:
                drawdowns = _kept(drawdowns, leaving_out)
        if self.status == VOID:
            return [replace(c, voided=True) for c in drawdowns]
        return list(drawdowns)


def _credit_types_of(lines: "ParsedOnUse") -> dict[str, CreditType]:
    if not lines.unparsed:
        return {line.credit_type.id: line.credit_type for line in reversed(lines)}
    found: dict[str, CreditType] = {}
    for doc in lines.raw:
        held = doc["credit_type"]
        if held["id"] not in found:
            found[held["id"]] = _parse_credit_type(held)
    return found


def _kept(drawdowns: Sequence[Charge], leaving_out: frozenset[str]) -> list[Charge]:
    if isinstance(drawdowns, ParsedOnUse) and drawdowns.unparsed:
        if all(_only_from_raw(doc, leaving_out) for doc in drawdowns.raw):
            return []
    return [c for c in drawdowns if not _only_from(c, leaving_out)]


def _only_from(charge: Charge, segments: frozenset[str]) -> bool:
    return bool(charge.applications) and all(a.segment_id in segments for a in charge.applications)


def _only_from_raw(doc: dict, segments: frozenset[str]) -> bool:
    return bool(doc["applications"]) and all(a["segment_id"] in segments for a in doc["applications"])


class ParsedOnUse(Sequence):
    """A stored record's lines or drawdowns, parsed from their documents when first used: a read
    of a customer's invoices lists every record, and most are only asked for their slot and
    status (or, settled, for nothing of their drawdowns). Compares equal to the same items in any
    sequence, as a tuple of them would."""

    __slots__ = ("_raw", "_parse", "_items", "_derived")

    def __init__(self, raw: list, parse) -> None:
        self._raw, self._parse, self._items = raw, parse, None
        self._derived: dict = {}

    def derived(self, key, compute):
        """A value computed from these items once (the items never change): `compute()` first."""
        found = self._derived.get(key)
        if found is None:
            found = self._derived[key] = compute()
            if len(self._derived) > 8:  # a few settled-segment sets at most: keep the latest
                self._derived = {key: found}
        return found

    @property
    def unparsed(self) -> bool:
        return self._items is None

    @property
    def raw(self) -> list:
        return self._raw

    def _all(self) -> tuple:
        items = self._items
        if items is None:  # two threads may both parse: the same immutable items either way
            items = self._items = tuple(self._parse(doc) for doc in self._raw)
        return items

    def __len__(self) -> int:
        return len(self._raw) if self._items is None else len(self._items)

    def __iter__(self):
        return iter(self._all())

    def __getitem__(self, index):
        return self._all()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ParsedOnUse):
            return self._all() == other._all()
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


# --- documents ---------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _dec(value) -> Decimal | None:
    return None if value is None else value if isinstance(value, Decimal) else Decimal(value)


def _credit_type(credit_type: CreditType | None) -> dict | None:
    if credit_type is None:
        return None
    return {"id": credit_type.id, "name": credit_type.name, "precision": credit_type.precision, "rounding": credit_type.rounding}


def _parse_credit_type(doc: dict | None) -> CreditType | None:
    return None if doc is None else CreditType(doc["id"], doc["name"], doc["precision"], doc["rounding"])


def _rate(rate: Rate | None) -> dict | None:
    if rate is None:
        return None
    return {
        "product_id": rate.product_id,
        "starting_at": _time(rate.starting_at),
        "rate_type": rate.rate_type.value,
        "entitled": rate.entitled,
        "ending_before": _time(rate.ending_before),
        "price": rate.price,
        "tiers": [{"price": t.price, "size": t.size} for t in rate.tiers],
        "pricing_group_values": None if rate.pricing_group_values is None else dict(rate.pricing_group_values),
        "quantity": rate.quantity,
        "is_prorated": rate.is_prorated,
        "billing_frequency": None if rate.billing_frequency is None else rate.billing_frequency.value,
        "credit_type": _credit_type(rate.credit_type),
        "commit_price": rate.commit_price,
    }


def _parse_rate(doc: dict | None) -> Rate | None:
    if doc is None:
        return None
    return Rate(
        product_id=doc["product_id"],
        starting_at=parse_rfc3339(doc["starting_at"]),
        rate_type=RateType(doc["rate_type"]),
        entitled=doc["entitled"],
        ending_before=_parse_time(doc["ending_before"]),
        price=_dec(doc["price"]),
        tiers=tuple(Tier(_dec(t["price"]), _dec(t["size"])) for t in doc["tiers"]),
        pricing_group_values=doc["pricing_group_values"],
        quantity=_dec(doc["quantity"]),
        is_prorated=doc["is_prorated"],
        billing_frequency=None if doc["billing_frequency"] is None else Frequency(doc["billing_frequency"]),
        credit_type=_parse_credit_type(doc["credit_type"]),
        commit_price=_dec(doc["commit_price"]),
    )


def _line(line: LineItem) -> dict:
    return {
        "type": line.type.value,
        "name": line.name,
        "product_id": line.product_id,
        "product_type": line.product_type.value,
        "credit_type": _credit_type(line.credit_type),
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "total": line.total,
        "precise_total": line.precise_total,
        "starting_at": _time(line.starting_at),
        "ending_before": _time(line.ending_before),
        "pricing_group_values": None if line.pricing_group_values is None else dict(line.pricing_group_values),
        "presentation_group_values": None if line.presentation_group_values is None else dict(line.presentation_group_values),
        "sub_line_items": [
            {
                "name": sub.name,
                "quantity": sub.quantity,
                "subtotal": sub.subtotal,
                "tiers": [
                    {"starting_at": t.starting_at, "quantity": t.quantity, "price": t.price, "subtotal": t.subtotal}
                    for t in sub.tiers
                ],
            }
            for sub in line.sub_line_items
        ],
        "is_prorated": line.is_prorated,
        "list_price": _rate(line.list_price),
        "subscription_id": line.subscription_id,
        "scheduled_charge_id": line.scheduled_charge_id,
        "converted_credit_type": _credit_type(line.converted_credit_type),
        "commit_id": line.commit_id,
        "commit_segment_id": line.commit_segment_id,
        "commit_type": line.commit_type,
        "counts_in_total": line.counts_in_total,
        "scheduled_at": _time(line.scheduled_at),
        "commit_total": line.commit_total,
        **({} if line.origin is None else {"origin": {
            "contract_id": line.origin.contract_id, "customer_id": line.origin.customer_id,
            "invoice_id": line.origin.invoice_id, "line_item_id": line.origin.line_item_id,
        }}),
    }


def _parse_line(doc: dict) -> LineItem:
    return LineItem(
        type=LineType(doc["type"]),
        name=doc["name"],
        product_id=doc["product_id"],
        product_type=ProductType(doc["product_type"]),
        credit_type=_parse_credit_type(doc["credit_type"]),
        quantity=_dec(doc["quantity"]),
        unit_price=_dec(doc["unit_price"]),
        total=_dec(doc["total"]),
        precise_total=_dec(doc["precise_total"]),
        starting_at=parse_rfc3339(doc["starting_at"]),
        ending_before=_parse_time(doc["ending_before"]),
        pricing_group_values=doc["pricing_group_values"],
        presentation_group_values=doc["presentation_group_values"],
        sub_line_items=tuple(
            SubLineItem(
                s["name"],
                _dec(s["quantity"]),
                _dec(s["subtotal"]),
                tuple(
                    TierCharge(_dec(t["starting_at"]), _dec(t["quantity"]), _dec(t["price"]), _dec(t["subtotal"]))
                    for t in s["tiers"]
                ),
            )
            for s in doc["sub_line_items"]
        ),
        is_prorated=doc["is_prorated"],
        list_price=_parse_rate(doc["list_price"]),
        subscription_id=doc["subscription_id"],
        scheduled_charge_id=doc["scheduled_charge_id"],
        converted_credit_type=_parse_credit_type(doc["converted_credit_type"]),
        commit_id=doc["commit_id"],
        commit_segment_id=doc["commit_segment_id"],
        commit_type=doc["commit_type"],
        counts_in_total=doc["counts_in_total"],
        scheduled_at=_parse_time(doc["scheduled_at"]),
        commit_total=_dec(doc["commit_total"]),
        origin=LineOrigin(**doc["origin"]) if doc.get("origin") else None,
    )


def _drawdown(charge: Charge) -> dict:
    assert charge.applications is not None
    return {
        "key": charge.key,
        "contract_id": charge.contract_id,
        "product_id": charge.product_id,
        "credit_type_id": charge.credit_type_id,
        "starting_at": _time(charge.starting_at),
        "ending_before": _time(charge.ending_before),
        "amount": charge.amount,
        "applications": [
            {
                "grant_id": a.grant_id,
                "segment_id": a.segment_id,
                "kind": a.kind.value,
                "amount": a.amount,
                "balance_consumed": a.balance_consumed,
                "reduces_total": a.reduces_total,
            }
            for a in charge.applications
        ],
    }


def _parse_drawdown(doc: dict, invoice_id: str) -> Charge:
    return Charge(
        key=doc["key"],
        invoice_id=invoice_id,
        contract_id=doc["contract_id"],
        product_id=doc["product_id"],
        product_tags=(),  # a frozen charge is never matched against grants again
        credit_type_id=doc["credit_type_id"],
        starting_at=parse_rfc3339(doc["starting_at"]),
        ending_before=_parse_time(doc["ending_before"]),
        amount=_dec(doc["amount"]),
        finalized=True,
        applications=tuple(
            Application(a["grant_id"], a["segment_id"], GrantKind(a["kind"]), _dec(a["amount"]), _dec(a["balance_consumed"]),
                        a["reduces_total"])
            for a in doc["applications"]
        ),
    )


def record_document(record: StoredInvoice) -> dict:
    """The immutable part of a record, as stored (exact JSON)."""
    invoice = record.invoice
    return {
        "id": record.id,
        "slot": record.slot,
        "customer_id": record.customer_id,
        "contract_id": record.contract_id,
        "period_start": _time(record.period_start),
        "period_end": _time(record.period_end),
        "finalized_at": _time(record.finalized_at),
        "regenerated_from_invoice_id": record.regenerated_from_invoice_id,
        "invoice": {
            "type": invoice.type.value,
            "credit_type": _credit_type(invoice.credit_type),
            "starting_at": _time(invoice.starting_at),
            "ending_before": _time(invoice.ending_before),
            "line_items": [_line(line) for line in invoice.line_items],
            "subtotal": invoice.subtotal,
            "total": invoice.total,
            # customer hierarchies (billing/consolidation.py); left out when the defaults
            **({} if invoice.payer is None else {"payer": list(invoice.payer)}),
            **({} if invoice.billable else {"billable": False}),
            **({"constituent_invoices": [list(c) for c in invoice.constituent_invoices]} if invoice.constituent_invoices else {}),
        },
        "drawdowns": [_drawdown(c) for c in record.drawdowns],
        **({"custom_fields": dict(record.custom_fields)} if record.custom_fields else {}),  # given at create (historical)
    }


def record_from_document(
    doc: dict,
    *,
    status: str,
    voided_at: datetime | None = None,
    regenerated_invoice_id: str | None = None,
    published_at: datetime | None = None,
    publish_claimed_at: datetime | None = None,
    custom_fields: Mapping[str, str] | None = None,
) -> StoredInvoice:
    body = doc["invoice"]
    invoice = Invoice(
        contract_id=doc["contract_id"],
        customer_id=doc["customer_id"],
        credit_type=_parse_credit_type(body["credit_type"]),
        starting_at=parse_rfc3339(body["starting_at"]),
        ending_before=parse_rfc3339(body["ending_before"]),
        line_items=ParsedOnUse(body["line_items"], _parse_line),
        subtotal=_dec(body["subtotal"]),
        total=_dec(body["total"]),
        status=status,
        type=InvoiceType(body["type"]),
        payer=tuple(body["payer"]) if body.get("payer") else None,
        billable=body.get("billable", True),
        constituent_invoices=tuple(tuple(c) for c in body.get("constituent_invoices") or ()),
    )
    return StoredInvoice(
        id=doc["id"],
        slot=doc["slot"],
        customer_id=doc["customer_id"],
        contract_id=doc["contract_id"],
        period_start=parse_rfc3339(doc["period_start"]),
        period_end=parse_rfc3339(doc["period_end"]),
        invoice=invoice,
        drawdowns=ParsedOnUse(doc["drawdowns"], lambda d, record_id=doc["id"]: _parse_drawdown(d, record_id)),
        finalized_at=parse_rfc3339(doc["finalized_at"]),
        status=status,
        voided_at=voided_at,
        regenerated_from_invoice_id=doc.get("regenerated_from_invoice_id"),
        regenerated_invoice_id=regenerated_invoice_id,
        published_at=published_at,
        publish_claimed_at=publish_claimed_at,
        custom_fields=custom_fields if custom_fields is not None else doc.get("custom_fields") or {},
    )


# --- balance checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceCheckpoint:
    """A customer's burn-down as of an instant every invoice before which is final (services/
    invoices.py makes it when a period is finalized, and reads start from it). It summarizes the
    records of periods starting before `listed_from`, and of `straddling` ones (periods starting
    between `listed_from` and the instant, which drew after it too): a read lists only the records
    from `listed_from` on. It holds while the contracts are at `contracts`' versions and the
    customer's voids still number `voids`; the grants and manual entries are checked by digest."""

    burn: BurnCheckpoint
    listed_from: datetime
    straddling: tuple[str, ...]
    contracts: tuple[tuple[str, int], ...]  # (contract id, version), every unarchived contract
    voids: int  # the customer's VOID records it was made with


def checkpoint_document(checkpoint: BalanceCheckpoint) -> dict:
    burn = checkpoint.burn
    return {
        "at": _time(burn.at),
        "listed_from": _time(checkpoint.listed_from),
        "straddling": list(checkpoint.straddling),
        "contracts": [list(pair) for pair in checkpoint.contracts],
        "voids": checkpoint.voids,
        "grants_digest": burn.grants_digest,
        "manual_digest": burn.manual_digest,
        "unapplied_manual": burn.unapplied_manual,
        "unapplied_frozen": burn.unapplied_frozen,
        "segments": [
            [s.grant_id, s.segment_id, s.amount, s.rolled_over_from, s.started, s.ended, s.balance, s.pending, s.rolled_out]
            for s in burn.segments
        ],
        "true_ups": [
            [t.grant_id, t.segment_id, t.product_id, t.contract_id, t.invoice_item_id, _time(t.timestamp), t.amount]
            for t in burn.true_ups
        ],
    }


def checkpoint_from_document(doc: dict) -> BalanceCheckpoint:
    burn = BurnCheckpoint(
        at=parse_rfc3339(doc["at"]),
        segments=tuple(
            SegmentState(g, s, _dec(amount), rolled_from, started, ended, _dec(balance), _dec(pending), _dec(rolled_out))
            for g, s, amount, rolled_from, started, ended, balance, pending, rolled_out in doc["segments"]
        ),
        true_ups=tuple(
            TrueUp(g, s, product, contract, item, parse_rfc3339(at), _dec(amount))
            for g, s, product, contract, item, at, amount in doc["true_ups"]
        ),
        unapplied_manual=_dec(doc["unapplied_manual"]),
        unapplied_frozen=_dec(doc["unapplied_frozen"]),
        grants_digest=doc["grants_digest"],
        manual_digest=doc["manual_digest"],
    )
    return BalanceCheckpoint(
        burn, parse_rfc3339(doc["listed_from"]), tuple(doc["straddling"]),
        tuple((c, int(v)) for c, v in doc["contracts"]), int(doc["voids"]),
    )
