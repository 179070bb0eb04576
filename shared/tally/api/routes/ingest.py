from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import read_sized_body

router = Router()


@router.post("/v1/ingest")
def ingest() -> dict:
    body, size = read_sized_body(router.current_event)
    result = wiring.ingest_service().ingest(body, body_bytes=size)
    return {"accepted": result.accepted, "duplicates": result.duplicates}
