"""Contracts on Metronome's v2 surface (/v2/contracts/get and /list), read from the same stored
contracts as /v1/contracts/*."""

from __future__ import annotations

from dataclasses import replace

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.contract_models import ContractView
from tally.api.contract_v2_models import ContractV2Get, ContractV2List, contract_v2_json
from tally.api.models import read_body
from tally.api.pagination import offset_cursor
from tally.api.routes.contracts import contract_view

router = Router()


def _contract_v2_json(document: dict, view: ContractView) -> dict:
    service = wiring.contract_service()
    return contract_v2_json(document, service.contract(document), service.products(), view)


@router.post("/v2/contracts/get")
def get_contract_v2() -> dict:
    body = ContractV2Get.model_validate(read_body(router.current_event)).validated()
    as_of = body.as_of()
    view = contract_view(body.customer_id, body.include_balance, body.include_ledgers)
    if as_of is None:
        document = wiring.contract_service().get(body.customer_id, body.contract_id)
    else:
        # The contract as its edit history had it then; subscriptions' periods and the recurring
        # grants made are those of that instant too (balances stay the current ones).
        document = wiring.contract_edit_service().as_of(body.customer_id, body.contract_id, as_of)
        view = replace(view, now=as_of)
    return {"data": _contract_v2_json(document, view)}


@router.post("/v2/contracts/list")
def list_contracts_v2() -> dict:
    body = ContractV2List.model_validate(read_body(router.current_event))
    covering_date, starting_at = body.filters()
    documents = wiring.contract_service().list(
        body.customer_id, include_archived=body.include_archived, covering_date=covering_date, starting_at=starting_at
    )
    start = offset_cursor(body.cursor, "cursor")
    end = start + body.limit
    page = documents[start:end]
    view = contract_view(body.customer_id, body.include_balance, body.include_ledgers) if page else ContractView()
    return {
        "data": [_contract_v2_json(d, view) for d in page],
        "cursor": str(end) if end < len(documents) else None,
    }
