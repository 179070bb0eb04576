"""Invoice corrections: /v1/invoices/void and /v1/invoices/regenerate (metronome-sdk
types/v1/invoice_void_params.py, invoice_regenerate_params.py and their responses); and an
invoice's PDF, GET /v1/customers/{customer_id}/invoices/{invoice_id}/pdf (the SDK's retrieve_pdf)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import Field

from tally import wiring
from tally.api.invoice_documents import invoice_pdf_of
from tally.api.models import MAX_ID_LENGTH, Request, read_body
from tally.api.routes.billing_providers import announce_invoice_void

router = Router()


class InvoiceRef(Request):
    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


@router.post("/v1/invoices/void")
def void_invoice() -> dict:
    body = InvoiceRef.model_validate(read_body(router.current_event))
    invoice_id = wiring.cycle_close_service().void(body.id)
    announce_invoice_void(invoice_id)
    return {"data": {"id": invoice_id}}


@router.post("/v1/invoices/regenerate")
def regenerate_invoice() -> dict:
    body = InvoiceRef.model_validate(read_body(router.current_event))
    return {"data": {"id": wiring.cycle_close_service().regenerate(body.id)}}


@router.get("/v1/customers/<customer_id>/invoices/<invoice_id>/pdf")
def get_invoice_pdf(customer_id: str, invoice_id: str) -> Response:
    # bytes: Powertools answers them base64-encoded (isBase64Encoded), as API Gateway needs for binary
    pdf = invoice_pdf_of(customer_id, invoice_id)
    return Response(
        status_code=200,
        content_type="application/pdf",
        body=pdf,
        headers={"Content-Disposition": f'inline; filename="invoice-{_filename_safe(invoice_id)}.pdf"'},
    )


def _filename_safe(invoice_id: str) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in invoice_id)
