"""GET /v1/auditLogs and GET /v1/services: query parameters and answers (metronome-sdk's
AuditLogListParams / AuditLogListResponse and ServiceListResponse)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tally.api.models import Request
from tally.billing.limits import MAX_ID_LENGTH

# A cursor this API returns: a position (timestamp and id), the window and the resource, as base64.
MAX_AUDIT_CURSOR_LENGTH = 2_048


class AuditLogQuery(Request):
    next_page: str | None = Field(default=None, max_length=MAX_AUDIT_CURSOR_LENGTH)
    starting_on: str | None = Field(default=None, max_length=64)
    ending_before: str | None = Field(default=None, max_length=64)
    sort: Literal["date_asc", "date_desc"] | None = None
    limit: str | None = Field(default=None, max_length=12)
    resource_type: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    resource_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
