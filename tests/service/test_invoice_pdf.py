"""Invoice PDFs: every figure of the JSON invoice read back from the PDF's text (poppler's
pdftotext), for a tiered contract with commits and credits, a custom pricing unit and a 5,000-line
invoice; and GET .../invoices/{id}/pdf through the API function for drafts, finalized, voided and
regenerated invoices, with 404s for what the caller may not see."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from tally.billing import exact_json
from tally.billing.invoice_document import invoice_document
from tally.rendering.invoice_pdf import needs_cjk_font, render_invoice_pdf
from tests.invoice_samples import (
    as_answered,
    custom_pricing_unit,
    expected_rows,
    many_lines,
    pdf_text,
    tiered_with_commits_and_credits,
    unmatched_rows,
)
from tests.service.api_gateway import deployed_api, send

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) is not installed")

KEY = "tally_invoice_pdf_key"
CJK_NAME = "株式会社テスト商事"
KOREAN_NAME = "김민준 상사"


def _read_back(invoice: dict, **names) -> str:
    document = invoice_document(invoice, customer_name=names.pop("customer_name", "Acme GmbH"), **names)
    return pdf_text(render_invoice_pdf(document))


@pytest.mark.parametrize(
    "invoice",
    [
        pytest.param(as_answered(tiered_with_commits_and_credits()), id="a tiered contract with a prepaid commit and a credit applied"),
        pytest.param(as_answered(custom_pricing_unit()), id="lines in a custom pricing unit and their conversion line"),
    ],
)
def test_every_figure_of_the_json_invoice_is_on_the_pdf(invoice):
    text = _read_back(invoice, issuer_name="Tally Billing Ltd", address_lines=("1 Main Street", "10115 Berlin"))
    assert unmatched_rows(text, invoice) == []
    assert len(expected_rows(invoice)) >= 7
    for shown in ("Tally Billing Ltd", "Acme GmbH", "1 Main Street", "10115 Berlin", invoice["id"], "1 Nov 2026 – 30 Nov 2026",
                  "1 Dec 2026", "Page 1 of 1"):
        assert shown in text


def test_a_wrong_figure_is_caught():
    invoice = as_answered(custom_pricing_unit())
    text = _read_back(invoice)
    tampered = invoice | {"total": invoice["total"] + 1}
    assert unmatched_rows(text, tampered) == [("Total", "$333.81")]


def test_a_5000_line_invoice_renders_on_numbered_pages_with_every_figure():
    invoice = as_answered(many_lines())
    text = _read_back(invoice)
    pages = text.split("\f")[:-1]
    assert len(pages) > 50 and f"Page {len(pages)} of {len(pages)}" in pages[-1]
    assert all("Quantity" in page and "Unit price" in page and "Amount" in page for page in pages)  # the header repeats
    assert unmatched_rows(text, invoice) == []


def test_chinese_japanese_korean_greek_and_cyrillic_names_print():
    invoice = as_answered(custom_pricing_unit())
    text = _read_back(invoice, customer_name=f"{CJK_NAME} {KOREAN_NAME}", address_lines=("Ωμέγα Привет Ltd", "서울특별시 중구 세종대로 110"))
    for name in (CJK_NAME, KOREAN_NAME, "Ωμέγα Привет Ltd", "서울특별시 중구 세종대로 110"):
        assert name in text


def test_the_cjk_font_is_loaded_only_for_text_that_needs_it():
    invoice = as_answered(custom_pricing_unit())
    assert not needs_cjk_font(invoice_document(invoice, customer_name="Zoë Ørsted-Łukasiewicz"))
    assert needs_cjk_font(invoice_document(invoice, customer_name=KOREAN_NAME))


# ---- through the API function ------------------------------------------------------------------

def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A JSON request; the answer parsed with its numbers exact, as the PDF's figures are."""
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    status, _, data = send(method, path, headers, b"" if body is None else json.dumps(body).encode())
    return status, exact_json.loads(data)


def get_pdf(customer: str, invoice_id: str) -> tuple[int, dict, bytes]:
    return send("GET", f"/v1/customers/{customer}/invoices/{invoice_id}/pdf", {"authorization": f"Bearer {KEY}"})


