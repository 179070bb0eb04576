from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.contract_models import parse_time_param
from tally.billing.errors import InvalidInput
from tally.api.invoice_models import invoice_json
from tally.api.models import (
    CustomerArchive,
    CustomerCreate,
    CustomerPreviewEvents,
    CustomerSetName,
    CustomerUpdateConfig,
    SetIngestAliases,
    customer_detail_json,
    customer_json,
    daily_cost_json,
    metric_json,
    read_body,
)
from tally.api.pagination import page_limit, paginate_list

router = Router()


@router.post("/v1/customers")
def create_customer() -> dict:
    body = CustomerCreate.model_validate(read_body(router.current_event))
    customer = wiring.customer_service().create(body.name, body.ingest_aliases, body.external_id, body.custom_fields)
    return {"data": customer_json(customer)}


@router.get("/v1/customers/<customer_id>")
def get_customer(customer_id: str) -> dict:
    return {"data": customer_detail_json(wiring.customer_service().get(customer_id))}


@router.get("/v1/customers")
def list_customers() -> dict:
    query = router.current_event.query_string_parameters or {}
    page = wiring.customer_service().list(
        page_limit(query),
        query.get("next_page"),
        customer_ids=_ids(query.get("customer_ids")),
        ingest_alias=query.get("ingest_alias") or None,
        only_archived=_flag(query, "only_archived"),
        salesforce_account_ids=_ids(query.get("salesforce_account_ids")),
    )
    return {"data": [customer_detail_json(c) for c in page.items], "next_page": page.next_page}


def _flag(query: dict, name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise InvalidInput(name, "must be true or false")
    return value == "true"


def _ids(value: str | None) -> list[str] | None:
    """A comma-separated array parameter (the SDK sends arrays so; API Gateway joins repeats so)."""
    return None if value is None else [part for part in value.split(",") if part]


@router.get("/v1/customers/<customer_id>/costs")
def list_customer_costs(customer_id: str) -> dict:
    query = router.current_event.query_string_parameters or {}
    days, next_page = wiring.customer_cost_service().list(
        customer_id,
        starting_on=parse_time_param("starting_on", query.get("starting_on")),
        ending_before=parse_time_param("ending_before", query.get("ending_before")),
        cursor=query.get("next_page"),
        limit=page_limit(query),
    )
    return {"data": [daily_cost_json(day) for day in days], "next_page": next_page}


@router.post("/v1/customers/<customer_id>/previewEvents")
def preview_events(customer_id: str) -> dict:
    body = CustomerPreviewEvents.model_validate(read_body(router.current_event))
    drafts = wiring.event_preview_service().preview(customer_id, body.events, body.mode)
    products = next((d.products for d in drafts if d.products is not None), None)
    if products is None:
        products = wiring.contract_service().products()
    return {"data": [invoice_json(d, products, body.skip_zero_qty_line_items) for d in drafts]}


@router.post("/v1/customers/<customer_id>/setIngestAliases")
def set_ingest_aliases(customer_id: str) -> dict:
    body = SetIngestAliases.model_validate(read_body(router.current_event))
    wiring.customer_service().set_ingest_aliases(customer_id, body.ingest_aliases)
    return {}


@router.post("/v1/customers/archive")
def archive_customer() -> dict:
    body = CustomerArchive.model_validate(read_body(router.current_event))
    return {"data": {"id": wiring.customer_archiving().archive(body.id).id}}


@router.post("/v1/customers/<customer_id>/setName")
def set_customer_name(customer_id: str) -> dict:
    body = CustomerSetName.model_validate(read_body(router.current_event))
    return {"data": customer_json(wiring.customer_service().set_name(customer_id, body.name))}


@router.post("/v1/customers/<customer_id>/updateConfig")
def update_customer_config(customer_id: str) -> dict:
    body = CustomerUpdateConfig.model_validate(read_body(router.current_event))
    wiring.customer_service().update_config(
        customer_id, ingest_aliases=body.ingest_aliases, salesforce_account_id=body.salesforce_account_id
    )
    return {}


@router.get("/v1/customers/<customer_id>/billable-metrics")
def customer_billable_metrics(customer_id: str) -> dict:
    query = router.current_event.query_string_parameters or {}
    wiring.customer_service().get(customer_id)  # 404 for an unknown customer
    include_archived = query.get("include_archived", "false").lower() == "true"
    metrics = wiring.metric_service().list(include_archived)
    return paginate_list([metric_json(m) for m in metrics], query)
