"""Alerts (Metronome's threshold notifications): /v1/alerts/create and /archive, and per customer
/v1/customer-alerts/list, /get and /reset. Shapes: metronome-sdk types/v1/alert_*.py and
types/v1/customers/customer_alert.py."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import Field

from tally import wiring
from tally.api.models import MAX_NAME_LENGTH, Request, read_body
from tally.api.pagination import paginate_list
from tally.billing.alerts import Alert, AlertState, AlertStatus, CustomFieldFilter, GroupValue, triggered_by
from tally.billing.limits import MAX_CUSTOM_FIELD_KEY_LENGTH, MAX_CUSTOM_FIELD_VALUE_LENGTH, MAX_CUSTOM_FIELDS
from tally.billing.errors import NotFound
from tally.billing.pricing import USD_CENTS
from tally.billing.time import format_rfc3339

router = Router()


class GroupValueIn(Request):
    key: str = Field(min_length=1)
    value: str | None = None


class CustomFieldFilterIn(Request):
    entity: Literal["Contract", "Commit", "ContractCredit", "ContractCreditOrCommit"]
    key: str = Field(min_length=1, max_length=MAX_CUSTOM_FIELD_KEY_LENGTH)
    value: str = Field(max_length=MAX_CUSTOM_FIELD_VALUE_LENGTH)


class AlertCreate(Request):
    alert_type: str
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    threshold: Any  # checked by the domain, so a wrong type is a 400 naming `threshold`
    customer_id: str | None = None
    billable_metric_id: str | None = None
    credit_type_id: str | None = None
    group_values: list[GroupValueIn] = Field(default_factory=list)
    invoice_types_filter: list[str] = Field(default_factory=list)
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)
    evaluate_on_create: bool = True
    access_type: Literal["SPEND"] | None = None  # QUANTITY (seat and unit balances) is not modelled
    custom_field_filters: list[CustomFieldFilterIn] = Field(default_factory=list, max_length=MAX_CUSTOM_FIELDS)


class AlertArchive(Request):
    id: str
    release_uniqueness_key: bool = False


class CustomerAlertList(Request):
    customer_id: str
    alert_statuses: list[Literal["ENABLED", "DISABLED", "ARCHIVED"]] | None = None
    next_page: str | None = None


class CustomerAlertRef(Request):
    alert_id: str
    customer_id: str


def _credit_type(credit_type_id: str) -> dict:
    try:
        credit_type = wiring.catalog_service().credit_type(credit_type_id)
    except NotFound:
        credit_type = USD_CENTS if credit_type_id == USD_CENTS.id else None
    return {"id": credit_type_id, "name": credit_type.name if credit_type else credit_type_id}


def alert_json(alert: Alert) -> dict:
    body: dict[str, Any] = {
        "id": alert.id,
        "name": alert.name,
        "status": alert.status.value,
        "threshold": alert.threshold,
        "type": alert.type.value,
        "updated_at": format_rfc3339(alert.updated_at or alert.created_at),
        "credit_type": _credit_type(alert.credit_type_id),
        "uniqueness_key": alert.uniqueness_key,
        # not in the SDK's Alert model, which keeps extra fields
        "customer_id": alert.customer_id,
    }
    if alert.billable_metric_id is not None:
        body["billable_metric_id"] = alert.billable_metric_id
    if alert.group_values:
        body["group_values"] = [{"key": g.key, "value": g.value} for g in alert.group_values]
    if alert.invoice_types_filter:
        body["invoice_types_filter"] = list(alert.invoice_types_filter)
    if alert.type.falling:
        body["access_type"] = "SPEND"
    if alert.custom_field_filters:
        body["custom_field_filters"] = [{"entity": f.entity, "key": f.key, "value": f.value} for f in alert.custom_field_filters]
    body["custom_fields"] = dict(alert.custom_fields)  # not in the SDK's Alert either (kept as an extra field)
    return body


def customer_alert_json(alert: Alert, state: AlertState) -> dict:
    archived = alert.status is AlertStatus.ARCHIVED
    return {
        "alert": alert_json(alert),
        "customer_status": None if archived else state.status.value,
        "triggered_by": None if archived else triggered_by(alert, state),
    }


@router.post("/v1/alerts/create")
def create_alert() -> dict:
    body = AlertCreate.model_validate(read_body(router.current_event))
    alert = wiring.alert_service().create(
        name=body.name,
        alert_type=body.alert_type,
        threshold=body.threshold,
        customer_id=body.customer_id,
        billable_metric_id=body.billable_metric_id,
        credit_type_id=body.credit_type_id,
        group_values=[GroupValue(g.key, g.value) for g in body.group_values],
        invoice_types_filter=body.invoice_types_filter,
        uniqueness_key=body.uniqueness_key,
        evaluate_on_create=body.evaluate_on_create,
        custom_field_filters=[CustomFieldFilter(f.entity, f.key, f.value) for f in body.custom_field_filters],
    )
    return {"data": {"id": alert.id}}


@router.post("/v1/alerts/archive")
def archive_alert() -> dict:
    body = AlertArchive.model_validate(read_body(router.current_event))
    alert = wiring.alert_service().archive(body.id, body.release_uniqueness_key)
    return {"data": {"id": alert.id}}


@router.post("/v1/customer-alerts/list")
def list_customer_alerts() -> dict:
    body = CustomerAlertList.model_validate(read_body(router.current_event))
    query = dict(router.current_event.query_string_parameters or {})
    if body.next_page and "next_page" not in query:
        query["next_page"] = body.next_page
    statuses = [s.lower() for s in body.alert_statuses] if body.alert_statuses else None
    rows = wiring.alert_service().customer_alerts(body.customer_id, statuses)
    return paginate_list([customer_alert_json(a, s) for a, s in rows], query)


@router.post("/v1/customer-alerts/get")
def get_customer_alert() -> dict:
    raw = read_body(router.current_event)
    # group_values, alert_specifiers and seat_filter select among parallel alerts in Metronome;
    # here an alert id names exactly one.
    body = CustomerAlertRef.model_validate({k: raw.get(k) for k in ("alert_id", "customer_id")} if isinstance(raw, dict) else raw)
    alert, state = wiring.alert_service().customer_alert(body.alert_id, body.customer_id)
    return {"data": customer_alert_json(alert, state)}


@router.post("/v1/customer-alerts/reset")
def reset_customer_alert() -> dict:
    body = CustomerAlertRef.model_validate(read_body(router.current_event))
    wiring.alert_service().reset(body.alert_id, body.customer_id)
    return {}
