"""Embeddable dashboards through the API function (tests/service/api_gateway.py, moto tables):
POST /v1/dashboards/getEmbeddableUrl refuses what the SDK's docstrings rule out, and each page,
served at /pages/dashboards/<token> with no API key, shows the API's own figures for the one
customer its token names, and nothing for anyone else."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally import wiring
from tally.billing.counters import StreamedEvent, sequence_key
from tally.billing.dashboards import DashboardView
from tally.billing.page_tokens import PageKind
from tests.service.api_gateway import deployed_api, request, send

API_KEY = "tally_dashboards_key"
NOW = datetime.now(timezone.utc)
MONTH = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def at(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def ok(method: str, path: str, body=None) -> dict:
    status, answer = request(method, path, API_KEY, body)
    assert status == 200, answer
    return answer


def url_for(customer_id: str, dashboard: str, **extra) -> str:
    return ok("POST", "/v1/dashboards/getEmbeddableUrl", {"customer_id": customer_id, "dashboard": dashboard, **extra})["data"]["url"]


def page(url: str) -> tuple[int, dict, str]:
    """GET a page with no API key at all."""
    path = url[url.index("/pages/"):]
    status, headers, body = send("GET", path, {})
    return status, {k.lower(): v for k, v in headers.items()}, body.decode()


def expired_link(customer_id: str) -> str:
    """A usage dashboard link of the deployment's own key, minted two hours ago for one hour."""
    from tally.adapters.secrets import PageSigningKeys
    from tally.services.page_links import PageLinks
    from tally.settings import get_settings

    keys = PageSigningKeys(lambda: get_settings().require("page_signing_secret_arn"))
    then = datetime.now(timezone.utc) - timedelta(hours=2)
    minted = PageLinks(keys, lambda: then, lambda: get_settings().api_url)
    return minted.mint(PageKind.DASHBOARD, customer_id, DashboardView(customer_id, "usage").scope(), timedelta(hours=1)).url


def values(html: str, table_attr: str) -> list[Decimal | None]:
    """The data-value cells of the body of the table carrying `table_attr`, as exact numbers."""
    table = re.search(rf"<table {table_attr}.*?</table>", html, re.S)
    assert table is not None, f"no table {table_attr}"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(0), re.S).group(1)
    return [Decimal(v) if v else None for v in re.findall(r'data-value="([^"]*)"', body)]


def exact(value) -> Decimal | None:
    """A JSON number as request() parsed it (a float for a fraction), exactly as written."""
    return None if value is None else Decimal(str(value))


@pytest.fixture(scope="module")
def world():
    """Customers A and B on one rate card (calls at 25 cents), each with a $100 credit; A made 3
    calls today in eu and 1 in us, B 5 calls."""
    with deployed_api(API_KEY):
        metric = ok("POST", "/v1/billable-metrics/create", {
            "name": "calls", "aggregation_type": "COUNT", "event_type_filter": {"in_values": ["call"]},
            "group_keys": [["region"]]})["data"]["id"]
        ok("POST", "/v1/billable-metrics/create", {  # "zone" only ever groups together with "rack"
            "name": "disk", "aggregation_type": "COUNT", "group_keys": [["zone", "rack"]]})
        product = ok("POST", "/v1/contract-pricing/products/create",
                     {"name": "Calls", "type": "USAGE", "billable_metric_id": metric})["data"]["id"]
        credit_product = ok("POST", "/v1/contract-pricing/products/create", {"name": "Promotion", "type": "FIXED"})["data"]["id"]
        card = ok("POST", "/v1/contract-pricing/rate-cards/create", {"name": "Standard"})["data"]["id"]
        ok("POST", "/v1/contract-pricing/rate-cards/addRate", {
            "rate_card_id": card, "product_id": product, "entitled": True, "rate_type": "FLAT", "price": 25,
            "starting_at": at(MONTH)})
        customers, contracts = {}, {}
        for name, alias in (("Acme A", "a-alias"), ("Bravo B", "b-alias")):
            customers[name] = cid = ok("POST", "/v1/customers", {"name": name, "ingest_aliases": [alias]})["data"]["id"]
            contracts[name] = ok("POST", "/v1/contracts/create",
                                 {"customer_id": cid, "rate_card_id": card, "starting_at": at(MONTH)})["data"]["id"]
            ok("POST", "/v1/contracts/customerCredits/create", {
                "customer_id": cid, "product_id": credit_product, "priority": 1, "name": f"Welcome {name}",
                "access_schedule": {"schedule_items": [{"amount": 10000, "starting_at": at(MONTH),
                                                        "ending_before": at(MONTH + timedelta(days=92))}]}})
        # Today's, even in the first minutes after midnight (the page's last window is today's).
        stamp = at(max(NOW - timedelta(minutes=5), NOW.replace(hour=0, minute=0, second=0, microsecond=0)))
        events = [{"transaction_id": f"a-{n}", "customer_id": "a-alias", "event_type": "call", "timestamp": stamp,
                   "properties": {"region": "eu" if n < 3 else "us"}} for n in range(4)]
        events += [{"transaction_id": f"b-{n}", "customer_id": "b-alias", "event_type": "call", "timestamp": stamp,
                    "properties": {"region": "eu"}} for n in range(5)]
        status, _ = request("POST", "/v1/ingest", API_KEY, events)
        assert status == 200
        # The stream's delivery, in-process: every stored event to the aggregator once.
        streamed = [StreamedEvent(sequence_key(10**20 + n), s.event, s.ingested_at)
                    for n, s in enumerate(wiring.event_store().scan_ingested_before(datetime.now(timezone.utc) + timedelta(hours=1)))]
        wiring.aggregate_service().apply_batch("shard-1", streamed)
        yield {"metric": metric, "customers": customers, "contracts": contracts, "card": card, "fixed": credit_product}


