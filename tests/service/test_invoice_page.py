"""The hosted invoice page through the API function: a link minted with the API key opens the page
without one; its figures are the JSON invoice's; it is served under a strict CSP; everything else
(another customer, another invoice, the PDF's token, a forged or expired token) is an HTML 403
that shows no data. And the page's HTML for sample invoices, escaped and accessible."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from tally.billing import exact_json
from tally.billing.invoice_document import invoice_document
from tally.rendering.invoice_html import render_invoice_html
from tests.invoice_samples import as_answered, custom_pricing_unit, many_lines, tiered_with_commits_and_credits
from tests.service.api_gateway import deployed_api, send

KEY = "tally_invoice_page_key"
EVIL_NAME = '<script>alert("owned")</script> Müller & Søn'


class Figures(HTMLParser):
    """The text of every element with a data-figure attribute, in document order, by figure name;
    and every tag and attribute seen."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self.tags: list[tuple[str, dict]] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("meta", "br", "link", "img", "input", "col", "hr"):
            return
        self._open.append(attributes.get("data-figure"))
        if attributes.get("data-figure"):
            self.figures.setdefault(attributes["data-figure"], []).append("")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for name in reversed(self._open):
            if name:
                self.figures[name][-1] += data
                break


def figures_of(page: str) -> Figures:
    parser = Figures()
    parser.feed(page)
    return parser


def cents(text: str) -> Decimal:
    """'$1,234.56' or '-$0.0025' as cents, read independently of the page's formatter."""
    match = re.fullmatch(r"(-?)\$([\d,]+(?:\.\d+)?)", text.strip())
    assert match, f"not a dollar figure: {text!r}"
    return Decimal(match.group(2).replace(",", "")).scaleb(2) * (-1 if match.group(1) else 1)


def amount(text: str, credit_type: dict) -> Decimal:
    """A figure in its credit type's units: cents for USD, else '1,500 CPU credits' -> 1500."""
    if credit_type["name"] == "USD (cents)":
        return cents(text)
    number, _, name = text.strip().partition(" ")
    assert name == credit_type["name"], f"{text!r} is not in {credit_type['name']}"
    return Decimal(number.replace(",", ""))


def assert_figures_equal_the_json(page: str, invoice: dict) -> None:
    """Every line's quantity and total, every commit, credit and conversion, and the subtotal and
    total on the page equal the JSON invoice's."""
    shown = figures_of(page).figures
    assert cents(shown["total"][0]) == Decimal(invoice["total"])
    assert cents(shown["subtotal"][0]) == Decimal(invoice["subtotal"])
    priced = [l for l in invoice["line_items"] if l["type"] not in ("applied_commit_or_credit", "cpu_conversion")]
    applied = [l for l in invoice["line_items"] if l["type"] == "applied_commit_or_credit"]
    converted = [l for l in invoice["line_items"] if l["type"] == "cpu_conversion"]
    # Line for line: the page groups lines by product, so its rows are put back in the JSON's order.
    assert len(shown.get("line-total", [])) == len(priced)
    ordered = _ordered(shown.get("line-total", []), priced)
    assert [amount(t, l["credit_type"]) for t, l in zip(ordered, priced)] == [Decimal(l["total"]) for l in priced]
    assert sorted(cents(t) for t in shown.get("applied-total", [])) == sorted(Decimal(l["total"]) for l in applied)
    assert sorted(cents(t) for t in shown.get("conversion-total", [])) == sorted(Decimal(l["total"]) for l in converted)
    quantities = sorted(Decimal(q.replace(",", "")) for q in shown.get("quantity", []) if q)
    assert quantities == sorted(Decimal(l["quantity"]) for l in priced if l.get("quantity") is not None)
    assert shown["invoice-id"] == [invoice["id"]] and shown["status"][0] == invoice["status"]


def _ordered(texts: list[str], lines: list[dict]) -> list[str]:
    """The page's line totals in the JSON's line order: the page groups lines by product (keeping
    their order within a product), in the order products first appear."""
    order: dict[tuple, list[int]] = {}
    for index, line in enumerate(lines):
        order.setdefault((line.get("product_id"), line["name"], line["credit_type"]["id"]), []).append(index)
    positions = [index for group in order.values() for index in group]
    by_json = [""] * len(lines)
    for text, index in zip(texts, positions):
        by_json[index] = text
    return by_json


