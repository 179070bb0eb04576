"""Stripe, through the official `stripe` SDK: the only module that imports it.

Every POST carries an idempotency key that Tally derives from its own ids
(billing/invoice_delivery.py), so a retried request never makes a second object. Errors become
ProviderUnavailable (retry: connection, rate limit, 409, 5xx) or DeliveryRefused (permanent)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from tally.billing.invoice_delivery import DeliveryRefused, ExternalLine, ProviderUnavailable



@dataclass(frozen=True, slots=True)
class StripeInvoice:
    id: str
    status: str  # draft, open, paid, uncollectible, void
    line_indexes: frozenset[int]  # Tally line indexes already on it (tally_line_index metadata)
    total: int


def _unix(instant: datetime) -> int:
    return int(instant.timestamp())


class StripeGateway:
    """`api_base`: None for Stripe itself; localstripe's URL locally."""

    def __init__(self, api_base: str | None = None, max_network_retries: int = 2, http_client=None) -> None:
        self._api_base = api_base
        self._retries = max_network_retries
        self._http_client = http_client  # a stripe.HTTPClient; tests record the SDK's requests with one
        self._clients: dict[str, stripe.StripeClient] = {}
        self._lock = threading.Lock()

    def _client(self, secret_key: str) -> stripe.StripeClient:
        with self._lock:
            client = self._clients.get(secret_key)
            if client is None:
                options: dict[str, Any] = {"max_network_retries": self._retries}
                if self._api_base:
                    options["base_addresses"] = {"api": self._api_base}
                if self._http_client is not None:
                    options["http_client"] = self._http_client
                client = self._clients[secret_key] = stripe.StripeClient(secret_key, **options)
            return client

    def find_invoice(self, secret_key: str, customer: str, tally_invoice_id: str) -> StripeInvoice | None:
        """The customer's Stripe invoice made for this Tally invoice, if any: how a delivery whose
        answer was lost, or whose idempotency keys expired (Stripe keeps them 24 h), finds what it
        already made. A list, not search: search lags writes by up to a minute."""
        client = self._client(secret_key)
        params: dict[str, Any] = {"customer": customer, "limit": 100}
        while True:
            page = _call(lambda: client.invoices.list(params=params))
            for invoice in page.data:
                if (invoice.metadata or {}).get("tally_invoice_id") == tally_invoice_id:
                    return self._view(client, invoice)
            if not page.has_more or not page.data:
                return None
            params["starting_after"] = page.data[-1].id

    def _view(self, client: stripe.StripeClient, invoice: Any) -> StripeInvoice:
        indexes: set[int] = set()
        lines = _call(lambda: client.invoices.line_items.list(invoice.id, params={"limit": 100}))
        for line in lines.auto_paging_iter():
            index = (line.metadata or {}).get("tally_line_index")
            if index is not None:
                indexes.add(int(index))
        return StripeInvoice(invoice.id, invoice.status, frozenset(indexes), int(invoice.total or 0))

    def create_invoice(self, secret_key: str, *, customer: str, currency: str, collection_method: str,
                       days_until_due: int | None, metadata: dict[str, str], description: str,
                       idempotency_key: str) -> StripeInvoice:
        params: dict[str, Any] = {
            "customer": customer,
            "currency": currency,
            "auto_advance": False,  # Tally finalizes it once every item is on it
            "collection_method": collection_method,
            "pending_invoice_items_behavior": "exclude",  # only the items made for this invoice
            "metadata": metadata,
            "description": description,
        }
        if collection_method == "send_invoice":
            params["days_until_due"] = days_until_due if days_until_due is not None else 30
        client = self._client(secret_key)
        invoice = _call(lambda: client.invoices.create(params=params, options={"idempotency_key": idempotency_key}))
        return StripeInvoice(invoice.id, invoice.status, frozenset(), int(invoice.total or 0))

    def add_item(self, secret_key: str, *, customer: str, invoice: str, currency: str, line: ExternalLine,
                 metadata: dict[str, str], idempotency_key: str) -> None:
        params = {
            "customer": customer,
            "invoice": invoice,
            "amount": line.amount,
            "currency": currency,
            "description": line.description,
            "period": {"start": _unix(line.period_start), "end": _unix(line.period_end)},
            "metadata": metadata | {"tally_line_index": str(line.index)},
        }
        client = self._client(secret_key)
        _call(lambda: client.invoice_items.create(params=params, options={"idempotency_key": idempotency_key}))

    def finalize(self, secret_key: str, invoice: str, idempotency_key: str) -> StripeInvoice:
        client = self._client(secret_key)
        done = _call(lambda: client.invoices.finalize_invoice(
            invoice, params={"auto_advance": False}, options={"idempotency_key": idempotency_key}))
        return StripeInvoice(done.id, done.status, frozenset(), int(done.total or 0))


    def void(self, secret_key: str, invoice: str, idempotency_key: str) -> StripeInvoice:
        client = self._client(secret_key)
        done = _call(lambda: client.invoices.void_invoice(invoice, options={"idempotency_key": idempotency_key}))
        return StripeInvoice(done.id, done.status, frozenset(), int(done.total or 0))


def _call(request):
    try:
        return request()
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise ProviderUnavailable(f"Stripe did not answer: {type(exc).__name__}") from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        if status >= 500 or status == 409:
            raise ProviderUnavailable(f"Stripe answered {status}; retrying") from exc
        message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
        raise DeliveryRefused(f"Stripe refused the request ({status}): {message}"[:500]) from exc
