"""Offset lifecycle notifications: /v2/notifications/create, get, edit, archive, offset/list and
system/list. Shapes: metronome-sdk types/v2/lifecycle_event_*_notification_config.py; semantics
and delivery: services/notifications.py."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import read_body
from tally.api.notification_models import (
    NotificationCreate,
    NotificationEdit,
    NotificationList,
    NotificationRef,
    SystemNotificationList,
)
from tally.api.pagination import offset_cursor
from tally.billing.errors import InvalidInput
from tally.services.notifications import notification_json

router = Router()


def _optional_body() -> dict:
    """The SDK posts list routes with no body at all when no parameter is given."""
    return read_body(router.current_event) if (router.current_event.body or "").strip() else {}


@router.post("/v2/notifications/create")
def create_notification() -> dict:
    body = NotificationCreate.model_validate(read_body(router.current_event))
    config = wiring.notification_service().create(body.name, body.policy.type, body.policy.offset, body.uniqueness_key)
    return {"data": notification_json(config)}


@router.post("/v2/notifications/get")
def get_notification() -> dict:
    body = NotificationRef.model_validate(read_body(router.current_event))
    return {"data": notification_json(wiring.notification_service().get(body.id))}


@router.post("/v2/notifications/edit")
def edit_notification() -> dict:
    body = NotificationEdit.model_validate(read_body(router.current_event))
    if body.id is None:  # a system notification: on or off
        if body.is_enabled is None:
            raise InvalidInput("is_enabled", "is required to edit a system notification (no id given)")
        if body.policy.offset is not None:
            raise InvalidInput("policy.offset", "a system notification has no offset; create an offset notification instead")
        if body.name is not None:
            raise InvalidInput("name", "a system notification is named by its type")
        return {"data": wiring.notification_service().set_system_enabled(body.policy.type, body.is_enabled)}
    if body.is_enabled is not None:
        raise InvalidInput("is_enabled", "applies to system notifications only; an offset notification is archived instead")
    if body.policy.offset is None:
        raise InvalidInput("policy.offset", "is required to edit an offset notification")
    config = wiring.notification_service().edit(body.id, body.policy.type, body.policy.offset, body.name)
    return {"data": notification_json(config)}


@router.post("/v2/notifications/archive")
def archive_notification() -> dict:
    body = NotificationRef.model_validate(read_body(router.current_event))
    return {"data": notification_json(wiring.notification_service().archive(body.id))}


@router.post("/v2/notifications/offset/list")
def list_offset_notifications() -> dict:
    body = NotificationList.model_validate(_optional_body())
    configs = wiring.notification_service().list(body.archive_filter)
    start = offset_cursor(body.cursor, "cursor")
    end = start + body.limit
    return {"data": [notification_json(c) for c in configs[start:end]], "cursor": str(end) if end < len(configs) else None}


@router.post("/v2/notifications/system/list")
def list_system_notifications() -> dict:
    SystemNotificationList.model_validate(_optional_body())
    return {"data": wiring.notification_service().system_configs(), "cursor": None}
