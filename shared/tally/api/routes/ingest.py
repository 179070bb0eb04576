from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from tally import wiring
from tally.api.models import read_body

router = Router()


@router.post("/v1/ingest")
def ingest() -> dict:
    result = wiring.ingest_service().ingest(read_body(router.current_event))
    return {"accepted": result.accepted, "duplicates": result.duplicates}
