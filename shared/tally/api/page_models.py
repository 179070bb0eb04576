"""Request and response of POST /v1/invoices/getHostedUrl (tally.api.routes.pages)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tally.api.models import MAX_ID_LENGTH, Request
from tally.billing.limits import MAX_PAGE_LINK_LIFETIME_DAYS
from tally.services.page_links import DEFAULT_LIFETIME


class InvoiceHostedUrlRequest(Request):
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    invoice_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=MAX_PAGE_LINK_LIFETIME_DAYS * 86_400,
        description=f"How long the links work; default {DEFAULT_LIFETIME.days} days.",
    )


class InvoiceHostedUrlData(BaseModel):
    url: str
    pdf_url: str
    expires_at: str


class InvoiceHostedUrlResponse(BaseModel):
    """The answer of POST /v1/invoices/getHostedUrl (tally.api.openapi)."""

    data: InvoiceHostedUrlData
