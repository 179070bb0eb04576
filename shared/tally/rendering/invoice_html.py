"""The hosted invoice page: one InvoiceDocument (tally.billing.invoice_document, the model the PDF
renders too) as an accessible HTML page, every figure as the document writes it.

    render_invoice_html(document, pdf_url) -> tally.rendering.html.Page

Structure: a header card (issuer, title, status badge and notes, who is billed, the invoice's facts
as a labelled `<dl>`, the PDF link), then one `<table>` per product with a `<caption>`, column
headers `<th scope="col">`, each line's description as `<th scope="row">` and its tiers beneath it,
a subtotal footer; then the commits and credits applied, custom pricing unit conversions, and the
totals. Figures carry `data-figure` (and tables `data-section`) so tests read them back.
"""

from __future__ import annotations

from tally.billing.invoice_document import InvoiceDocument, Row, Section
from tally.rendering.html import BASE_CSS, Markup, Page, el, page

_BADGE = {"DRAFT": "badge-draft", "FINALIZED": "badge-finalized", "VOID": "badge-void"}

INVOICE_CSS = BASE_CSS + """
table{table-layout:fixed}
thead th:first-child,tbody th{width:40%}
.num{white-space:normal;padding-left:1rem}
.table-wrap{overflow-x:auto}
@media (max-width:40rem){table{table-layout:auto;font-size:.9rem}thead th:first-child,tbody th{width:auto}main{padding:1rem .5rem}th,td,.num{padding:.4rem .25rem}tr.tier th{padding-left:.75rem}}
header.card h1{display:flex;flex-wrap:wrap;align-items:center;gap:.75rem}
.parties{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem 2rem;margin-top:1rem}
.parties h2{margin:0 0 .25rem;font-size:1rem}
.parties p{margin:0}
ul.notes{margin:.5rem 0 0;padding-left:1.25rem}
tr.tier th{font-weight:400;padding-left:1.75rem;color:var(--muted)}
tr.tier td{color:var(--muted)}
tbody th{font-weight:400}
.total-row th,.total-row td{font-size:1.1rem}
.download{margin:1rem 0 0}
"""


def render_invoice_html(document: InvoiceDocument, pdf_url: str | None) -> Page:
    header = document.header
    title = f"{header.title} {header.invoice_id}"
    body = el(
        "main", {},
        _header_card(document, pdf_url),
        [_section_table(section, index) for index, section in enumerate(document.sections)],
        _applied_table(document) if document.applied else None,
        _conversions_table(document) if document.conversions else None,
        _totals_table(document),
        el("p", {"class": "muted"}, f"Issued by {header.issuer_name}. Amounts in {header.credit_type}."),
    )
    return page(f"{title} · {header.customer_name}", body, css=INVOICE_CSS)


def _header_card(document: InvoiceDocument, pdf_url: str | None) -> Markup:
    header = document.header
    facts = [
        ("Invoice number", header.invoice_id, "invoice-id"),
        ("Status", header.status, "status"),
        ("Billing period", header.period, "period"),
        ("Issue date", header.issue_date or "Not issued yet", "issue-date"),
        ("Currency", header.credit_type, "credit-type"),
        ("Customer id", header.customer_id, "customer-id"),
        ("Contract id", header.contract_id or "None", "contract-id"),
    ]
    return el(
        "header", {"class": "card"},
        el("p", {"class": "muted"}, header.issuer_name),
        el("h1", {}, header.title,
           el("span", {"class": f"badge {_BADGE.get(header.status, 'badge-draft')}", "data-figure": "status"}, header.status)),
        el("ul", {"class": "notes", "aria-label": "About this invoice"}, [el("li", {}, note) for note in header.status_notes])
        if header.status_notes else None,
        el("div", {"class": "parties"},
           el("section", {"aria-labelledby": "billed-to"},
              el("h2", {"id": "billed-to"}, "Billed to"),
              el("p", {"data-figure": "customer-name"}, header.customer_name),
              [el("p", {"class": "muted"}, line) for line in header.address_lines]),
           el("section", {"aria-labelledby": "invoice-facts"},
              el("h2", {"id": "invoice-facts"}, "Invoice details"),
              el("dl", {"class": "facts"},
                 [(el("dt", {}, label), el("dd", {"data-figure": key}, value)) for label, value, key in facts]))),
        el("p", {"class": "download no-print"},
           el("a", {"href": pdf_url, "data-figure": "pdf-link", "type": "application/pdf"},
              "Download this invoice as PDF",
              el("span", {"class": "visually-hidden"}, f" (invoice {header.invoice_id})")))
        if pdf_url else None,
    )