@pytest.mark.parametrize("body, status, field", [
    ({"dashboard": "usage"}, 400, "customer_id"),
    ({"customer_id": "A", "dashboard": "billing"}, 400, "dashboard"),
    ({"customer_id": "A", "dashboard": "invoices", "dashboard_options": [{"key": "invoice_type", "value": "ALL"}]},
     400, "dashboard_options[0].value"),
    ({"customer_id": "A", "dashboard": "invoices", "dashboard_options": [{"key": "theme", "value": "dark"}]},
     400, "dashboard_options[0].key"),
    ({"customer_id": "A", "dashboard": "invoices", "dashboard_options": [{"key": "contract_id", "value": "B's contract"}]},
     400, "dashboard_options[0].value"),
    ({"customer_id": "A", "dashboard": "credits", "dashboard_options": [{"key": "credit_ledger_credit_type_id", "value": "nope"}]},
     400, "dashboard_options[0].value"),
    ({"customer_id": "A", "dashboard": "usage", "color_overrides": [{"name": "Action", "value": "#eeeeee"}]},
     400, "color_overrides[0].value"),
    ({"customer_id": "A", "dashboard": "usage", "color_overrides": [{"name": "Action", "value": "#12345"}]},
     400, "color_overrides[0].value"),
    ({"customer_id": "A", "dashboard": "usage", "bm_group_key_overrides": [{"group_key_name": "planet"}]},
     400, "bm_group_key_overrides[0].group_key_name"),
    ({"customer_id": "A", "dashboard": "usage", "bm_group_key_overrides": [{"group_key_name": "zone"}]},
     400, "bm_group_key_overrides[0].group_key_name"),
    ({"customer_id": "no-such-customer", "dashboard": "usage"}, 404, None),
], ids=["no customer", "unknown dashboard", "invoice_type ALL", "unknown option", "another customer's contract",
        "unknown credit type", "light gray link", "five-digit hex", "group key no metric has",
        "part of a compound group key", "unknown customer"])
def test_refusals_name_the_field(world, body, status, field):
    body = {k: (world["customers"]["Acme A"] if v == "A" else v) for k, v in body.items()}
    for option in body.get("dashboard_options", ()):
        if option["value"] == "B's contract":
            option["value"] = world["contracts"]["Bravo B"]
    answered, error = request("POST", "/v1/dashboards/getEmbeddableUrl", API_KEY, body)
    assert answered == status, error
    assert error.get("field") == field


