"""Invoices as the API answers them, built from domain lines in memory (no stack, no SDK calls):
lines go through the API's own writer (`tally.api.invoice_models.invoice_json`) and back through
`exact_json.loads`, so each sample has exactly the JSON shape and digits `GET .../invoices/{id}`
returns. Shared by the invoice document, PDF and hosted page tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tally.api.invoice_models import invoice_json
from tally.billing import exact_json
from tally.billing.pricing import USD_CENTS, CreditType, Invoice, LineItem, LineType, ProductType
from tally.billing.pricing.lines import SubLineItem
from tally.billing.pricing.pricers import TierCharge
from tally.services.invoices import DraftInvoice

UTC = timezone.utc
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
CPU = CreditType("c-cpu", "CPU credits", precision=4)
D = Decimal


def _line(kind: LineType, name: str, product_id: str, quantity: str, unit_price: str | None, total: str,
          credit_type: CreditType = USD_CENTS, **extra: Any) -> LineItem:
    product_type = {LineType.SUBSCRIPTION: ProductType.SUBSCRIPTION, LineType.USAGE: ProductType.USAGE}.get(kind, ProductType.FIXED)
    return LineItem(kind, name, product_id, product_type, credit_type, D(quantity), None if unit_price is None else D(unit_price),
                    D(total), D(total), START, END, **extra)


def as_answered(invoice: Invoice, invoice_id: str = "inv-sample-1", regenerated_from: str | None = None) -> dict:
    """The invoice's `data` object as the API answers it, numbers exact."""
    draft = DraftInvoice(invoice_id, invoice, None, regenerated_from_invoice_id=regenerated_from)
    return exact_json.loads(exact_json.dumps(invoice_json(draft, {})))


def tiered_with_commits_and_credits(status: str = "FINALIZED") -> Invoice:
    """API calls on three graduated tiers in two regions, seats, a prepaid commit and a credit drawn down."""
    tiers = (TierCharge(D(0), D(1000), D("0.5"), D(500)), TierCharge(D(1000), D(9000), D("0.25"), D(2250)),
             TierCharge(D(10000), D(2345), D("0.125"), D("293.125")))
    lines = [
        _line(LineType.USAGE, "API calls", "p-api", "12345", None, "3043.13", presentation_group_values={"region": "eu-west"},
              sub_line_items=(SubLineItem("API calls", D(12345), D("3043.125"), tiers),)),
        _line(LineType.USAGE, "API calls", "p-api", "400", "0.5", "200", presentation_group_values={"region": "us-east"},
              sub_line_items=(SubLineItem("API calls", D(400), D(200), (TierCharge(D(0), D(400), D("0.5"), D(200)),)),)),
        _line(LineType.USAGE, "Storage GB-hours", "p-storage", "720", "0.0025", "1.8"),
        _line(LineType.SUBSCRIPTION, "Seats", "p-seats", "12", "2500", "30000", subscription_id="sub-1"),
        _line(LineType.APPLIED_COMMIT_OR_CREDIT, "Annual prepaid commit", "p-commit", "1", None, "-25000",
              commit_id="commit-1", commit_type="PREPAID"),
        _line(LineType.APPLIED_COMMIT_OR_CREDIT, "Onboarding credit", "p-credit", "1", None, "-1234.5",
              commit_id="credit-1", commit_type="CREDIT"),
    ]
    subtotal = D("3043.13") + 200 + D("1.8") + 30000
    return Invoice("contract-1", "customer-1", USD_CENTS, START, END, lines, subtotal, subtotal - 25000 - D("1234.5"), status=status)


def custom_pricing_unit() -> Invoice:
    """GPU and inference usage priced in CPU credits, converted to USD cents at 12.5 cents a credit."""
    lines = [
        _line(LineType.USAGE, "GPU hours", "p-gpu", "37.5", "40", "1500", CPU, pricing_group_values={"gpu": "a100"}),
        _line(LineType.USAGE, "GPU hours", "p-gpu", "10", "25.5", "255", CPU, pricing_group_values={"gpu": "t4"}),
        _line(LineType.USAGE, "Inference tokens", "p-tokens", "1000000", "0.0001234", "123.4", CPU),
        _line(LineType.SUBSCRIPTION, "Platform fee", "p-platform", "1", "9900", "9900"),
        _line(LineType.CPU_CONVERSION, "CPU credits conversion", "", "1878.4", "12.5", "23480"),
    ]
    return Invoice("contract-2", "customer-2", USD_CENTS, START, END, lines, D(33380), D(33380))