def _columns(*names: str, numeric_from: int = 1) -> Markup:
    return el("thead", {}, el("tr", {}, [
        el("th", {"scope": "col", "class": "num" if i >= numeric_from else None}, name) for i, name in enumerate(names)
    ]))


def _wrapped(table: Markup) -> Markup:
    """A table that scrolls sideways on a narrow screen instead of overflowing the page."""
    return el("div", {"class": "table-wrap"}, table)


def _section_table(section: Section, index: int) -> Markup:
    caption = section.title if not section.is_custom_unit else f"{section.title} (in {section.credit_type})"
    return _wrapped(el(
        "table", {"data-section": section.product_id or f"section-{index}"},
        el("caption", {}, caption),
        _columns("Description", "Quantity", "Unit price", "Amount"),
        el("tbody", {}, [_row(section, row) for row in section.rows]),
        el("tfoot", {}, el("tr", {},
                           el("th", {"scope": "row", "colspan": "3"}, f"Subtotal, {section.title}"),
                           el("td", {"class": "num", "data-figure": "section-subtotal"}, section.subtotal))),
    ))


def _row(section: Section, row: Row) -> list[Markup]:
    rows = [el("tr", {"data-line": "item"},
               el("th", {"scope": "row"}, row.description or section.title),
               el("td", {"class": "num", "data-figure": "quantity"}, row.quantity),
               el("td", {"class": "num", "data-figure": "unit-price"}, row.unit_price or ("Tiered" if row.tiers else "")),
               el("td", {"class": "num", "data-figure": "line-total"}, row.total))]
    rows += [el("tr", {"class": "tier", "data-line": "tier"},
                el("th", {"scope": "row"}, tier.label),
                el("td", {"class": "num", "data-figure": "tier-quantity"}, tier.quantity),
                el("td", {"class": "num", "data-figure": "tier-unit-price"}, tier.unit_price),
                el("td", {"class": "num", "data-figure": "tier-total"}, tier.total))
             for tier in row.tiers]
    return rows


def _applied_table(document: InvoiceDocument) -> Markup:
    return _wrapped(el(
        "table", {"data-section": "applied"},
        el("caption", {}, "Commits, credits and adjustments applied"),
        _columns("Name", "Kind", "Amount", numeric_from=2),
        el("tbody", {}, [
            el("tr", {"data-line": "applied"},
               el("th", {"scope": "row"}, row.name),
               el("td", {}, row.kind),
               el("td", {"class": "num", "data-figure": "applied-total"}, row.total))
            for row in document.applied
        ]),
    ))


def _conversions_table(document: InvoiceDocument) -> Markup:
    return _wrapped(el(
        "table", {"data-section": "conversions"},
        el("caption", {}, "Custom pricing units converted"),
        _columns("Unit", "Amount in unit", "Rate per unit", "Amount"),
        el("tbody", {}, [
            el("tr", {"data-line": "conversion"},
               el("th", {"scope": "row"}, row.unit),
               el("td", {"class": "num", "data-figure": "unit-amount"}, row.unit_amount),
               el("td", {"class": "num", "data-figure": "rate"}, row.rate),
               el("td", {"class": "num", "data-figure": "conversion-total"}, row.total))
            for row in document.conversions
        ]),
    ))


def _totals_table(document: InvoiceDocument) -> Markup:
    return _wrapped(el(
        "table", {"data-section": "totals"},
        el("caption", {}, "Totals"),
        el("tbody", {},
           el("tr", {}, el("th", {"scope": "row"}, "Subtotal"),
              el("td", {"class": "num", "data-figure": "subtotal"}, document.subtotal)),
           el("tr", {"class": "total-row"}, el("th", {"scope": "row"}, "Total due" if document.header.status != "VOID" else "Total (void)"),
              el("td", {"class": "num", "data-figure": "total"}, document.total))),
    ))
