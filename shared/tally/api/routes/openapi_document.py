"""GET /openapi.json: the committed OpenAPI document (tally.api.openapi writes it).

Authenticated like every other route: the auth middleware runs before any route, and an exception
for one path would be the first hole in "an unauthenticated request processes nothing". The
document is no secret (it is in the repository), so a client without a key can read it there."""

from __future__ import annotations

from functools import lru_cache

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from tally.api.openapi import DOCUMENT_PATH

router = Router()


@lru_cache(maxsize=1)
def _document_text() -> str:
    return DOCUMENT_PATH.read_text(encoding="utf-8")


@router.get("/openapi.json")
def get_openapi_document() -> Response:
    # The file as committed: re-serializing would cost a parse of some hundreds of KB per request.
    return Response(status_code=200, content_type="application/json", body=_document_text())
