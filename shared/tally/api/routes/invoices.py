"""Invoice corrections: /v1/invoices/void and /v1/invoices/regenerate (metronome-sdk
types/v1/invoice_void_params.py, invoice_regenerate_params.py and their responses)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import Field

from tally import wiring
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
