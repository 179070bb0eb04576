from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import MetricArchive, MetricCreate, MetricUpdate, metric_json, read_body
from tally.api.pagination import paginate_list

router = Router()


@router.post("/v1/billable-metrics/create")
def create_metric() -> dict:
    body = MetricCreate.model_validate(read_body(router.current_event))
    metric = wiring.metric_service().create(body.to_domain())
    return {"data": {"id": metric.id}}


@router.get("/v1/billable-metrics/<metric_id>")
def get_metric(metric_id: str) -> dict:
    metric = wiring.metric_service().get(metric_id)
    return {"data": metric_json(metric, wiring.backfill_service().view(metric))}


@router.put("/v1/billable-metrics/<metric_id>")
def update_metric(metric_id: str) -> dict:
    body = MetricUpdate.model_validate(read_body(router.current_event))
    return {"data": {"id": wiring.metric_service().rename(metric_id, body.name).id}}


@router.get("/v1/billable-metrics")
def list_metrics() -> dict:
    query = router.current_event.query_string_parameters or {}
    include_archived = query.get("include_archived", "false").lower() == "true"
    metrics = wiring.metric_service().list(include_archived)
    backfills = wiring.backfill_service().views(metrics)
    return paginate_list([metric_json(m, backfills.get(m.id)) for m in metrics], query)


@router.post("/v1/billable-metrics/archive")
def archive_metric() -> dict:
    body = MetricArchive.model_validate(read_body(router.current_event))
    return {"data": {"id": wiring.metric_service().archive(body.id).id}}
