"""Rate schedules: a rate card's rates over time, and the prices a contract pays after its overrides."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import read_body
from tally.api.pagination import paginate_list
from tally.api.rate_schedule_models import (
    ContractScheduleGet,
    RateCardScheduleGet,
    contract_schedule_json,
    rate_card_schedule_json,
)

router = Router()


def _query() -> dict:
    return router.current_event.query_string_parameters or {}


@router.post("/v1/contract-pricing/rate-cards/getRateSchedule")
def get_rate_card_schedule() -> dict:
    body = RateCardScheduleGet.model_validate(read_body(router.current_event))
    starting_at, ending_before = body.window()
    found = wiring.catalog_service().rate_schedule(body.rate_card_id, starting_at, ending_before, body.rate_selectors())
    return paginate_list([rate_card_schedule_json(rate, record, starting_at) for rate, record in found], _query())


@router.post("/v1/contracts/getContractRateSchedule")
def get_contract_rate_schedule() -> dict:
    body = ContractScheduleGet.model_validate(read_body(router.current_event))
    catalog = wiring.catalog_service()
    at = body.instant(catalog.now())
    contract, prices = wiring.contract_service().rate_schedule(body.customer_id, body.contract_id, at, body.rate_selectors())
    records = {record.product.id: record for record in catalog.product_records("ALL")}
    data = [contract_schedule_json(p, records[p.product_id], contract.rate_card.id, at) for p in prices]
    return paginate_list(data, _query())
