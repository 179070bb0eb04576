"""What Stripe itself receives from the STRIPE payment gate (adapters/stripe_payments.py through the
official stripe SDK), recorded at the SDK's HTTP client. localstripe 1.15.10 refuses `off_session` on
a PaymentIntent confirm (infra/local/stripe_server.py accepts it), so the shapes are checked here
against Stripe's API reference: an unconfirmed PaymentIntent on the default payment method under the
workflow's key, then POST /v1/payment_intents/{id}/confirm with off_session=true under its own key;
a 402 card_error is a decline, answered with the PaymentIntent as Stripe then has it."""

from __future__ import annotations

from tally.adapters.stripe_payments import StripePayments
from tally.services.threshold_payments import payment_key
from tests.unit.test_stripe_request_shapes import RecordingClient

WORKFLOW = "5576ba1f-4a33-4b47-8f05-6162d87b4a33"


def _payments(*answers):
    client = RecordingClient(list(answers))
    return StripePayments("https://api.stripe.com", max_network_retries=0, http_client=client), client


def _intent(status: str, error: dict | None = None) -> dict:
    return {"id": "pi_1", "object": "payment_intent", "status": status, "last_payment_error": error}


def test_the_payment_intent_is_created_unconfirmed_on_the_default_method_then_confirmed_off_session():
    payments, client = _payments(
        (200, {"id": "cus_1", "object": "customer", "invoice_settings": {"default_payment_method": "pm_1"}}),
        (200, _intent("requires_confirmation")),
        (200, _intent("succeeded")),
        (200, _intent("succeeded")),
    )

    method = payments.default_payment_method("sk_test_x", "cus_1")
    created = payments.create_payment_intent("sk_test_x", customer="cus_1", amount=2000, currency="usd",
                                             payment_method=method, metadata={"tally_workflow_id": WORKFLOW},
                                             idempotency_key=payment_key(WORKFLOW, "payment"))
    confirmed = payments.confirm_payment_intent("sk_test_x", created.id, payment_key(WORKFLOW, "confirm"))

    (_, (m1, p1, f1, h1), (m2, p2, f2, h2), (m3, p3, _, _)) = client.requests
    assert (m1, p1, f1) == ("POST", "/v1/payment_intents", {
        "customer": "cus_1", "amount": "2000", "currency": "usd", "payment_method": "pm_1",
        "metadata[tally_workflow_id]": WORKFLOW})  # no confirm: nothing is charged before its id is recorded
    assert h1["Idempotency-Key"] == f"tally-threshold-{WORKFLOW}-payment"
    assert (m2, p2, f2, h2["Idempotency-Key"]) == (
        "POST", "/v1/payment_intents/pi_1/confirm", {"off_session": "true"}, f"tally-threshold-{WORKFLOW}-confirm")
    assert (m3, p3) == ("GET", "/v1/payment_intents/pi_1")
    assert (created.status, confirmed.status, confirmed.error) == ("requires_confirmation", "succeeded", None)


def test_a_declined_confirm_answers_the_payment_intent_with_its_error():
    declined = {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}
    payments, client = _payments(
        (402, declined),
        (200, _intent("requires_payment_method", {"code": "card_declined", "message": "Your card was declined."})),
    )

    answer = payments.confirm_payment_intent("sk_test_x", "pi_1", payment_key(WORKFLOW, "confirm"))

    assert (answer.status, answer.error) == ("requires_payment_method", "Your card was declined.")
    assert [(m, p) for m, p, _, _ in client.requests] == [("POST", "/v1/payment_intents/pi_1/confirm"),
                                                          ("GET", "/v1/payment_intents/pi_1")]
