"""Embeddable dashboards: POST /v1/dashboards/getEmbeddableUrl (metronome-sdk
types/v1/dashboard_get_embeddable_url_params.py) mints the signed URL; GET /pages/dashboards/<token>
serves the page, with no API key (tally.api.app verifies the token before this route runs)."""

from __future__ import annotations

from datetime import timedelta

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.app import html_response, page_claims
from tally.api.dashboard_models import DashboardUrlRequest
from tally.api.models import read_body
from tally.billing.dashboards import DashboardView
from tally.billing.page_tokens import InvoiceScope, PageKind
from tally.rendering.dashboard_pages import render

router = Router()


@router.post("/v1/dashboards/getEmbeddableUrl")
def get_embeddable_url() -> dict:
    body = DashboardUrlRequest.model_validate(read_body(router.current_event))
    view = body.to_view()
    option_index = {o.key: i for i, o in enumerate(body.dashboard_options or ())}
    group_index = {o.group_key_name: i for i, o in enumerate(body.bm_group_key_overrides or ())}
    link = wiring.dashboard_service().embeddable_url(view, option_index, group_index)
    return {"data": {"url": link.url}}


@router.get("/pages/dashboards/<token>")
def dashboard_page(token: str) -> Response:
    claims = page_claims(router)  # the one customer and view this request may show
    view = DashboardView.of(claims.customer_id, claims.scope)
    data = wiring.dashboard_service().data(view)
    links = wiring.page_links()
    # An invoice's links expire with the dashboard's: a link never outlives the one it was found on.
    lifetime = max(claims.expires_at - links.now(), timedelta(seconds=1))

    def invoice_links(invoice_id: str) -> tuple[str, str]:
        scope = InvoiceScope(invoice_id)
        return (links.mint(PageKind.INVOICE_PAGE, view.customer_id, scope, lifetime).url,
                links.mint(PageKind.INVOICE_PDF, view.customer_id, scope, lifetime).url)

    return html_response(render(data, invoice_links))
