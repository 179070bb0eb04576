"""Security: GET /v1/auditLogs (who changed what, and when) and GET /v1/services (where this
deployment accepts connections, for allow-lists)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.audit_models import AuditLogQuery
from tally.api.models import parse_instant
from tally.api.pagination import page_limit

router = Router()


@router.get("/v1/auditLogs")
def list_audit_logs() -> dict:
    query = AuditLogQuery.model_validate(router.current_event.query_string_parameters or {})
    page = wiring.audit_log_service().list(
        limit=page_limit({"limit": query.limit} if query.limit is not None else {}),
        next_page=query.next_page,
        sort=query.sort,
        starting_on=parse_instant("starting_on", query.starting_on),
        ending_before=parse_instant("ending_before", query.ending_before),
        resource_type=query.resource_type,
        resource_id=query.resource_id,
    )
    return {"data": [entry.to_api() for entry in page.entries], "next_page": page.next_page}


@router.get("/v1/services")
def list_services() -> dict:
    reached_at = (router.current_event.raw_event.get("requestContext") or {}).get("domainName")
    return {"services": [service.to_api() for service in wiring.deployment_services().list(reached_at)]}
