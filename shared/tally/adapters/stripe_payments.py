"""Stripe payments for the STRIPE payment gate of threshold billing, through the official `stripe`
SDK (StripeGateway's clients and error mapping; adapters/stripe_gateway.py makes the invoices).

A declined card is an answer, not an error: Stripe refuses the confirm (or the invoice's pay) with a
402 card_error, after which the PaymentIntent reads `requires_payment_method` and the invoice stays
`open`. Every other refusal maps as StripeGateway's do (ProviderUnavailable: retry; DeliveryRefused:
permanent)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from tally.adapters.stripe_gateway import StripeGateway, StripeInvoice, _call
from tally.billing.invoice_delivery import DeliveryRefused


@dataclass(frozen=True, slots=True)
class StripePayment:
    id: str
    status: str  # PaymentIntent: requires_confirmation, succeeded, requires_payment_method, processing...
    error: str | None = None  # last_payment_error's message, when declined


def _error_message(error: Any) -> str | None:
    if not error:
        return None
    return (error.get("message") if isinstance(error, dict) else getattr(error, "message", None)) or "declined"


class StripePayments(StripeGateway):
    def default_payment_method(self, secret_key: str, customer: str) -> str | None:
        """The customer's invoice_settings.default_payment_method (Stripe charges it off session)."""
        client = self._client(secret_key)
        found = _call(lambda: client.customers.retrieve(customer))
        settings = found.get("invoice_settings") or {}
        method = settings.get("default_payment_method")
        return method if isinstance(method, str) else getattr(method, "id", None)

    def create_payment_intent(self, secret_key: str, *, customer: str, amount: int, currency: str, payment_method: str,
                              metadata: dict[str, str], idempotency_key: str) -> StripePayment:
        """Created unconfirmed: Tally records its id before it can take any money."""
        client = self._client(secret_key)
        params = {"customer": customer, "amount": amount, "currency": currency, "payment_method": payment_method,
                  "metadata": metadata}
        intent = _call(lambda: client.payment_intents.create(params=params, options={"idempotency_key": idempotency_key}))
        return StripePayment(intent.id, intent.status)

    def retrieve_payment_intent(self, secret_key: str, payment_intent: str) -> StripePayment:
        client = self._client(secret_key)
        intent = _call(lambda: client.payment_intents.retrieve(payment_intent))
        return StripePayment(intent.id, intent.status, _error_message(intent.get("last_payment_error")))

    def confirm_payment_intent(self, secret_key: str, payment_intent: str, idempotency_key: str) -> StripePayment:
        """Confirmed off session (the customer is not there). A decline answers the PaymentIntent as
        Stripe now has it."""
        client = self._client(secret_key)
        _declined(lambda: client.payment_intents.confirm(payment_intent, params={"off_session": True},
                                                         options={"idempotency_key": idempotency_key}))
        return self.retrieve_payment_intent(secret_key, payment_intent)

    def retrieve_invoice(self, secret_key: str, invoice: str) -> StripeInvoice:
        client = self._client(secret_key)
        return self._view(client, _call(lambda: client.invoices.retrieve(invoice)))

    def pay_invoice(self, secret_key: str, invoice: str, idempotency_key: str) -> StripeInvoice:
        """Charges the customer's default payment method; declined, the invoice stays open."""
        client = self._client(secret_key)
        _declined(lambda: client.invoices.pay(invoice, options={"idempotency_key": idempotency_key}))
        return self.retrieve_invoice(secret_key, invoice)


def _declined(request) -> bool:
    """Runs a charging request; True if Stripe declined the card (a 402 card_error)."""
    try:
        _call(request)
        return False
    except DeliveryRefused as exc:
        if isinstance(exc.__cause__, stripe.CardError):
            return True
        raise
