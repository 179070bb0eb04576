"""Request bodies of /v1/customFields/* (metronome-sdk 4.12 custom_field_*_params)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tally.api.models import CustomFields, Request
from tally.billing.limits import MAX_CUSTOM_FIELDS, MAX_ID_LENGTH

Entity = Literal[
    "alert",
    "billable_metric",
    "charge",
    "commit",
    "contract_credit",
    "contract_product",
    "contract",
    "credit_grant",
    "customer_plan",
    "customer",
    "discount",
    "invoice",
    "plan",
    "professional_service",
    "product",
    "rate_card",
    "scheduled_charge",
    "subscription",
    "package_commit",
    "package_credit",
    "package_subscription",
    "package_scheduled_charge",
]


class CustomFieldAddKey(Request):
    enforce_uniqueness: bool
    entity: Entity
    key: str


class CustomFieldListKeys(Request):
    entities: list[Entity] | None = None


class CustomFieldRemoveKey(Request):
    entity: Entity
    key: str


class CustomFieldSetValues(Request):
    custom_fields: CustomFields
    entity: Entity
    entity_id: str = Field(max_length=MAX_ID_LENGTH)


class CustomFieldDeleteValues(Request):
    entity: Entity
    entity_id: str = Field(max_length=MAX_ID_LENGTH)
    keys: list[str] = Field(max_length=MAX_CUSTOM_FIELDS)
