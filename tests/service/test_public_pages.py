"""The public-page mechanism of tally.api.app: only paths under /pages/ skip the API key, and only
with a token that verifies for the kind of page the path names; everything else stays
authenticated. A refused page is an HTML 403 that shows nothing of what the route would."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from moto import mock_aws

from infra.local.http_gateway import Route, build_event
from tally.adapters.secrets import PageSigningKeys
from tally.api.app import build_resolver, page_claims
from tally.billing.errors import Unauthorized
from tally.billing.page_tokens import DashboardScope, InvoiceScope, KeyRing, PageKind, SigningKey
from tally.services.page_links import PageLinks

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
KEY = SigningKey.from_secret("s" * 64)
SECRET_SHOWN = "customer-a-private-figure"


class Keys:
    """Accepts exactly one API key."""

    def verify(self, authorization: str | None) -> str:
        if authorization != "Bearer good":
            raise Unauthorized("missing or invalid API key")
        return "key-1"


router = Router()


@router.get("/pages/invoices/<token>")
def invoice_page(token: str) -> Response:
    claims = page_claims(router)
    return Response(200, "text/plain", f"{claims.customer_id} {claims.scope.invoice_id} {SECRET_SHOWN}")


@router.get("/pages/dashboards/<token>")
def dashboard_page(token: str) -> Response:
    claims = page_claims(router)
    return Response(200, "text/plain", f"{claims.customer_id} {claims.scope.dashboard}")


@router.get("/v1/private")
def private() -> dict:
    return {"data": SECRET_SHOWN}


@router.get("/pagesx/<token>")  # a look-alike prefix is not public
def look_alike(token: str) -> dict:
    return {"data": SECRET_SHOWN}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def site():
    clock = Clock()
    links = PageLinks(lambda: KeyRing(KEY), clock, lambda: "https://tally.example")
    app = build_resolver([router], lambda: Keys(), pages=lambda: links)

    def get(path: str, headers: dict | None = None, method: str = "GET"):
        route = Route("ANY", "/{proxy+}", "api")
        answer = app.resolve(build_event(route, {"proxy": path[1:]}, method, path, "", headers or {}, b""), SimpleNamespace())
        return answer["statusCode"], {k.lower(): v for k, v in (answer.get("headers") or {}).items()}, answer["body"]

    return SimpleNamespace(links=links, clock=clock, get=get)


def _path(url: str) -> str:
    return url.removeprefix("https://tally.example")


def test_a_minted_link_opens_its_page_without_an_api_key(site):
    link = site.links.mint(PageKind.INVOICE_PAGE, "cust-a", InvoiceScope("inv-1"))
    assert link.url.startswith("https://tally.example/pages/invoices/")
    assert link.expires_at == NOW + timedelta(days=30)
    status, _, body = site.get(_path(link.url))
    assert (status, body) == (200, f"cust-a inv-1 {SECRET_SHOWN}")


@pytest.mark.parametrize("case", ["expired", "forged", "truncated", "pdf token on the page", "dashboard token on the page",
                                  "no token", "another key"])
def test_a_refused_link_is_an_html_403_that_shows_nothing(site, case):
    link = site.links.mint(PageKind.INVOICE_PAGE, "cust-a", InvoiceScope("inv-1"), lifetime=timedelta(hours=1))
    path = _path(link.url)
    if case == "expired":
        site.clock.now = NOW + timedelta(hours=1)
    elif case == "forged":
        path = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    elif case == "truncated":
        path = path[:-10]
    elif case == "pdf token on the page":
        path = "/pages/invoices/" + site.links.mint(PageKind.INVOICE_PDF, "cust-a", InvoiceScope("inv-1")).token
    elif case == "dashboard token on the page":
        path = "/pages/invoices/" + site.links.mint(PageKind.DASHBOARD, "cust-a", DashboardScope("invoices")).token
    elif case == "no token":
        path = "/pages/invoices/x"
    elif case == "another key":
        other = PageLinks(lambda: KeyRing(SigningKey.from_secret("o" * 64)), site.clock, lambda: "")
        path = _path(other.mint(PageKind.INVOICE_PAGE, "cust-a", InvoiceScope("inv-1")).url)
    status, headers, body = site.get(path, {"authorization": "Bearer good"})  # an API key does not help
    assert status == 403
    assert headers["content-type"].startswith("text/html")
    assert "This link is invalid or has expired" in body
    assert SECRET_SHOWN not in body and "cust-a" not in body and "inv-1" not in body
    assert "default-src 'none'" in headers["content-security-policy"]


def test_a_dashboard_token_opens_only_dashboards(site):
    token = site.links.mint(PageKind.DASHBOARD, "cust-b", DashboardScope("usage")).token
    assert site.get(f"/pages/dashboards/{token}") == (200, {"content-type": "text/plain"}, "cust-b usage")
    assert site.get(f"/pages/invoices/{token}")[0] == 403


def test_everything_outside_the_prefix_still_needs_the_api_key(site):
    token = site.links.mint(PageKind.INVOICE_PAGE, "cust-a", InvoiceScope("inv-1")).token
    for path in ("/v1/private", f"/pagesx/{token}"):
        status, _, body = site.get(path)
        assert status == 401 and SECRET_SHOWN not in body
        assert site.get(path, {"authorization": "Bearer good"})[0] == 200


def test_unknown_pages_are_refused_like_bad_tokens_and_only_get_is_served(site):
    token = site.links.mint(PageKind.INVOICE_PAGE, "cust-a", InvoiceScope("inv-1")).token
    for path in (f"/pages/nothing-here/{token}", f"/pages/invoices/{token}/more", "/pages/"):
        status, headers, body = site.get(path)
        assert status == 403 and headers["content-type"].startswith("text/html") and token not in body
    status, headers, body = site.get(f"/pages/invoices/{token}", method="POST")
    assert status == 404 and headers["content-type"].startswith("text/html") and token not in body


def test_the_key_ring_is_read_from_secrets_manager_once_and_keeps_the_previous_version():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="page-key", SecretString="a" * 64)["ARN"]
        calls = []
        keys = PageSigningKeys(lambda: calls.append(1) or arn, client=client)
        first = keys()
        assert (first.current, first.previous) == (SigningKey.from_secret("a" * 64), None)
        assert keys() is first and len(calls) == 1  # cached
        client.put_secret_value(SecretId=arn, SecretString="b" * 64)  # rotated by an operator
        rotated = PageSigningKeys(lambda: arn, client=client)()
        assert (rotated.current, rotated.previous) == (SigningKey.from_secret("b" * 64), SigningKey.from_secret("a" * 64))
        assert "a" * 64 not in repr(rotated) and "b" * 64 not in json.dumps(repr(rotated))


def test_in_the_api_function_every_route_outside_pages_refuses_a_request_without_a_key():
    """Through the real handler: every served route but /pages/* answers 401 to a request whose
    bearer is a valid page token, not an API key (no key at all: tested above on a small app)."""
    import re as _re

    from tally.api.openapi import registered_routes
    from tests.service.api_gateway import deployed_api, send

    with deployed_api("tally_pages_auth_key"):
        token = PageLinks(lambda: KeyRing(KEY), Clock(), lambda: "").mint(PageKind.INVOICE_PAGE, "c", InvoiceScope("i")).token
        routes = sorted(registered_routes())
        assert len(routes) > 100 and not any(" /pages/" in r for r in routes)
        for route in routes:
            method, path = route.split(" ", 1)
            path = _re.sub(r"\{\w+\}", "x", path)
            for headers in ({"authorization": f"Bearer {token}"},):  # a page token is not an API key
                status, _, body = send(method, path, headers | {"content-type": "application/json"}, b"{}" if method != "GET" else b"")
                assert status == 401, (route, status, body[:200])
