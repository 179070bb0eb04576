"""One invoice as a person reads it: the presentation model the PDF and the hosted page both render.

Interface (shared by `tally.rendering.invoice_pdf` and the hosted invoice page):

    invoice_document(invoice, issuer_name=..., customer_name=..., address_lines=()) -> InvoiceDocument

- `invoice` is the invoice exactly as `GET /v1/customers/{customer_id}/invoices/{invoice_id}`
  answers it (metronome-sdk types/v1/customers/invoice.py): the `data` object, parsed with its
  numbers exact (`tally.billing.exact_json.loads`: int or Decimal, never float).
- `issuer_name` is who bills (deployment setting `TALLY_ISSUER_NAME`, default `DEFAULT_ISSUER_NAME`);
  `customer_name` the customer's name; `address_lines` the customer's postal address, read from its
  custom fields by `address_lines(custom_fields)` (keys `ADDRESS_KEYS`: address_line_1 .. _4).
- The result is a frozen dataclass tree in which every figure is already a string, written by ONE
  formatter, `format_money` (and `format_quantity` for quantities): a renderer only lays it out, so
  the PDF and the page cannot disagree on a figure or on how it is written.

Amounts are in the credit type's own units, as the API gives them: for "USD (cents)" 123456 is
$1,234.56. Nothing is rounded here: an amount with sub-cent digits shows them ($0.0025), and the
only figures computed (section subtotals) are exact sums of the API's line totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any, Mapping, Sequence

from tally.billing.pricing.money import USD_CENTS
from tally.billing.time import parse_rfc3339

DEFAULT_ISSUER_NAME = "Tally"
# Customer custom fields read as the postal address, in this order (empty ones are left out).
ADDRESS_KEYS = ("address_line_1", "address_line_2", "address_line_3", "address_line_4")

# Exact arithmetic for sums and scaling: wide enough for any two 38-digit DynamoDB numbers.
_EXACT = Context(prec=80)
_CENT = Decimal("0.01")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

STATUS_LABELS = {"DRAFT": "DRAFT", "FINALIZED": "FINALIZED", "VOID": "VOID"}
_COMMIT_KINDS = {"PREPAID": "Prepaid commit", "POSTPAID": "Postpaid commit", "CREDIT": "Credit"}
_LINE_KINDS = {
    "subscription": "Subscription",
    "scheduled": "Scheduled charge",
    "commit_purchase": "Commit purchase",
    "postpaid_trueup": "Postpaid commit true-up",
}


# ---- the one formatter -------------------------------------------------------------------------

def is_usd_cents(credit_type: Mapping[str, Any]) -> bool:
    return credit_type.get("id") == USD_CENTS.id or credit_type.get("name") == USD_CENTS.name


def format_money(amount: Decimal | int, credit_type: Mapping[str, Any]) -> str:
    """`amount` (in the credit type's units) as a person reads it, exactly.

    USD cents: dollars with thousands separators and two decimals, more only for sub-cent digits
    (`$1,234.56`, `-$0.0025`). Any other credit type: the number and the credit type's name
    (`1,234.5 CPU credits`)."""
    amount = _exact(amount)
    if is_usd_cents(credit_type):
        dollars = amount.scaleb(-2, _EXACT)
        digits = _grouped(dollars.copy_abs(), min_places=2)
        return ("-$" if dollars < 0 else "$") + digits
    sign = "-" if amount < 0 else ""
    return f"{sign}{_grouped(amount.copy_abs())} {credit_type.get('name', '')}".rstrip()


def format_quantity(quantity: Decimal | int) -> str:
    """A quantity exactly, with thousands separators and no trailing zeros (`1,500`, `0.125`)."""
    quantity = _exact(quantity)
    return ("-" if quantity < 0 else "") + _grouped(quantity.copy_abs())


def _exact(value: Decimal | int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        # A float has already lost digits; the document refuses to pretend it is exact.
        raise TypeError(f"an exact number (int or Decimal) is required, not {type(value).__name__}")
    return Decimal(value)


def _grouped(value: Decimal, min_places: int = 0) -> str:
    """A non-negative Decimal in fixed notation with thousands separators and at least
    `min_places` decimals, trailing zeros beyond them dropped; never rounded."""
    if value == 0:
        value = Decimal(0)
    exponent = value.normalize(_EXACT).as_tuple().exponent
    places = max(min_places, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return format(value.quantize(Decimal(1).scaleb(-places), context=_EXACT), ",f")


# ---- dates ---------------------------------------------------------------------------------------

def format_date(instant: datetime) -> str:
    instant = instant.astimezone(UTC)
    return f"{instant.day} {_MONTHS[instant.month - 1]} {instant.year}"


def _format_instant(instant: datetime) -> str:
    instant = instant.astimezone(UTC)
    if instant.hour == instant.minute == instant.second == instant.microsecond == 0:
        return format_date(instant)
    return f"{format_date(instant)} {instant:%H:%M} UTC"


def format_period(starting_at: datetime, ending_before: datetime | None) -> str:
    """A service period as a person reads it: the end is exclusive, so a period ending at midnight
    shows its last day (`1 Jan 2026 – 31 Jan 2026`); an instant shows once."""
    if ending_before is None or ending_before <= starting_at:
        return _format_instant(starting_at)
    end = ending_before.astimezone(UTC)
    if end.time() == datetime.min.time() and starting_at.astimezone(UTC).time() == datetime.min.time():
        last_day = end - timedelta(days=1)
        if last_day.date() == starting_at.astimezone(UTC).date():
            return format_date(starting_at)
        return f"{format_date(starting_at)} – {format_date(last_day)}"
    return f"{_format_instant(starting_at)} – {_format_instant(ending_before)}"


# ---- the document ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Header:
    issuer_name: str
    customer_name: str
    address_lines: tuple[str, ...]
    invoice_id: str
    title: str  # "Invoice", "Scheduled invoice", "Consolidated invoice"
    status: str  # DRAFT, FINALIZED or VOID: the mark a renderer shows prominently
    status_notes: tuple[str, ...]  # what else a reader must know: replaces a voided invoice, not billable
    period: str
    issue_date: str
    credit_type: str  # the invoice's credit type's name, e.g. "USD (cents)"
    customer_id: str
    contract_id: str


@dataclass(frozen=True, slots=True)
class TierRow:
    label: str  # "Tier 2 (from 1,000)"
    quantity: str
    unit_price: str
    total: str


@dataclass(frozen=True, slots=True)
class Row:
    """One line item: its description (group values, kind, own period when not the invoice's)."""
    description: str
    group_values: tuple[tuple[str, str], ...]  # pricing then presentation group values
    quantity: str
    unit_price: str  # "" when the quantity spans several tier prices
    total: str
    tiers: tuple[TierRow, ...] = ()


@dataclass(frozen=True, slots=True)
class Section:
    """The lines of one product (in one credit type)."""
    title: str
    product_id: str
    credit_type: str  # the name of the credit type its figures are in
    is_custom_unit: bool  # priced in a custom pricing unit, converted below
    rows: tuple[Row, ...]
    subtotal: str  # the exact sum of its rows' totals


@dataclass(frozen=True, slots=True)
class AppliedRow:
    """A commit or credit drawn down on this invoice (a negative amount), or an adjustment."""
    name: str
    kind: str  # "Prepaid commit", "Postpaid commit", "Credit", "Adjustment"
    total: str


@dataclass(frozen=True, slots=True)
class ConversionRow:
    """What the lines priced in a custom pricing unit add up to, converted to the invoice's credit type."""
    unit: str  # the custom pricing unit's name
    unit_amount: str  # in the unit, e.g. "1,500 CPU credits"
    rate: str  # invoice money per one unit, e.g. "$0.50"
    total: str


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    header: Header
    sections: tuple[Section, ...]
    applied: tuple[AppliedRow, ...]
    conversions: tuple[ConversionRow, ...]
    subtotal: str
    total: str
    line_count: int  # line items shown (rows of sections, applied and conversion rows)


def address_lines(custom_fields: Mapping[str, str] | None) -> tuple[str, ...]:
    """The customer's postal address from its custom fields (`ADDRESS_KEYS`, blanks skipped)."""
    fields = custom_fields or {}
    return tuple(fields[k].strip() for k in ADDRESS_KEYS if isinstance(fields.get(k), str) and fields[k].strip())


def invoice_document(
    invoice: Mapping[str, Any],
    *,
    issuer_name: str = DEFAULT_ISSUER_NAME,
    customer_name: str,
    address_lines: Sequence[str] = (),
) -> InvoiceDocument:
    """The presentation of `invoice` (the API's invoice JSON, numbers exact); see the module doc."""
    credit_type = invoice["credit_type"]
    sections: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    applied: list[AppliedRow] = []
    conversions: list[ConversionRow] = []
    for line in invoice.get("line_items") or ():
        kind = line.get("type")
        if kind == "applied_commit_or_credit":
            commit = line.get("applied_commit_or_credit") or {}
            applied.append(
                AppliedRow(line["name"], _COMMIT_KINDS.get(commit.get("type"), "Commit"), format_money(line["total"], line["credit_type"]))
            )
        elif kind == "cpu_conversion":
            conversions.append(_conversion_row(line))
        else:
            key = (line.get("product_id") or "", line["name"], line["credit_type"].get("id", ""))
            sections.setdefault(key, []).append(line)
    for adjustment in invoice.get("invoice_adjustments") or ():
        applied.append(AppliedRow(adjustment["name"], "Adjustment", format_money(adjustment["total"], adjustment["credit_type"])))

    starting_at = parse_rfc3339(invoice["start_timestamp"])
    ending_before = parse_rfc3339(invoice["end_timestamp"])
    built = tuple(_section(product_id, lines, credit_type, starting_at, ending_before) for (product_id, _, _), lines in sections.items())
    return InvoiceDocument(
        header=_header(invoice, issuer_name, customer_name, address_lines, starting_at, ending_before),
        sections=built,
        applied=tuple(applied),
        conversions=tuple(conversions),
        subtotal=format_money(invoice["subtotal"], credit_type),
        total=format_money(invoice["total"], credit_type),
        line_count=sum(len(s.rows) for s in built) + len(applied) + len(conversions),
    )


def _header(
    invoice: Mapping[str, Any], issuer_name: str, customer_name: str, address: Sequence[str],
    starting_at: datetime, ending_before: datetime,
) -> Header:
    status = STATUS_LABELS.get(str(invoice.get("status", "")).upper(), str(invoice.get("status", "")).upper())
    notes: list[str] = []
    if status == "DRAFT":
        notes.append("Draft: its figures change until the billing period closes.")
    if status == "VOID":
        notes.append("Void: this invoice is cancelled and is not payable.")
    if invoice.get("regenerated_from_invoice_id"):
        notes.append(f"Replaces voided invoice {invoice['regenerated_from_invoice_id']}.")
    if invoice.get("billable_status") == "unbillable":
        payer = invoice.get("payer") or {}
        notes.append(
            f"Not billed on its own: billed to customer {payer['customer_id']}." if payer.get("customer_id") else "Not billed on its own."
        )
    constituents = invoice.get("constituent_invoices") or ()
    if constituents:
        notes.append(f"Consolidates {len(constituents)} invoice{'s' if len(constituents) != 1 else ''} of other customers.")
    invoice_type = invoice.get("type")
    title = {"SCHEDULED": "Scheduled invoice", "USAGE_CONSOLIDATED": "Consolidated invoice"}.get(invoice_type, "Invoice")
    return Header(
        issuer_name=issuer_name,
        customer_name=customer_name,
        address_lines=tuple(address),
        invoice_id=invoice["id"],
        title=title,
        status=status,
        status_notes=tuple(notes),
        period=format_period(starting_at, ending_before),
        issue_date=format_date(parse_rfc3339(invoice["issued_at"])) if invoice.get("issued_at") else "",
        credit_type=invoice["credit_type"].get("name", ""),
        customer_id=invoice.get("customer_id", ""),
        contract_id=invoice.get("contract_id") or "",
    )


def _section(
    product_id: str, lines: list[Mapping[str, Any]], invoice_credit_type: Mapping[str, Any],
    starting_at: datetime, ending_before: datetime,
) -> Section:
    credit_type = lines[0]["credit_type"]
    total = Decimal(0)
    for line in lines:
        total = _EXACT.add(total, _exact(line["total"]))  # sum() would round at the default 28 digits
    return Section(
        title=lines[0]["name"],
        product_id=product_id,
        credit_type=credit_type.get("name", ""),
        is_custom_unit=credit_type.get("id") != invoice_credit_type.get("id"),
        rows=tuple(_row(line, starting_at, ending_before) for line in lines),
        subtotal=format_money(total, credit_type),
    )


def _row(line: Mapping[str, Any], starting_at: datetime, ending_before: datetime) -> Row:
    credit_type = line["credit_type"]
    values = tuple(
        (str(key), "(none)" if value is None else str(value))
        for group in ("pricing_group_values", "presentation_group_values")
        for key, value in (line.get(group) or {}).items()
    )
    parts = [", ".join(f"{k}: {v}" for k, v in values)] if values else []
    kind = _LINE_KINDS.get(line.get("type", ""))
    if kind:
        parts.insert(0, kind)
    line_start = parse_rfc3339(line["starting_at"]) if line.get("starting_at") else starting_at
    line_end = parse_rfc3339(line["ending_before"]) if line.get("ending_before") else None
    if (line_start, line_end) != (starting_at, ending_before):
        parts.append(format_period(line_start, line_end))
    if line.get("is_prorated"):
        parts.append("prorated")
    origin = line.get("origin")
    if origin and origin.get("customer_id"):  # a consolidated invoice's line: whose usage it bills
        parts.append(f"customer {origin['customer_id']}")
    tiers = tuple(
        TierRow(
            label=f"Tier {index} (from {format_quantity(tier['starting_at'])})",
            quantity=format_quantity(tier["quantity"]),
            unit_price=format_money(tier["price"], credit_type),
            total=format_money(tier["subtotal"], credit_type),
        )
        for sub in line.get("sub_line_items") or ()
        for index, tier in enumerate(sub.get("tiers") or (), start=1)
    )
    unit_price = line.get("unit_price")
    quantity = line.get("quantity")
    return Row(
        description=" · ".join(parts),
        group_values=values,
        quantity="" if quantity is None else format_quantity(quantity),
        unit_price="" if unit_price is None else format_money(unit_price, credit_type),
        total=format_money(line["total"], credit_type),
        tiers=tiers,
    )


def _conversion_row(line: Mapping[str, Any]) -> ConversionRow:
    """A `cpu_conversion` line: its quantity is the amount in the custom unit, its unit price the
    conversion rate, its total in the invoice's credit type. Its name is "<unit> conversion"."""
    name = line["name"]
    unit = name[: -len(" conversion")] if name.endswith(" conversion") else name
    return ConversionRow(
        unit=unit,
        unit_amount=format_money(line.get("quantity", 0), {"name": unit}),
        rate=format_money(line.get("unit_price", 0), line["credit_type"]),
        total=format_money(line["total"], line["credit_type"]),
    )