# ---- the page's HTML ------------------------------------------------------------------------------

@pytest.mark.parametrize("invoice", [
    pytest.param(as_answered(tiered_with_commits_and_credits()), id="tiered lines, a prepaid commit and a credit"),
    pytest.param(as_answered(custom_pricing_unit()), id="a custom pricing unit and its conversion"),
    pytest.param(as_answered(many_lines()), id="5,000 lines of 50 products"),
])
def test_the_pages_figures_are_the_json_invoices(invoice):
    page = render_invoice_html(invoice_document(invoice, customer_name="Acme"), "https://t/pages/invoice-pdfs/x").html
    assert_figures_equal_the_json(page, invoice)


def test_a_wrong_figure_is_caught():
    invoice = as_answered(custom_pricing_unit())
    page = render_invoice_html(invoice_document(invoice, customer_name="Acme"), None).html
    lines = [dict(line) for line in invoice["line_items"]]
    lines[1]["total"] += 1  # a GPU line in CPU credits
    for tampered in (invoice | {"total": invoice["total"] + 1}, invoice | {"line_items": lines}):
        with pytest.raises(AssertionError):
            assert_figures_equal_the_json(page, tampered)


def test_tiers_are_rows_under_their_line_and_every_table_is_labelled():
    invoice = as_answered(tiered_with_commits_and_credits())
    page = render_invoice_html(invoice_document(invoice, customer_name="Acme"), None).html
    parsed = figures_of(page)
    assert parsed.figures["tier-total"] == ["$5.00", "$22.50", "$2.93125", "$2.00"]
    assert page.count("<table") == page.count("<caption>") >= 4
    header_cells = [attrs for tag, attrs in parsed.tags if tag == "th"]
    assert header_cells and all(attrs.get("scope") in ("col", "row") for attrs in header_cells)
    assert "pdf-link" not in parsed.figures  # no PDF link given, none shown


def test_a_customer_name_with_markup_renders_as_text():
    invoice = as_answered(custom_pricing_unit())
    page = render_invoice_html(invoice_document(invoice, customer_name=EVIL_NAME, address_lines=("<b>1 Main</b>",)), None).html
    assert "<script" not in page and "<b>1" not in page
    assert figures_of(page).figures["customer-name"] == [EVIL_NAME]
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; Müller &amp; Søn" in page


# ---- through the API function ---------------------------------------------------------------------

def call(method: str, path: str, body: dict | None = None, key: str | None = KEY) -> tuple[int, dict]:
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {key}"} if key else {})
    status, _, data = send(method, path, headers, b"" if body is None else json.dumps(body).encode())
    return status, exact_json.loads(data)


