"""Contract edits: POST /v2/contracts/edit, /v2/contracts/getEditHistory, /v2/contracts/commits/edit
and /credits/edit, the older /v1/contracts/amend, and /v1/contracts/setUsageFilter."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.contract_amend_models import ContractAmend, amend_field
from tally.api.contract_edit_models import ContractEdit, ContractEditHistory, edit_json
from tally.api.contract_models import ContractView
from tally.api.grant_edit_models import CommitEdit, CreditEdit
from tally.api.models import read_body
from tally.api.usage_filter_models import UsageFilterSet
from tally.billing.errors import InvalidInput
from tally.services import contract_billing_providers
from tally.services.grant_edits import edit_grant
from tally.services.thresholds import sets_threshold
from tally.services.usage_filter_edits import request_field as usage_filter_field

router = Router()


def _edits_json(customer_id: str, contract_id: str, records: list[dict]) -> list[dict]:
    contracts = wiring.contract_service()
    document = contracts.get(customer_id, contract_id)
    contract, products = contracts.contract(document), contracts.products()
    view = ContractView(credit_type_names=wiring.catalog_service().credit_type_names())
    return [edit_json(record, document, contract, products, view) for record in records]


def api_key_id() -> str | None:
    """The id of the API key the request was authenticated with (set by api/app.py)."""
    return router.context.get("api_key_id")


@router.post("/v2/contracts/edit")
def edit_contract() -> dict:
    body = ContractEdit.model_validate(read_body(router.current_event))
    changes = contract_billing_providers.for_edit(body.changes(), body.customer_id, wiring.billing_provider_service())
    record = wiring.contract_edit_service().edit(
        body.customer_id,
        body.contract_id,
        changes,
        author=api_key_id(),
        uniqueness_key=body.uniqueness_key,
        allow_ending_before_finalized=body.allow_contract_ending_before_finalized_invoice,
    )
    if sets_threshold(changes):  # a configuration added or changed is evaluated at once
        wiring.alert_service().evaluate_after_write(body.customer_id)
    (edit,) = _edits_json(body.customer_id, body.contract_id, [record])
    return {"data": {"id": record["id"], "edit": edit}}


@router.post("/v2/contracts/getEditHistory")
def get_edit_history() -> dict:
    body = ContractEditHistory.model_validate(read_body(router.current_event))
    records = wiring.contract_edit_service().history(body.customer_id, body.contract_id)
    return {"data": _edits_json(body.customer_id, body.contract_id, records)}


@router.post("/v2/contracts/commits/edit")
def edit_commit() -> dict:
    body = CommitEdit.model_validate(read_body(router.current_event))
    if body.invoice_contract_id is not None:
        raise InvalidInput("invoice_contract_id", "cannot be edited for a contract-level commit")
    edit_grant(wiring.contract_edit_service(), wiring.contract_service(), body.customer_id, "commits",
               body.to_update(), api_key_id(), wiring.customer_grant_edit_service())
    return {"data": {"id": body.commit_id}}


@router.post("/v2/contracts/credits/edit")
def edit_credit() -> dict:
    body = CreditEdit.model_validate(read_body(router.current_event))
    edit_grant(wiring.contract_edit_service(), wiring.contract_service(), body.customer_id, "credits",
               body.to_update(), api_key_id(), wiring.customer_grant_edit_service())
    return {"data": {"id": body.credit_id}}


@router.post("/v1/contracts/amend")
def amend_contract() -> dict:
    body = ContractAmend.model_validate(read_body(router.current_event))
    try:
        record = wiring.contract_edit_service().edit(
            body.customer_id, body.contract_id, body.changes(), author=api_key_id()
        )
    except InvalidInput as exc:
        raise InvalidInput(amend_field(exc.field), exc.rule) from exc
    return {"data": {"id": record["id"]}}


@router.post("/v1/contracts/setUsageFilter")
def set_usage_filter() -> dict:
    """The SDK's method returns None: the answer is an empty object."""
    body = UsageFilterSet.model_validate(read_body(router.current_event))
    try:
        wiring.contract_edit_service().edit(body.customer_id, body.contract_id, body.changes(), author=api_key_id())
    except InvalidInput as exc:
        raise InvalidInput(usage_filter_field(exc.field), exc.rule) from exc
    return {}
