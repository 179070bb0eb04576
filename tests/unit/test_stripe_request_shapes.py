"""What Stripe itself receives from the delivery (adapters/stripe_gateway.py through the official
stripe SDK), recorded at the SDK's HTTP client: the pieces localstripe 1.15.10 lacks and
infra/local/stripe_server.py adds are checked here against the shapes of Stripe's API reference
(one-off draft invoice, items on it with period[start]/[end], /finalize, /void, Idempotency-Key)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from tally.adapters.stripe_gateway import StripeGateway
from tally.billing.invoice_delivery import (
    DeliveryRefused,
    ExternalLine,
    ProviderUnavailable,
    finalize_key,
    invoice_key,
    line_key,
    void_key,
)

UTC = timezone.utc
TALLY_ID = "9b71e109-d02f-51f1-b781-d4eb51a570fc"


class RecordingClient(stripe.HTTPClient):
    name = "recording"

    def __init__(self, answers: list[tuple[int, dict]]) -> None:
        super().__init__()
        self.answers, self.requests = answers, []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.requests.append((method.upper(), urlsplit(url).path, dict(parse_qsl(post_data or urlsplit(url).query)),
                              dict(headers or {})))
        status, body = self.answers.pop(0)
        return json.dumps(body), status, {}

    def request_stream(self, *args, **kwargs):
        raise NotImplementedError

    def close(self):
        pass


def _invoice(id_="in_1", status="draft", total=0) -> dict:
    return {"id": id_, "object": "invoice", "status": status, "total": total, "metadata": {}}


def _gateway(*answers):
    client = RecordingClient(list(answers))
    return StripeGateway("https://api.stripe.com", max_network_retries=0, http_client=client), client


def test_the_draft_invoice_excludes_pending_items_is_not_auto_advanced_and_carries_its_key():
    gateway, client = _gateway((200, _invoice()))

    gateway.create_invoice("sk_test_x", customer="cus_1", currency="usd", collection_method="send_invoice",
                           days_until_due=None, metadata={"tally_invoice_id": TALLY_ID}, description="Tally invoice",
                           idempotency_key=invoice_key(TALLY_ID))

    ((method, path, form, headers),) = client.requests
    assert (method, path) == ("POST", "/v1/invoices")
    assert form == {"customer": "cus_1", "currency": "usd", "auto_advance": "false", "collection_method": "send_invoice",
                    "days_until_due": "30", "pending_invoice_items_behavior": "exclude",
                    "metadata[tally_invoice_id]": TALLY_ID, "description": "Tally invoice"}
    assert headers["Idempotency-Key"] == f"tally-invoice-{TALLY_ID}"
    assert headers["Authorization"] == "Bearer sk_test_x"


def test_an_item_is_added_to_the_draft_in_cents_with_its_period_and_line_index():
    gateway, client = _gateway((200, {"id": "ii_1", "object": "invoiceitem"}))
    line = ExternalLine(3, 2468, "API calls (2026-10-01 to 2026-11-01)", datetime(2026, 10, 1, tzinfo=UTC),
                        datetime(2026, 11, 1, tzinfo=UTC))

    gateway.add_item("sk_test_x", customer="cus_1", invoice="in_1", currency="usd", line=line,
                     metadata={"tally_invoice_id": TALLY_ID}, idempotency_key=line_key(TALLY_ID, 3))

    ((method, path, form, headers),) = client.requests
    assert (method, path) == ("POST", "/v1/invoiceitems")
    assert form == {"customer": "cus_1", "invoice": "in_1", "amount": "2468", "currency": "usd",
                    "description": "API calls (2026-10-01 to 2026-11-01)",
                    "period[start]": "1790812800", "period[end]": "1793491200",
                    "metadata[tally_invoice_id]": TALLY_ID, "metadata[tally_line_index]": "3"}
    assert headers["Idempotency-Key"] == f"tally-invoice-{TALLY_ID}-line-3"


def test_finalize_and_void_are_their_own_routes_with_their_own_keys():
    gateway, client = _gateway((200, _invoice(status="open", total=2468)), (200, _invoice(status="void", total=2468)))

    assert gateway.finalize("sk_test_x", "in_1", finalize_key(TALLY_ID)).status == "open"
    assert gateway.void("sk_test_x", "in_1", void_key(TALLY_ID)).status == "void"

    assert [(m, p, f, h["Idempotency-Key"]) for m, p, f, h in client.requests] == [
        ("POST", "/v1/invoices/in_1/finalize", {"auto_advance": "false"}, f"tally-invoice-{TALLY_ID}-finalize"),
        ("POST", "/v1/invoices/in_1/void", {}, f"tally-invoice-{TALLY_ID}-void"),
    ]


@pytest.mark.parametrize(
    "status, error, raised",
    [(500, "api_error", ProviderUnavailable), (503, "api_error", ProviderUnavailable),
     (429, "rate_limit_error", ProviderUnavailable), (409, "idempotency_error", ProviderUnavailable),
     (404, "invalid_request_error", DeliveryRefused), (401, "authentication_error", DeliveryRefused),
     (400, "invalid_request_error", DeliveryRefused)],
    ids=["500 retried", "503 retried", "rate limited retried", "409 retried", "unknown customer refused",
         "bad key refused", "bad request refused"],
)
def test_stripe_errors_are_retried_or_refused(status, error, raised):
    gateway, _ = _gateway((status, {"error": {"type": error, "message": "no"}}))
    with pytest.raises(raised):
        gateway.finalize("sk_test_x", "in_1", finalize_key(TALLY_ID))