def open_page(url: str) -> tuple[int, dict, str]:
    status, headers, data = send("GET", re.sub(r"^https?://[^/]*", "", url), {})
    return status, {k.lower(): v for k, v in headers.items()}, data.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def world():
    """A customer whose name holds markup, on a weekly subscription contract: its draft invoice; and another customer's."""
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    at = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    with deployed_api(KEY):
        seats = call("POST", "/v1/contract-pricing/products/create", {"name": "Seats", "type": "SUBSCRIPTION"})[1]["data"]["id"]
        card = call("POST", "/v1/contract-pricing/rate-cards/create", {"name": "Page card"})[1]["data"]["id"]
        added = call("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": card, "rates": [
            {"product_id": seats, "entitled": True, "rate_type": "FLAT", "price": 2500, "billing_frequency": "WEEKLY",
             "starting_at": at(start - timedelta(days=1))}]})
        assert added[0] == 200, added
        customers = []
        for name in (EVIL_NAME, "Other Co"):
            customer = call("POST", "/v1/customers", {"name": name, "custom_fields": {"address_line_1": "1 <Main> St"}})[1]["data"]["id"]
            created = call("POST", "/v1/contracts/create", {
                "customer_id": customer, "rate_card_id": card, "starting_at": at(start),
                "usage_statement_schedule": {"frequency": "WEEKLY", "day": "CONTRACT_START"},
                "subscriptions": [{"collection_schedule": "ARREARS", "initial_quantity": 3, "starting_at": at(start),
                                   "proration": {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": False},
                                   "subscription_rate": {"billing_frequency": "WEEKLY", "product_id": seats}}]})
            assert created[0] == 200, created
            invoice = call("GET", f"/v1/customers/{customer}/invoices")[1]["data"][0]
            customers.append((customer, invoice))
        yield customers


def mint(customer: str, invoice_id: str, **extra) -> tuple[int, dict]:
    return call("POST", "/v1/invoices/getHostedUrl", {"customer_id": customer, "invoice_id": invoice_id, **extra})


def test_a_minted_link_opens_the_invoice_without_an_api_key_with_the_json_figures(world):
    (customer, invoice), _ = world
    status, body = mint(customer, invoice["id"])
    assert status == 200, body
    assert re.fullmatch(r"http://[^/]+/pages/invoices/[\w.-]+", body["data"]["url"]) or body["data"]["url"].startswith("/pages/invoices/")
    assert "/pages/invoice-pdfs/" in body["data"]["pdf_url"]
    status, headers, page = open_page(body["data"]["url"])
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert_figures_equal_the_json(page, call("GET", f"/v1/customers/{customer}/invoices/{invoice['id']}")[1]["data"])
    assert figures_of(page).figures["customer-name"] == [EVIL_NAME] and "<script" not in page
    csp = headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-") and "unsafe-inline" not in csp
    assert (headers["x-content-type-options"], headers["referrer-policy"]) == ("nosniff", "no-referrer")
    assert headers["cache-control"].startswith("private")
    assert '<html lang="en">' in page


def test_the_pages_pdf_link_serves_the_pdf_and_only_the_pdf(world):
    (customer, invoice), _ = world
    page_url = mint(customer, invoice["id"])[1]["data"]["url"]
    pdf_url = figures_of(open_page(page_url)[2]).tags
    (link,) = [attrs["href"] for tag, attrs in pdf_url if attrs.get("data-figure") == "pdf-link"]
    status, headers, data = send("GET", re.sub(r"^https?://[^/]*", "", link), {})
    assert status == 200 and headers["Content-Type"] == "application/pdf" and data[:5] == b"%PDF-"
    assert open_page(link.replace("/pages/invoice-pdfs/", "/pages/invoices/"))[0] == 403  # a PDF token opens no page


def _refused(url_or_path: str) -> None:
    status, headers, page = open_page(url_or_path)
    assert status == 403 and headers["content-type"].startswith("text/html"), page[:200]
    assert "This link is invalid or has expired" in page
    assert "Müller" not in page and "$" not in page and "invoice-id" not in page


def test_forged_expired_and_rescoped_tokens_are_html_403s_without_data(world):
    from tally import wiring
    from tally.billing import page_tokens as pt

    (customer, invoice), (other, other_invoice) = world
    url = mint(customer, invoice["id"])[1]["data"]["url"]
    _refused(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))  # forged signature
    _refused(url[:-20])  # truncated
    keys = wiring.page_links()._keys()
    long_ago = datetime.now(timezone.utc) - timedelta(days=2)
    _refused("/pages/invoices/" + pt.mint(keys, pt.PageKind.INVOICE_PAGE, customer, pt.InvoiceScope(invoice["id"]), long_ago, timedelta(days=1)))
    # the claims of one token with another's signature: a re-scoped token
    _, claims, signature = url.rsplit("/", 1)[1].split(".")
    kid, other_claims, _ = mint(other, other_invoice["id"])[1]["data"]["url"].rsplit("/", 1)[1].split(".")
    _refused(f"/pages/invoices/{kid}.{other_claims}.{signature}")
    _refused(f"/pages/invoices/{kid}.{claims}.{signature}x")


def test_minting_needs_the_api_key_an_existing_invoice_of_that_customer_and_a_bounded_lifetime(world):
    (customer, invoice), (other, _) = world
    assert call("POST", "/v1/invoices/getHostedUrl", {"customer_id": customer, "invoice_id": invoice["id"]}, key=None)[0] == 401
    assert mint(other, invoice["id"])[0] == 404  # another customer's invoice
    assert mint(customer, "no-such-invoice")[0] == 404
    status, body = mint(customer, invoice["id"], expires_in_seconds=91 * 86_400)
    assert status == 400 and body["field"] == "expires_in_seconds"
    status, body = mint(customer, invoice["id"], expires_in_seconds=3600)
    assert status == 200
    expires = datetime.fromisoformat(body["data"]["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < expires - datetime.now(timezone.utc) <= timedelta(hours=1)
    assert mint(customer, invoice["id"], surprise=1)[1]["field"] == "surprise"
