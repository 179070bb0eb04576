"""An invoice as a document: the API's own answer for it, with the customer's name and address and
the issuer's name, as the presentation model (tally.billing.invoice_document) and as a PDF.

    invoice_document_of(customer_id, invoice_id) -> InvoiceDocument
    invoice_pdf_of(customer_id, invoice_id) -> bytes

The hosted invoice page renders `invoice_document_of` and serves `invoice_pdf_of` at its signed
URL, so the JSON, the page and the PDF always show the same figures.
"""

from __future__ import annotations

from tally import wiring
from tally.api.routes.contracts import invoice_answer
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.billing.invoice_document import InvoiceDocument, address_lines, invoice_document
from tally.billing.limits import MAX_INVOICE_PDF_BYTES, MAX_INVOICE_PDF_LINES
from tally.settings import get_settings


def invoice_document_of(customer_id: str, invoice_id: str) -> InvoiceDocument:
    """NotFound for an unknown customer or invoice, or another customer's invoice."""
    customer = wiring.customer_service().get(customer_id)
    # The answer exactly as a client reads it: numbers back from its own JSON text, exact.
    answer = exact_json.loads(exact_json.dumps(invoice_answer(customer_id, invoice_id)))
    lines = len(answer.get("line_items") or ())
    if lines > MAX_INVOICE_PDF_LINES:
        raise InvalidInput(
            "invoice_id", f"the invoice has {lines:,} line items; a document holds at most {MAX_INVOICE_PDF_LINES:,} (read it as JSON)"
        )
    return invoice_document(
        answer,
        issuer_name=get_settings().issuer_name,
        customer_name=customer.name,
        address_lines=address_lines(customer.custom_fields),
    )


def invoice_pdf_of(customer_id: str, invoice_id: str) -> bytes:
    from tally.rendering.invoice_pdf import render_invoice_pdf  # fpdf2 loads only where PDFs are made

    pdf = render_invoice_pdf(invoice_document_of(customer_id, invoice_id))
    if len(pdf) > MAX_INVOICE_PDF_BYTES:
        raise InvalidInput(
            "invoice_id", f"its PDF is {len(pdf):,} bytes; a response carries at most {MAX_INVOICE_PDF_BYTES:,} (read it as JSON)"
        )
    return pdf