@pytest.fixture(scope="module")
def world():
    """A customer with an address in custom fields, on a weekly contract that began
    nine days ago (its first week is due to close), with a subscription, and a second customer."""
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=9)
    at = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    with deployed_api(KEY):
        seats = call("POST", "/v1/contract-pricing/products/create", {"name": "Seats", "type": "SUBSCRIPTION"})[1]["data"]["id"]
        card = call("POST", "/v1/contract-pricing/rate-cards/create", {"name": "PDF card"})[1]["data"]["id"]
        added = call("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": card, "rates": [
            {"product_id": seats, "entitled": True, "rate_type": "FLAT", "price": 2500, "billing_frequency": "WEEKLY",
             "starting_at": at(start - timedelta(days=1))},
        ]})
        assert added[0] == 200, added
        status, body = call("POST", "/v1/customers", {"name": "Müller & Søn GmbH", "custom_fields": {
            "address_line_1": "Große Straße 1", "address_line_3": "10115 Berlin"}})
        assert status == 200, body
        customer = body["data"]["id"]
        contract = call("POST", "/v1/contracts/create", {
            "customer_id": customer, "rate_card_id": card, "starting_at": at(start),
            "usage_statement_schedule": {"frequency": "WEEKLY", "day": "CONTRACT_START"},
            "subscriptions": [{"collection_schedule": "ARREARS", "initial_quantity": 3, "starting_at": at(start),
                               "proration": {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": False},
                               "subscription_rate": {"billing_frequency": "WEEKLY", "product_id": seats}}],
        })
        assert contract[0] == 200, contract
        other = call("POST", "/v1/customers", {"name": "Other Co"})[1]["data"]["id"]
        yield {"customer": customer, "contract": contract[1]["data"]["id"], "start": start, "other": other}


def _invoices(customer: str) -> list[dict]:
    status, body = call("GET", f"/v1/customers/{customer}/invoices")
    assert status == 200, body
    return body["data"]


def _pdf_of(customer: str, invoice: dict) -> str:
    status, headers, data = get_pdf(customer, invoice["id"])
    assert (status, headers["Content-Type"], data[:5]) == (200, "application/pdf", b"%PDF-"), data[:300]
    return pdf_text(data)


def test_a_draft_a_finalized_a_voided_and_a_regenerated_invoice_each_say_what_they_are(world):
    from tally import wiring

    customer = world["customer"]
    draft = _invoices(customer)[0]
    text = _pdf_of(customer, draft)
    assert draft["status"] == "DRAFT" and "DRAFT" in text and "Draft: its figures change" in text
    assert "Müller & Søn GmbH" in text and text.index("Große Straße 1") < text.index("10115 Berlin")  # line 2 is blank: skipped
    assert unmatched_rows(text, draft) == []

    closed = wiring.cycle_close_service().finalize(customer, world["contract"], world["start"], datetime.now(timezone.utc))
    finalized = call("GET", f"/v1/customers/{customer}/invoices/{closed['invoice_ids'][0]}")[1]["data"]
    text = _pdf_of(customer, finalized)
    assert finalized["status"] == "FINALIZED" and "FINALIZED" in text and "Total due" in text
    assert unmatched_rows(text, finalized) == []
    assert any(line["type"] == "subscription" for line in finalized["line_items"])  # 3 seats × $25.00 are on it

    assert call("POST", "/v1/invoices/void", {"id": finalized["id"]})[0] == 200
    text = _pdf_of(customer, finalized)
    assert "VOID" in text and "Void: this invoice is cancelled" in text and "Total (void)" in text

    status, body = call("POST", "/v1/invoices/regenerate", {"id": finalized["id"]})
    assert status == 200, body
    regenerated = call("GET", f"/v1/customers/{customer}/invoices/{body['data']['id']}")[1]["data"]
    text = _pdf_of(customer, regenerated)
    assert f"Replaces voided invoice {finalized['id']}." in text
    assert unmatched_rows(text, regenerated) == []


def test_an_unknown_invoice_and_another_customers_invoice_are_not_found(world):
    invoice_id = _invoices(world["customer"])[0]["id"]
    for customer, invoice in ((world["other"], invoice_id), (world["customer"], "no-such-invoice"), ("no-such-customer", invoice_id)):
        status, headers, data = get_pdf(customer, invoice)
        assert (status, headers["Content-Type"]) == (404, "application/json"), data


def test_the_pdf_travels_base64_encoded_as_api_gateway_needs_for_binary(world):
    from functions.api.handler import handler
    from infra.local.http_gateway import build_event
    from tests.service.api_gateway import ROUTES, _context
    from infra.local.http_gateway import choose

    invoice_id = _invoices(world["customer"])[0]["id"]
    path = f"/v1/customers/{world['customer']}/invoices/{invoice_id}/pdf"
    route, params = choose(ROUTES, "GET", path)
    answer = handler(build_event(route, params, "GET", path, "", {"authorization": f"Bearer {KEY}"}, b""), _context("api"))
    assert answer["isBase64Encoded"] is True and base64.b64decode(answer["body"])[:5] == b"%PDF-"
    assert answer["headers"]["Content-Disposition"] == f'inline; filename="invoice-{invoice_id}.pdf"'


@pytest.mark.parametrize(
    "bound, value, rule",
    [
        pytest.param("MAX_INVOICE_PDF_LINES", 0, "line items; a document holds at most 0", id="too many line items for one PDF"),
        pytest.param("MAX_INVOICE_PDF_BYTES", 1_000, "bytes; a response carries at most 1,000", id="a PDF over the response limit"),
    ],
)
def test_an_invoice_over_a_pdf_bound_is_refused_with_a_400_naming_it(world, monkeypatch, bound, value, rule):
    from tally.api import invoice_documents

    monkeypatch.setattr(invoice_documents, bound, value)
    status, headers, data = get_pdf(world["customer"], _invoices(world["customer"])[0]["id"])
    body = json.loads(data)
    assert (status, body["field"]) == (400, "invoice_id") and rule in body["message"]
