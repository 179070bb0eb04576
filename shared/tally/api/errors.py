"""One JSON error shape for every failure: {"message", "type", "field"?}."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ValidationError

from tally.billing.errors import InvalidInput, TallyError


class ErrorBody(BaseModel):
    """The body error_response writes, as the OpenAPI document (tally.api.openapi) declares it."""

    message: str
    type: str
    field: str | None = None  # set for invalid_request: the dotted path of the field at fault


def error_response(exc: TallyError | None, status: int = 500, kind: str = "internal_error", message: str = "") -> Response:
    body: dict[str, Any] = {"message": message, "type": kind}
    if exc is not None:
        status, body = exc.status, {"message": exc.message, "type": exc.kind}
        if isinstance(exc, InvalidInput):
            body["field"] = exc.field
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def field_path(loc: tuple[Any, ...], root: str = "") -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def validation_rule(error: dict) -> str:
    """Pydantic's rule for one error, with the value's size when a bound on size was broken."""
    if error["type"] in ("string_too_long", "too_long") and hasattr(error.get("input"), "__len__"):
        return f"{error['msg']}, got {len(error['input']):,}"
    return error["msg"]


def validation_error_response(exc: ValidationError, root: str = "") -> Response:
    first = exc.errors(include_url=False)[0]
    return error_response(InvalidInput(field_path(first["loc"], root), validation_rule(first)))
