"""Resolver construction shared by the ingest and API functions: auth, errors, exact JSON."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Callable

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from pydantic import ValidationError

from tally.api.errors import error_response, validation_error_response
from tally.billing import exact_json
from tally.billing.audit import AuditEntry, RequestNames, action_of, names_of_request, route_template
from tally.billing.errors import TallyError, Unauthorized
from tally.services.api_keys import ApiKeyService
from tally.services.audit_logs import AuditScope, audit_scope

logger = Logger(child=True)


def build_resolver(
    routers: list[Router], api_keys: Callable[[], ApiKeyService], audit_clock: Callable[[], datetime] | None = None
) -> APIGatewayHttpResolver:
    """`audit_clock`: the requests that may change something are audited, each write carrying the
    request's entry stamped at this clock's time (None: not audited, as ingest is)."""
    app = APIGatewayHttpResolver(serializer=exact_json.dumps)

    def authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        # Runs before any route body: an unauthenticated request processes nothing.
        event, route = app.current_event, app.context.get("_route")
        try:
            key_id = api_keys().verify(event.headers.get("authorization"))
        except Unauthorized as exc:
            return error_response(exc)
        app.append_context(api_key_id=key_id)  # who made a change (contract edit history); cleared per request
        # Reads change nothing; every other method may, and its writes then carry this entry. The
        # key id is this call's own: the resolver's context is shared by concurrent local requests.
        if audit_clock is None or event.http_method.upper() in ("GET", "HEAD", "OPTIONS"):
            return next_middleware(app)
        with audit_scope(_request_scope(event, route, key_id, audit_clock)):
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


def _request_scope(event, route, key_id: str, clock: Callable[[], datetime]) -> AuditScope:
    # The matched route, if it is this event's (locally, another thread's request may have replaced
    # it in the resolver's context); else the path itself stands for the template.
    match = route.rule.match(event.path) if route is not None and route.method == event.http_method.upper() else None
    template = route_template(route.path) if match is not None else event.path
    http = (event.raw_event.get("requestContext") or {}).get("http") or {}
    entry = AuditEntry(
        id=uuid.uuid4().hex,
        timestamp=clock(),
        actor_id=key_id,
        request_id=event.request_context.request_id or uuid.uuid4().hex,
        method=event.http_method.upper(),
        route=template,
        action=action_of(event.http_method, template),
        ip=http.get("sourceIp") or None,
        user_agent=http.get("userAgent") or None,
    )
    path_parameters = match.groupdict() if match is not None else {}

    @functools.cache  # the body is parsed once, at the request's first write
    def names() -> RequestNames:
        try:
            body = event.json_body if event.body else None
        except (ValueError, RecursionError):
            body = None
        return names_of_request(template, path_parameters, body)

    return AuditScope(entry, names)
