"""Figure 9 of `tally bench`: the PDF of a 5,000-line invoice (GET .../invoices/{id}/pdf's work).

The invoice is built in memory as the API answers it (50 USAGE products × 100 tenant presentation
values, every tenth product on graduated tiers), through the API's own writer, so no stack and no
5,000 calls are needed. Measured side by side in the same process: the CPU time to turn that answer
into the document model and the PDF (tally.rendering.invoice_pdf), against the baseline of
serialising the same answer as the JSON the invoice route sends; and the PDF's size against the
JSON's. Quick runs use 1,000 lines and one repeat.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone
from decimal import Decimal

from infra.bench.report import Row

UTC = timezone.utc
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
PRODUCTS = 50


def invoice_answer(lines: int) -> dict:
    """The answer of GET /v1/customers/{id}/invoices/{id} for an invoice of `lines` usage lines."""
    from tally.api.invoice_models import invoice_json
    from tally.billing import exact_json
    from tally.billing.pricing import USD_CENTS, Invoice, LineItem, LineType, ProductType
    from tally.billing.pricing.lines import SubLineItem
    from tally.billing.pricing.pricers import TierCharge
    from tally.services.invoices import DraftInvoice

    items, total = [], Decimal(0)
    per_product = max(1, lines // PRODUCTS)
    for p in range(PRODUCTS):
        for t in range(per_product):
            quantity = Decimal(1_000 + 37 * t + p)
            if p % 10 == 0:  # graduated: 1,000 at 0.05 cents, the rest at 0.02
                tiers = (TierCharge(Decimal(0), Decimal(1_000), Decimal("0.05"), Decimal(50)),
                         TierCharge(Decimal(1_000), quantity - 1_000, Decimal("0.02"), (quantity - 1_000) * Decimal("0.02")))
                precise, unit_price = sum(t.subtotal for t in tiers), None
                subs = (SubLineItem(f"Product {p:02d}", quantity, precise, tiers),)
            else:
                unit_price = Decimal("0.0375")
                precise, subs = quantity * unit_price, ()
            line_total = USD_CENTS.round(precise)
            items.append(LineItem(LineType.USAGE, f"Product {p:02d}", f"p-{p:02d}", ProductType.USAGE, USD_CENTS, quantity,
                                  unit_price, line_total, precise, START, END, None, {"tenant": f"tenant-{t:04d}"}, subs))
            total += line_total
    invoice = Invoice("contract-bench", "customer-bench", USD_CENTS, START, END, items, total, total)
    return exact_json.loads(exact_json.dumps(invoice_json(DraftInvoice("inv-bench", invoice, None), {})))


def _cpu_ms(call) -> tuple[object, float]:
    began = time.process_time()
    result = call()
    return result, (time.process_time() - began) * 1_000


def figure_pdf(report, quick: bool) -> None:
    from tally.billing import exact_json
    from tally.billing.invoice_document import invoice_document
    from tally.rendering.invoice_pdf import render_invoice_pdf

    lines, repeats = (1_000, 1) if quick else (5_000, 3)
    answer = invoice_answer(lines)
    render = lambda: render_invoice_pdf(invoice_document(answer, customer_name="Bench Customer Ltd"))  # noqa: E731
    serialise = lambda: exact_json.dumps({"data": answer})  # noqa: E731
    render()  # warm: fonts parsed once per process, as in a warm Lambda
    pdf_ms, json_ms = [], []
    for _ in range(repeats):  # alternated, so both see the same noise
        pdf, ms = _cpu_ms(render)
        pdf_ms.append(ms)
        text, ms = _cpu_ms(serialise)
        json_ms.append(ms)
    pdf_cpu, json_cpu = statistics.median(pdf_ms), statistics.median(json_ms)
    pdf_bytes, json_bytes = len(pdf), len(text.encode())
    pages = pdf.count(b"/Type /Page\n") or pdf.count(b"/Type /Page")
    report.figures |= {
        "pdf_lines": lines,
        "pdf_render_cpu_ms": pdf_cpu,
        "pdf_json_cpu_ms": json_cpu,
        "pdf_vs_json_cpu": pdf_cpu / json_cpu if json_cpu else float("nan"),
        "pdf_bytes": pdf_bytes,
        "pdf_json_bytes": json_bytes,
        "pdf_vs_json_bytes": pdf_bytes / json_bytes,
    }
    report.rows += [
        Row(f"9  invoice PDF, {lines:,} lines: CPU (document + fpdf2)", f"{pdf_cpu:,.0f} ms",
            f"same invoice as JSON: {json_cpu:,.0f} ms", f"{pdf_cpu / json_cpu:.1f}×" if json_cpu else "n/a", "", ""),
        Row(f"9b invoice PDF, {lines:,} lines: size", f"{pdf_bytes:,} bytes ({pages} pages)",
            f"same invoice as JSON: {json_bytes:,} bytes", f"{pdf_bytes / json_bytes:.2f}×", "", ""),
    ]
    report.notes.append(
        f"9: an invoice of {lines:,} usage lines (50 products × tenants, every tenth product tiered), built in memory "
        "through the API's invoice writer; the PDF (A4, DejaVu Sans, header and footer on every page) against "
        "serialising the same answer as the route's JSON, median of "
        f"{repeats} alternated run{'s' if repeats > 1 else ''}, process CPU time, fonts already loaded."
    )