def many_lines(count: int = 5000, products: int = 50) -> Invoice:
    """`count` usage lines: `products` products, each with count/products presentation group values."""
    per_product = count // products
    lines = []
    total = D(0)
    for p in range(products):
        for g in range(per_product):
            quantity = D(1000 + 37 * g + p)
            price = D("0.0375")
            line_total = USD_CENTS.round(quantity * price)  # rounded once, as rating rounds a line
            lines.append(_line(LineType.USAGE, f"Product {p:02d}", f"p-{p:02d}", str(quantity), str(price), str(line_total),
                               presentation_group_values={"customer_tenant": f"tenant-{g:04d}"}))
            total += line_total
    return Invoice("contract-3", "customer-3", USD_CENTS, START, END, lines, total, total)


def regenerated(invoice: Invoice) -> dict:
    return as_answered(replace(invoice, status="FINALIZED"), "inv-sample-2", regenerated_from="inv-sample-1")


# ---- reading a rendered invoice back ---------------------------------------------------------------

def pdf_text(pdf: bytes) -> str:
    """The PDF's text as poppler's `pdftotext -layout` reads it (what a reader copies)."""
    import subprocess

    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def expected_rows(invoice: dict) -> list[tuple[str, ...]]:
    """Every figure of the invoice JSON, as the rows a reader must find: (group values..., quantity,
    unit price, total) per line, (quantity, price, subtotal) per tier, the applied and conversion
    lines, then subtotal and total. Written with the one formatter the unit tests pin down."""
    from tally.billing.invoice_document import format_money, format_quantity

    rows: list[tuple[str, ...]] = []
    for line in invoice["line_items"]:
        ct = line["credit_type"]
        if line["type"] == "applied_commit_or_credit":
            rows.append((line["name"], format_money(line["total"], ct)))
            continue
        if line["type"] == "cpu_conversion":
            unit = line["name"].removesuffix(" conversion")
            rows.append((format_money(line["quantity"], {"name": unit}), f"to {ct['name']}", format_money(line["unit_price"], ct),
                         format_money(line["total"], ct)))
            continue
        values = [f"{k}: {v}" for group in ("pricing_group_values", "presentation_group_values") for k, v in (line.get(group) or {}).items()]
        unit_price = [] if line.get("unit_price") is None else [format_money(line["unit_price"], ct)]
        rows.append((*values, format_quantity(line["quantity"]), *unit_price, format_money(line["total"], ct)))
        for sub in line.get("sub_line_items") or ():
            for tier in sub.get("tiers") or ():
                rows.append((format_quantity(tier["quantity"]), format_money(tier["price"], ct), format_money(tier["subtotal"], ct)))
    rows.append(("Subtotal", format_money(invoice["subtotal"], invoice["credit_type"])))
    rows.append(("Total", format_money(invoice["total"], invoice["credit_type"])))
    return rows


def unmatched_rows(text: str, invoice: dict) -> list[tuple[str, ...]]:
    """The expected rows no line of `text` shows: each row's strings in order on one line, ending
    with its last figure; each PDF line matches one row at most."""
    import re
    from collections import defaultdict

    by_last: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped:
            last = re.split(r"\s{2,}", stripped.strip())[-1]
            by_last[last].append(stripped)
    missing = []
    for row in expected_rows(invoice):
        pattern = re.compile(r"\s+".join(re.escape(part) for part in row[:-1]) + (r".*?\s" if len(row) > 1 else "") + re.escape(row[-1]) + "$")
        candidates = by_last.get(row[-1], [])
        for index, candidate in enumerate(candidates):
            if pattern.search(candidate):
                del candidates[index]
                break
        else:
            missing.append(row)
    return missing
