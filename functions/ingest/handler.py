"""POST /v1/ingest: authenticate, validate the whole batch, store new transaction ids once."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.runtime import freeze_when_warm
from tally.api.app import build_resolver
from tally.api.routes import ingest

logger = Logger(service="tally-ingest")
app = build_resolver([ingest.router], wiring.api_keys)


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
