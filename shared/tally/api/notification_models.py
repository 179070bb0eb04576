"""Request bodies of /v2/notifications/* (metronome-sdk types/v2/notifications/offset_*_params.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tally.api.models import Request
from tally.billing.limits import MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_NOTIFICATION_CONFIGS

# An ISO-8601 duration is short; the domain (billing/notifications.py) checks its form and bound.
_OFFSET = Field(min_length=1, max_length=64)
_TYPE = Field(min_length=1, max_length=64)


class OffsetPolicyIn(Request):
    type: str = _TYPE
    offset: str = _OFFSET


class EditPolicyIn(Request):
    type: str = _TYPE
    offset: str | None = Field(default=None, min_length=1, max_length=64)


class NotificationCreate(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    policy: OffsetPolicyIn
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)


class NotificationEdit(Request):
    policy: EditPolicyIn
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    is_enabled: bool | None = None
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)  # Tally: rename too


class NotificationRef(Request):
    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


class NotificationList(Request):
    archive_filter: Literal["ARCHIVED", "NOT_ARCHIVED", "ALL"] = "NOT_ARCHIVED"
    cursor: str | None = Field(default=None, max_length=12)
    limit: int = Field(default=MAX_NOTIFICATION_CONFIGS, ge=1, le=MAX_NOTIFICATION_CONFIGS)


class SystemNotificationList(Request):
    """POST /v2/notifications/system/list takes no parameters."""