def test_minting_needs_the_api_key_and_a_page_needs_none(world):
    body = b'{"customer_id": "x", "dashboard": "usage"}'
    assert send("POST", "/v1/dashboards/getEmbeddableUrl", {"content-type": "application/json"}, body)[0] == 401
    status, headers, html = page(url_for(world["customers"]["Acme A"], "usage"))
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"] and "<script" not in html


def test_the_usage_page_shows_the_daily_windows_of_v1_usage_and_the_group_names_given(world):
    a = world["customers"]["Acme A"]
    url = url_for(a, "usage", bm_group_key_overrides=[
        {"group_key_name": "region", "display_name": "Region", "value_display_names": {"eu": "Europe"}}])
    status, _, html = page(url)
    assert status == 200
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    windows = ok("POST", "/v1/usage", {"customer_ids": [a], "billable_metrics": [{"id": world["metric"]}],
                                       "starting_on": at(MONTH), "ending_before": at(today + timedelta(days=1)),
                                       "window_size": "DAY"})["data"]
    assert values(html, f'data-metric-id="{world["metric"]}"') == [exact(w["value"]) for w in windows]
    assert windows[-1]["value"] == 4  # A's own 4 calls, none of B's 5
    assert "<svg" in html and 'role="img"' in html
    groups = re.search(r'<table data-group-key="region">.*?</table>', html, re.S).group(0)
    assert "Europe" in groups and ">us<" in groups and values(html, 'data-group-key="region"') == [3, 1]


def test_the_invoices_page_lists_the_invoices_api_with_totals_and_signed_links(world):
    a = world["customers"]["Acme A"]
    invoices = ok("GET", f"/v1/customers/{a}/invoices?sort=date_desc")["data"]
    status, _, html = page(url_for(a, "invoices"))
    assert status == 200
    rows = re.findall(r'<tr data-invoice-id="([^"]+)">.*?<td class="num total" data-value="([^"]*)">', html, re.S)
    assert [(r[0], Decimal(r[1])) for r in rows] == [(i["id"], Decimal(str(i["total"]))) for i in invoices]
    assert invoices[0]["subtotal"] == 4 * 25 and invoices[0]["total"] == 0  # the credit pays it
    # each row's links open that invoice's hosted page and PDF, with no API key
    hosted = re.search(r'href="[^"]*(/pages/invoices/[^"]+)"', html).group(1)
    pdf = re.search(r'href="[^"]*(/pages/invoice-pdfs/[^"]+)"', html).group(1)
    status, _, invoice_page = page(hosted)
    assert status == 200 and invoices[0]["id"] in invoice_page and "Acme A" in invoice_page
    status, headers, body = send("GET", pdf, {})
    assert status == 200 and body.startswith(b"%PDF-")
    # A filter the SDK documents: no SCHEDULED invoice exists
    _, _, scheduled = page(url_for(a, "invoices", dashboard_options=[{"key": "invoice_type", "value": "SCHEDULED"}]))
    assert "No invoices to show." in scheduled


def test_the_credits_page_shows_each_balance_and_ledger_of_customer_balances_list(world):
    a = world["customers"]["Acme A"]
    grants = ok("POST", "/v1/contracts/customerBalances/list",
                {"customer_id": a, "include_balance": True, "include_ledgers": True, "include_contract_balances": True})["data"]
    status, _, html = page(url_for(a, "credits"))
    assert status == 200
    shown = values(html, 'class="balances"')
    assert shown == [v for g in grants for v in (sum(exact(s["amount"]) for s in g["access_schedule"]["schedule_items"]),
                                                   exact(g["balance"]))]
    assert Decimal(str(grants[0]["balance"])) == 10000 - 4 * 25  # 4 calls at 25 cents drawn from the credit
    assert values(html, 'class="ledger"') == [exact(e["amount"]) for g in grants for e in g["ledger"]]
    assert "Welcome Acme A" in html
    hidden = page(url_for(a, "credits", dashboard_options=[{"key": "hide_grant_name", "value": "true"}]))[2]
    assert "Welcome Acme A" not in hidden and "Promotion" in hidden


