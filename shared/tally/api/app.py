"""Resolver construction shared by the ingest and API functions: auth, errors, exact JSON."""

from __future__ import annotations

from typing import Callable

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from pydantic import ValidationError

from tally.api.errors import error_response, validation_error_response
from tally.billing import exact_json
from tally.billing.errors import TallyError, Unauthorized
from tally.services.api_keys import ApiKeyService

logger = Logger(child=True)


def build_resolver(routers: list[Router], api_keys: Callable[[], ApiKeyService]) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(serializer=exact_json.dumps)

    def authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        # Runs before any route body: an unauthenticated request processes nothing.
        try:
            key_id = api_keys().verify(app.current_event.headers.get("authorization"))
        except Unauthorized as exc:
            return error_response(exc)
        app.append_context(api_key_id=key_id)  # who made a change (contract edit history); cleared per request
        return next_middleware(app)

    app.use(middlewares=[authenticate])
    for router in routers:
        app.include_router(router)

    @app.exception_handler(TallyError)
    def handle_domain_error(exc: TallyError) -> Response:
        if exc.status >= 500:
            logger.exception("request failed")
        return error_response(exc)

    @app.exception_handler(ValidationError)
    def handle_validation_error(exc: ValidationError) -> Response:
        return validation_error_response(exc)

    @app.not_found
    def handle_not_found(exc: Exception) -> Response:
        return error_response(None, 404, "not_found", f"no route for {app.current_event.http_method} {app.current_event.path}")

    @app.exception_handler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error")
        return error_response(None, 500, "internal_error", "internal error; the request may be retried")

    return app
