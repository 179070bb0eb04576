"""The embeddable dashboards in headless Chromium, on the local stack: each page's figures in the
DOM equal the API's JSON, an expired and a forged link show the error page, and screenshots are
kept under .build/screenshots. The URLs come from the SDK in strict mode and from
`tally local dashboard`, as a user would get them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from tests.browser import chromium  # noqa: F401  (the fixture)
from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


def exact(response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def table_values(dom: str, table_attr: str) -> list[Decimal]:
    table = re.search(rf"<table {table_attr}.*?</table>", dom, re.S)
    assert table is not None, f"no table {table_attr} in the page"
    body = re.search(r"<tbody>(.*?)</tbody>", table.group(0), re.S).group(1)
    return [Decimal(v) for v in re.findall(r'data-value="([^"]+)"', body)]


def test_each_dashboard_in_a_browser_shows_the_apis_figures_and_a_bad_link_shows_the_error_page(
        sdk, api, settle, local_stack, chromium):
    tag = unique("dash")
    now = datetime.now(timezone.utc)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    metric = sdk.v1.billable_metrics.create(name=f"{tag} requests", aggregation_type="COUNT",
                                            event_type_filter={"in_values": [tag]}, group_keys=[["region"]]).data.id
    product = sdk.v1.contracts.products.create(name=f"{tag} Requests", type="USAGE", billable_metric_id=metric).data.id
    grant = sdk.v1.contracts.products.create(name=f"{tag} Promotion", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=product, entitled=True, rate_type="FLAT",
                                          price=25, starting_at=rfc3339(month))
    customer = sdk.v1.customers.create(name=f"{tag} Initech", ingest_aliases=[tag]).data.id
    sdk.v1.contracts.create(customer_id=customer, rate_card_id=card, starting_at=rfc3339(month))
    sdk.v1.customers.credits.create(
        customer_id=customer, product_id=grant, priority=1, name="Welcome credit",
        access_schedule={"schedule_items": [{"amount": 10000, "starting_at": rfc3339(month),
                                             "ending_before": rfc3339(month + 92 * DAY)}]})
    stamp = now - timedelta(minutes=1)
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, stamp, region="eu" if n < 30 else "us")
                               for n in range(40)])
    settle()

    # usage: the SDK mints the URL (strict mode parses its answer)
    usage_url = sdk.v1.dashboards.get_embeddable_url(
        customer_id=customer, dashboard="usage",
        color_overrides=[{"name": "UsageLine_0", "value": "#0f766e"}],
        bm_group_key_overrides=[{"group_key_name": "region", "display_name": "Region",
                                 "value_display_names": {"eu": "Europe", "us": "United States"}}],
    ).data.url
    dom = chromium.dom_and_screenshot(usage_url, "dashboard-usage")
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    windows = exact(api.post("/v1/usage", json={
        "customer_ids": [customer], "billable_metrics": [{"id": metric}], "starting_on": rfc3339(month),
        "ending_before": rfc3339(today + DAY), "window_size": "DAY"}))["data"]
    assert table_values(dom, f'data-metric-id="{metric}"') == [w["value"] for w in windows]
    assert windows[-1]["value"] == 40
    assert table_values(dom, 'data-group-key="region"') == [30, 10] and "United States" in dom
    assert "<svg" in dom and "<script" not in dom

    # credits: the URL `tally local dashboard` prints
    from infra.cli.local import local_app

    printed = CliRunner().invoke(local_app, ["dashboard", customer, "--dashboard", "credits",
                                             "--endpoint", local_stack.base_url, "--api-key", API_KEY])
    assert printed.exit_code == 0, printed.output
    credits_url = printed.output.strip()
    assert credits_url.startswith(f"{local_stack.base_url}/pages/dashboards/")
    dom = chromium.dom_and_screenshot(credits_url, "dashboard-credits")
    balances = exact(api.post("/v1/contracts/customerBalances/list", json={
        "customer_id": customer, "include_balance": True, "include_ledgers": True}))["data"]
    (credit,) = balances
    assert credit["balance"] == 10000 - 40 * 25
    assert table_values(dom, 'class="balances"') == [10000, credit["balance"]]
    assert table_values(dom, 'class="ledger"') == [e["amount"] for e in credit["ledger"]]

    # invoices
    invoices_url = sdk.v1.dashboards.get_embeddable_url(customer_id=customer, dashboard="invoices").data.url
    dom = chromium.dom_and_screenshot(invoices_url, "dashboard-invoices")
    invoices = exact(api.get(f"/v1/customers/{customer}/invoices", params={"sort": "date_desc"}))["data"]
    rows = re.findall(r'<tr data-invoice-id="([^"]+)">', dom)
    assert rows == [i["id"] for i in invoices] and len(rows) >= 1
    assert invoices[0]["total"] == 0 and invoices[0]["subtotal"] == 40 * 25  # the credit pays it all
    assert f'data-value="{invoices[0]["total"]}"' in dom and "$0.00" in dom
    assert re.search(r'href="http[^"]+/pages/invoices/[^"]+"', dom) and re.search(r'href="[^"]+/pages/invoice-pdfs/', dom)

    # an expired link, and a forged one (another signature), show the error page
    from tests.service.test_dashboards import expired_link

    expired_url = expired_link(customer)  # the stack's key: the local runtime's env names its secret
    assert expired_url.startswith(f"{local_stack.base_url}/pages/dashboards/")
    head, _, signature = usage_url.rpartition(".")
    forged_url = f"{head}.{'A' * len(signature)}"
    for url, dom in ((expired_url, chromium.dom_and_screenshot(expired_url, "dashboard-expired")),
                     (forged_url, chromium.dom(forged_url))):
        assert "This link is invalid or has expired" in dom and customer not in dom and "Initech" not in dom, url
