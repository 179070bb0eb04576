"""Named schedules of rate cards, contracts and customers (custom data over time)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import read_body
from tally.api.named_schedule_models import (
    ContractScheduleGet,
    ContractScheduleUpdate,
    ContractSchedulesList,
    CustomerScheduleGet,
    CustomerScheduleUpdate,
    RateCardScheduleGet,
    RateCardScheduleUpdate,
    listing_json,
    segments_json,
)
from tally.api.pagination import paginate_list

router = Router()


def _body() -> dict:
    return read_body(router.current_event)


@router.post("/v1/contract-pricing/rate-cards/getNamedSchedule")
def get_rate_card_schedule() -> dict:
    body = RateCardScheduleGet.model_validate(_body())
    return segments_json(wiring.named_schedule_service().rate_card_schedule(body.rate_card_id, body.schedule_name, body.covering()))


@router.post("/v1/contract-pricing/rate-cards/updateNamedSchedule")
def update_rate_card_schedule() -> dict:
    body = RateCardScheduleUpdate.model_validate(_body())
    wiring.named_schedule_service().update_rate_card_schedule(body.rate_card_id, body.schedule_name, *body.window(), body.value)
    return {}


@router.post("/v1/contracts/getNamedSchedule")
def get_contract_schedule() -> dict:
    body = ContractScheduleGet.model_validate(_body())
    segments = wiring.named_schedule_service().contract_schedule(
        body.customer_id, body.contract_id, body.schedule_name, body.properties, body.covering()
    )
    return segments_json(segments)


@router.post("/v1/contracts/updateNamedSchedule")
def update_contract_schedule() -> dict:
    body = ContractScheduleUpdate.model_validate(_body())
    wiring.named_schedule_service().update_contract_schedule(
        body.customer_id, body.contract_id, body.schedule_name, *body.window(), body.value, body.properties
    )
    return {}


@router.post("/v1/contracts/listNamedSchedules")
def list_contract_schedules() -> dict:
    body = ContractSchedulesList.model_validate(_body())
    found = wiring.named_schedule_service().contract_schedules(
        body.customer_id, body.contract_id, body.schedule_name, body.properties, body.covering()
    )
    return paginate_list([listing_json(s) for s in found], {"next_page": body.next_page}, body.limit)


@router.post("/v1/customers/getNamedSchedule")
def get_customer_schedule() -> dict:
    body = CustomerScheduleGet.model_validate(_body())
    return segments_json(wiring.named_schedule_service().customer_schedule(body.customer_id, body.schedule_name, body.covering()))


@router.post("/v1/customers/updateNamedSchedule")
def update_customer_schedule() -> dict:
    body = CustomerScheduleUpdate.model_validate(_body())
    wiring.named_schedule_service().update_customer_schedule(body.customer_id, body.schedule_name, *body.window(), body.value)
    return {}
