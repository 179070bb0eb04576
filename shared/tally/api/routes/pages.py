"""The hosted invoice page and its PDF, at signed URLs that need no API key, and the route that
mints those URLs.

- `POST /v1/invoices/getHostedUrl` {customer_id, invoice_id, expires_in_seconds?} (API key):
  {"data": {"url", "pdf_url", "expires_at"}}, shaped like Metronome's
  `POST /v1/dashboards/getEmbeddableUrl` answer ({"data": {"url"}}; the SDK's strict mode accepts
  the extra fields), so `DashboardGetEmbeddableURLResponse` parses it too. A Tally extension:
  Metronome's API has no hosted invoice page.
- `GET /pages/invoices/<token>`: the invoice as HTML (tally.rendering.invoice_html), from the same
  document model the PDF renders, built from the GET invoice route's own answer.
- `GET /pages/invoice-pdfs/<token>`: the PDF.

tally.api.app verifies the token before either page route runs (tally.services.page_links).
"""

from __future__ import annotations

from datetime import timedelta

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.app import html_response, page_claims
from tally.api.models import read_body
from tally.api.page_models import InvoiceHostedUrlRequest
from tally.billing.page_tokens import InvoiceScope, PageKind
from tally.billing.time import format_rfc3339
from tally.rendering.invoice_html import render_invoice_html
from tally.services.page_links import DEFAULT_LIFETIME

router = Router()


@router.post("/v1/invoices/getHostedUrl")
def get_hosted_invoice_url() -> dict:
    body = InvoiceHostedUrlRequest.model_validate(read_body(router.current_event))
    wiring.invoice_service().get(body.customer_id, body.invoice_id)  # NotFound: no link to what does not exist
    lifetime = timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else DEFAULT_LIFETIME
    links = wiring.page_links()
    scope = InvoiceScope(body.invoice_id)
    page = links.mint(PageKind.INVOICE_PAGE, body.customer_id, scope, lifetime)
    pdf = links.mint(PageKind.INVOICE_PDF, body.customer_id, scope, lifetime)
    return {"data": {"url": page.url, "pdf_url": pdf.url, "expires_at": format_rfc3339(page.expires_at)}}


@router.get("/pages/invoices/<token>")
def invoice_page(token: str) -> Response:
    from tally.api.invoice_documents import invoice_document_of

    claims = page_claims(router)
    scope = claims.scope
    assert isinstance(scope, InvoiceScope)  # the kind was verified: an invoice page's scope is an invoice
    document = invoice_document_of(claims.customer_id, scope.invoice_id)
    links = wiring.page_links()
    # Its PDF link expires with the page's: a link never outlives the one it was found on.
    pdf = links.mint(PageKind.INVOICE_PDF, claims.customer_id, scope, max(claims.expires_at - links.now(), timedelta(seconds=1)))
    return html_response(render_invoice_html(document, pdf.url))


@router.get("/pages/invoice-pdfs/<token>")
def invoice_pdf(token: str) -> Response:
    from tally.api.invoice_documents import invoice_pdf_of

    claims = page_claims(router)
    scope = claims.scope
    assert isinstance(scope, InvoiceScope)
    pdf = invoice_pdf_of(claims.customer_id, scope.invoice_id)
    return Response(
        status_code=200, content_type="application/pdf", body=pdf,  # bytes: Powertools sends them base64-encoded, as API Gateway needs
        headers={
            "Content-Disposition": f'inline; filename="invoice-{_filename(scope.invoice_id)}.pdf"',
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "private, no-store",
            "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        },
    )


def _filename(invoice_id: str) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in invoice_id)[:80]