def test_a_token_for_a_never_shows_b_whatever_else_the_url_changes(world):
    a, b = world["customers"]["Acme A"], world["customers"]["Bravo B"]
    secrets = [b, "Bravo B", world["contracts"]["Bravo B"], "Welcome Bravo B"]
    url_a, url_b = url_for(a, "credits"), url_for(b, "credits")
    token_a, token_b = url_a.rsplit("/", 1)[1], url_b.rsplit("/", 1)[1]
    key_a, claims_a, sig_a = token_a.split(".")
    _, claims_b, sig_b = token_b.split(".")
    tries = [
        (url_a + f"?customer_id={b}", 200),  # a query the page ignores: still A's page
        (f"/pages/dashboards/{key_a}.{claims_b}.{sig_a}", 403),  # B's claims under A's signature
        (f"/pages/dashboards/{key_a}.{claims_a}.{sig_b}", 403),
        (f"/pages/dashboards/{token_a[:-1]}{'A' if token_a[-1] != 'A' else 'B'}", 403),
        (f"/pages/invoices/{token_a}", 403),  # a dashboard token for another kind of page
        (f"/pages/dashboards/{token_a}/{b}", 403),
        (f"/v1/customers/{b}/invoices?token={token_a}", 401),  # a token is no API key
    ]
    for url, expected in tries:
        status, _, body = send("GET", url[url.index("/pages/"):] if url.startswith("http") else url, {})
        text = body.decode()
        assert status == expected and all(s not in text for s in secrets), (url, status)
        assert status != 200 or "Acme A" in text


def test_an_expired_or_forged_token_gets_the_403_page(world):
    a = world["customers"]["Acme A"]
    expired = expired_link(a)
    status, headers, html = page(expired)
    assert status == 403 and headers["content-type"].startswith("text/html") and "expired" in html
    assert send("GET", "/pages/dashboards/not.a.token", {})[0] == 403


def test_the_view_colors_are_the_pages_css_and_a_customers_name_is_only_ever_text(world):
    hostile = ok("POST", "/v1/customers", {"name": "<img src=x onerror=alert(1)>"})["data"]["id"]
    _, headers, html = page(url_for(hostile, "usage", color_overrides=[{"name": "Action", "value": "#0B3D91"},
                                                                      {"name": "UsageLine_0", "value": "#0f766e"}]))
    assert "--link:#0b3d91;" in html and "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "No contract is in effect now" in html
    assert "frame-ancestors *" in headers["content-security-policy"]  # embeddable, and nothing else loosened


def test_commits_and_credits_lists_both_kinds_and_credits_the_credits_alone(world):
    b = world["customers"]["Bravo B"]
    ok("POST", "/v1/contracts/customerCommits/create", {
        "customer_id": b, "product_id": world["fixed"], "type": "PREPAID", "priority": 2, "name": "Prepaid B",
        "invoice_contract_id": world["contracts"]["Bravo B"],
        "access_schedule": {"schedule_items": [{"amount": 5000, "starting_at": at(MONTH),
                                                "ending_before": at(MONTH + timedelta(days=92))}]},
        "invoice_schedule": {"schedule_items": [{"timestamp": at(MONTH), "amount": 4000}]}})
    grants = ok("POST", "/v1/contracts/customerBalances/list", {"customer_id": b, "include_balance": True})["data"]
    both = page(url_for(b, "commits_and_credits"))[2]
    rows = re.findall(r'<tr data-grant-id="([^"]+)">', re.search(r'<table class="balances">.*?</table>', both, re.S).group(0))
    assert sorted(rows) == sorted(g["id"] for g in grants) and len(rows) == 2
    assert "Prepaid commit" in both and "Prepaid B" in both
    credits = page(url_for(b, "credits"))[2]
    assert "Prepaid B" not in credits and "Welcome Bravo B" in credits
    assert values(credits, 'class="balances"') == [10000, 10000 - 5 * 25]  # $0 credits burn before paid commits


def test_the_usage_page_charts_a_bounded_number_of_metrics_and_says_how_many_it_left_out(world, monkeypatch):
    import tally.services.dashboards

    monkeypatch.setattr(tally.services.dashboards, "MAX_DASHBOARD_METRICS", 0)
    html = page(url_for(world["customers"]["Acme A"], "usage"))[2]
    assert "<svg" not in html and "and 1 more metric on this contract&#x27;s rate card" in html

