"""Custom field keys per entity type and their values on entities (/v1/customFields/*)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.custom_field_models import (
    CustomFieldAddKey,
    CustomFieldDeleteValues,
    CustomFieldListKeys,
    CustomFieldRemoveKey,
    CustomFieldSetValues,
)
from tally.api.models import read_body
from tally.api.pagination import paginate_list

router = Router()


def _body() -> dict:
    return read_body(router.current_event)


@router.post("/v1/customFields/addKey")
def add_key() -> dict:
    body = CustomFieldAddKey.model_validate(_body())
    wiring.custom_field_service().add_key(body.entity, body.key, body.enforce_uniqueness)
    return {}


@router.post("/v1/customFields/listKeys")
def list_keys() -> dict:
    body = CustomFieldListKeys.model_validate(_body() or {})
    keys = wiring.custom_field_service().list_keys(body.entities)
    data = [{"entity": d.entity, "key": d.key, "enforce_uniqueness": d.enforce_uniqueness} for d in keys]
    return paginate_list(data, router.current_event.query_string_parameters or {})


@router.post("/v1/customFields/removeKey")
def remove_key() -> dict:
    body = CustomFieldRemoveKey.model_validate(_body())
    wiring.custom_field_service().remove_key(body.entity, body.key)
    return {}


@router.post("/v1/customFields/setValues")
def set_values() -> dict:
    body = CustomFieldSetValues.model_validate(_body())
    wiring.custom_field_service().set_values(body.entity, body.entity_id, body.custom_fields)
    return {}


@router.post("/v1/customFields/deleteValues")
def delete_values() -> dict:
    body = CustomFieldDeleteValues.model_validate(_body())
    wiring.custom_field_service().delete_values(body.entity, body.entity_id, body.keys)
    return {}
