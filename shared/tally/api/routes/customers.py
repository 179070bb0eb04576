from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import (
    CustomerArchive,
    CustomerCreate,
    CustomerSetName,
    CustomerUpdateConfig,
    SetIngestAliases,
    customer_detail_json,
    customer_json,
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
    service = wiring.customer_service()
    if query.get("customer_ids"):
        customers = [service.get(cid) for cid in query["customer_ids"].split(",") if cid]
        return {"data": [customer_detail_json(c) for c in customers], "next_page": None}
    if query.get("ingest_alias"):
        customer = service.by_alias(query["ingest_alias"])
        return {"data": [customer_detail_json(customer)] if customer else [], "next_page": None}
    page = service.list(page_limit(query), query.get("next_page"))
    archived = query.get("only_archived", "false").lower() == "true"
    items = [c for c in page.items if (c.archived_at is not None) == archived]
    return {"data": [customer_detail_json(c) for c in items], "next_page": page.next_page}


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
