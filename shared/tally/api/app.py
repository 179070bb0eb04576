"""Resolver construction shared by the ingest and API functions: auth, errors, exact JSON.

Authentication: every route needs an API key (`Authorization: Bearer ...`), except the public
pages. A path under PUBLIC_PREFIX (`/pages/`) takes no API key; instead its last segment must be
a page token that verifies for the kind of page its path names (tally.services.page_links, which
also says how to mint such a URL). The check runs before the route, and a route under the prefix
reads what it may show from `page_claims(router)`; a refused token gets an HTML 403 page and the
route never runs. Nothing outside the prefix is ever public.
"""

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
from tally.billing.errors import InvalidInput, TallyError, Unauthorized
from tally.billing.limits import MAX_ID_LENGTH, size_problem
from tally.billing.page_tokens import PageClaims, PageTokenInvalid
from tally.rendering.html import Page, error_page
from tally.services.page_links import PUBLIC_PREFIX, PageLinks
from tally.services.api_keys import ApiKeyService
from tally.services.audit_logs import AuditScope, audit_scope

logger = Logger(child=True)


def build_resolver(
    routers: list[Router], api_keys: Callable[[], ApiKeyService], audit_clock: Callable[[], datetime] | None = None,
    pages: Callable[[], PageLinks] | None = None,
) -> APIGatewayHttpResolver:
    """`audit_clock`: the requests that may change something are audited, each write carrying the
    request's entry stamped at this clock's time (None: not audited, as ingest is).
    `pages`: verifies the tokens of public pages (None: this function serves none)."""
    app = APIGatewayHttpResolver(serializer=exact_json.dumps)

    def authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        # Runs before any route body: an unauthenticated request processes nothing.
        event, route = app.current_event, app.context.get("_route")
        if event.path.startswith(PUBLIC_PREFIX):
            return _open_page(app, next_middleware, route, pages)
        try:
            key_id = api_keys().verify(event.headers.get("authorization"))
        except Unauthorized as exc:
            return error_response(exc)
        app.append_context(api_key_id=key_id)  # who made a change (contract edit history); cleared per request
        too_long = _path_problem(app.context.get("_route_args") or {})
        if too_long is not None:
            return error_response(too_long)
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
        if app.current_event.path.startswith(PUBLIC_PREFIX):
            return page_error_response(exc.status)
        return error_response(exc)

    @app.exception_handler(ValidationError)
    def handle_validation_error(exc: ValidationError) -> Response:
        return validation_error_response(exc)

    @app.not_found
    def handle_not_found(exc: Exception) -> Response:
        if app.current_event.path.startswith(PUBLIC_PREFIX):
            return page_error_response(404)  # the path holds a token: never echoed
        return error_response(None, 404, "not_found", f"no route for {app.current_event.http_method} {app.current_event.path}")

    @app.exception_handler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error")
        if app.current_event.path.startswith(PUBLIC_PREFIX):
            return page_error_response(500)
        return error_response(None, 500, "internal_error", "internal error; the request may be retried")

    return app


def _path_problem(arguments: dict) -> InvalidInput | None:
    """A 400 naming the path id (`<…_id>`) longer than MAX_ID_LENGTH: no key holds one, and a
    read keyed by it would be refused by DynamoDB (its 2,048-byte partition key), not a 404."""
    for name, value in arguments.items():
        problem = size_problem(value, MAX_ID_LENGTH) if name.endswith("_id") and isinstance(value, str) else None
        if problem is not None:
            return InvalidInput(name, problem)
    return None


def _open_page(app: APIGatewayHttpResolver, next_middleware: NextMiddleware, route,
               pages: Callable[[], PageLinks] | None) -> Response:
    """A public page's request: served only if its path's token verifies for the page's kind."""
    event = app.current_event
    # A path with no route comes here too (Powertools routes it to the not-found handler): it is
    # refused unless its token verifies, so nothing under the prefix says what exists without one.
    if pages is None or route is None or event.http_method.upper() not in ("GET", "HEAD"):
        return html_response(error_page(404, "Page not found", "There is no page at this address."), 404)
    try:
        claims = pages().verify_path(event.path)
    except PageTokenInvalid as exc:
        logger.info("page link refused", extra={"reason": exc.reason, "route": route.path})
        return html_response(refused_page(), 403)
    app.append_context(page_claims=claims, api_key_id=None)  # no key: nothing here may write
    return next_middleware(app)


def refused_page() -> Page:
    return error_page(403, "This link is invalid or has expired",
                      "Ask whoever sent it for a new link. Links to invoices and dashboards expire.")


def page_error_response(status: int) -> Response:
    """A public page's failure as a page: what kind of failure, never its detail."""
    if status == 403:
        return html_response(refused_page(), 403)
    if status == 404:
        return html_response(error_page(404, "Page not found", "What this link showed no longer exists."), 404)
    if status < 500:
        return html_response(error_page(status, "This page cannot be shown", "The link is not one Tally made."), status)
    return html_response(error_page(status, "This page is unavailable right now", "Try again in a minute."), status)


def html_response(document: Page, status: int = 200) -> Response:
    return Response(status_code=status, content_type=document.content_type, body=document.html,
                    headers=document.headers)


def page_claims(router: Router) -> PageClaims:
    """What the current public page request may show: the claims its token was verified for."""
    claims = router.context.get("page_claims")
    if not isinstance(claims, PageClaims):  # a /pages route reached without the check: show nothing
        raise PageTokenInvalid("no verified page token in this request")
    return claims


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
