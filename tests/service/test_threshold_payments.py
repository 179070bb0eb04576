"""The STRIPE payment gate of auto-recharge (issue 17), on moto (DynamoDB, Secrets Manager) and
localstripe (infra/local/stripe_server.py) behind the official stripe SDK.

The world is tests/service/test_thresholds.py's: a contract from Dec 1 2026, API calls at 10 cents.
An auto-recharge watches for the balance to come down to 500 and recharges it to 2000: with no
balance at all the crossing buys 2000 - 0 = 2000 cents, charged as $20.00 (amount 2000) at Stripe.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import boto3
import pytest
import stripe

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.dynamo.billing_providers import customer_config_documents, delivery_method_documents
from tally.adapters.secrets import SecretsManagerVault
from tally.adapters.stripe_payments import StripePayments
from tally.api.contract_models import ContractView, contract_json
from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.billing.invoice_delivery import ProviderUnavailable
from tally.billing.pricing import USD_CENTS
from tally.billing.thresholds import ChargeStatus, PaymentOutcome, ThresholdKind, workflow_id
from tally.services.billing_providers import BillingProviderService
from tally.services.threshold_payments import FAILED, PAID, SETTLED_BEFORE, ThresholdPaymentService
from tally.services.thresholds import ThresholdContention
from tests.localstripe import localstripe  # noqa: F401 - the fixture
from tests.service.test_thresholds import UTC, _calls, _contract, _edit, _recharge, w  # noqa: F401

SECRET_KEY = "sk_test_tally_threshold_4242"
INTENT_GATE = {"payment_gate_type": "STRIPE", "stripe_config": {"payment_type": "PAYMENT_INTENT"}}
INVOICE_GATE = {"payment_gate_type": "STRIPE", "stripe_config": {"payment_type": "INVOICE",
                                                                 "invoice_metadata": {"po": "PO-7"}}}


class CrashAfterStripe(Exception):
    """The delivery function dies after Stripe took the money and before Tally settled the crossing."""


def _world(w, localstripe, card: str):  # noqa: F811
    table, client = w.dynamo["billing"], w.dynamo["client"]
    vault = SecretsManagerVault(boto3.client("secretsmanager", region_name="us-east-1"))
    providers = BillingProviderService(delivery_method_documents(table, client), customer_config_documents(table, client),
                                       vault, DynamoBillingStore(table, client), lambda: "tally/test/billing-providers",
                                       w.clock)
    sdk = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0)
    customer = sdk.customers.create(params={"name": "Acme", "email": "billing@acme.test"})
    method = sdk.payment_methods.attach(card, params={"customer": customer.id})
    sdk.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    providers.set_up("stripe", "direct_to_billing_provider", {"stripe_secret_key": SECRET_KEY})
    providers.set_customer_configurations([{
        "customer_id": w.customer.id, "billing_provider": "stripe", "delivery_method": "direct_to_billing_provider",
        "configuration": {"stripe_customer_id": customer.id},
    }])
    w.payments = ThresholdPaymentService(w.service, w.store, providers, vault,
                                         StripePayments(localstripe.url, max_network_retries=0), w.clock)
    w.sdk, w.stripe_customer = sdk, customer.id
    return w


@pytest.fixture()
def s(w, localstripe):  # noqa: F811
    return _world(w, localstripe, "pm_card_visa")


@pytest.fixture()
def declining(w, localstripe):  # noqa: F811
    # Attaches, then every charge is declined (402 card_declined), as on Stripe.
    return _world(w, localstripe, "pm_card_chargeCustomerFail")


def _intents(s, workflow: str) -> list:
    return [i for i in s.sdk.payment_intents.list(params={"limit": 100}).auto_paging_iter()
            if i.metadata.get("tally_workflow_id") == workflow]


def _stripe_invoices(s) -> list:
    return list(s.sdk.invoices.list(params={"customer": s.stripe_customer, "limit": 100}).data)


def _balance(s):
    return s.balances.net_balance(s.customer.id, USD_CENTS.id, include_drafts=True)


def _queued(s) -> list[str]:
    """The workflow ids the delivery queue receives: threshold_reached with payment_gate_type STRIPE."""
    return [m["properties"]["workflow_id"] for m, a in zip(s.publisher.messages, s.publisher.attributes)
            if a["type"] == "payment_gate.threshold_reached" and a.get("payment_gate_type") == "STRIPE"]


def test_fifty_evaluations_crossing_together_charge_once_and_grant_once(s):
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(500, 2000, INTENT_GATE))
    s.meeting.of(50)
    s.service._sleep = lambda seconds: time.sleep(min(seconds, 0.02))  # losers wait for the winner's publish

    def evaluate(_):
        for _attempt in range(10):
            try:
                return s.service.evaluate_customer(s.customer.id)
            except ThresholdContention:  # still publishing after the loser's attempts: the stream retries
                continue
        raise AssertionError("never settled")

    with ThreadPoolExecutor(max_workers=50) as pool:  # 50 evaluations read the same state, then claim
        outcomes = list(pool.map(evaluate, range(50)))
    s.meeting.of(1)  # later readers meet nobody
    assert sum(o.charged for o in outcomes) == 1
    wf = workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1)
    assert _queued(s) == [wf]
    assert _balance(s) == 0  # waiting for its payment: nothing granted yet

    # The queue hands the message over three times at once (at-least-once): one PaymentIntent.
    results: list = []

    def charge():
        try:
            results.append(s.payments.charge(wf).outcome)
        except ProviderUnavailable:  # Stripe's 409 while another request holds the key: SQS retries
            results.append("retry")

    threads = [threading.Thread(target=charge) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert PAID in results, results
    assert s.payments.charge(wf).outcome == SETTLED_BEFORE

    (intent,) = _intents(s, wf)
    assert (intent.status, intent.amount, intent.currency, intent.customer) == ("succeeded", 2000, "usd", s.stripe_customer)
    assert _balance(s) == 2000
    (charge_,) = s.store.charges(contract["id"])
    assert (charge_.status, charge_.payment) == (ChargeStatus.PAID, {"type": "payment_intent", "id": intent.id})
    statuses = [m for m in s.publisher.messages if m["type"] == "payment_gate.payment_status"]
    assert [(m["id"], m["properties"]["payment_status"], m["properties"]["stripe_id"]) for m in statuses] == [
        (f"payment_gate.payment_status:{wf}", "paid", intent.id)]
    # Recharged to 2000: nothing more to decide.
    assert s.service.evaluate_customer(s.customer.id).charged == 0


def test_a_declined_payment_grants_nothing_and_turns_the_configuration_off_until_an_edit(declining):
    s = declining
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(500, 2000, INVOICE_GATE))
    assert s.service.evaluate_customer(s.customer.id).charged == 1
    wf = workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1)

    result = s.payments.charge(wf)

    assert result.outcome == FAILED
    (invoice,) = _stripe_invoices(s)  # a one-off invoice charged automatically, left open by the decline
    assert (invoice.status, invoice.total, invoice.collection_method) == ("open", 2000, "charge_automatically")
    assert (invoice.metadata["po"], invoice.metadata["tally_workflow_id"], result.stripe_id) == ("PO-7", wf, invoice.id)
    assert _balance(s) == 0
    stored = s.contracts.get(s.customer.id, contract["id"])
    assert stored["prepaid_balance_threshold_configuration"]["is_enabled"] is False
    (status,) = [m for m in s.publisher.messages if m["type"] == "payment_gate.payment_status"]
    assert (status["properties"]["payment_status"], status["properties"]["stripe_id"]) == ("failed", invoice.id)
    # Off: neither an evaluation nor the message handed over again charges anything.
    assert s.service.evaluate_customer(s.customer.id).charged == 0
    assert s.payments.charge(wf).outcome == SETTLED_BEFORE
    assert len(_stripe_invoices(s)) == 1

    # An edit turns it on again: a new crossing (2), waiting for its own payment.
    _edit(s, contract, update_prepaid_balance_threshold_configuration={"is_enabled": True})
    assert s.service.evaluate_customer(s.customer.id).charged == 1
    assert [(c.document["crossing"], c.status) for c in s.store.charges(contract["id"])] == [
        (1, ChargeStatus.FAILED), (2, ChargeStatus.PENDING_PAYMENT)]


def test_a_declined_payment_intent_grants_nothing_and_says_why(declining):
    s = declining
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(500, 2000, INTENT_GATE))
    s.service.evaluate_customer(s.customer.id)
    wf = workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1)

    result = s.payments.charge(wf)

    (intent,) = _intents(s, wf)
    assert (intent.status, intent.amount, intent.last_payment_error.code) == ("requires_payment_method", 2000, "card_declined")
    assert (result.outcome, result.stripe_id, result.reason) == (FAILED, intent.id, "Your card was declined.")
    assert _balance(s) == 0
    assert s.contracts.get(s.customer.id, contract["id"])["prepaid_balance_threshold_configuration"]["is_enabled"] is False
    (status,) = [m for m in s.publisher.messages if m["type"] == "payment_gate.payment_status"]
    assert {k: status["properties"][k] for k in ("payment_status", "stripe_id", "error")} == {
        "payment_status": "failed", "stripe_id": intent.id, "error": "Your card was declined."}
    assert s.payments.charge(wf).outcome == SETTLED_BEFORE and len(_intents(s, wf)) == 1


@pytest.mark.parametrize("gate", [INTENT_GATE, INVOICE_GATE], ids=["payment intent", "stripe invoice"])
def test_a_crash_between_the_stripe_charge_and_the_record_grants_once(s, gate):
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(500, 2000, gate))
    s.service.evaluate_customer(s.customer.id)
    wf = workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1)
    settle = s.service.settle

    def crash(*args, **kwargs):
        raise CrashAfterStripe()

    s.service.settle = crash
    with pytest.raises(CrashAfterStripe):
        s.payments.charge(wf)
    assert _balance(s) == 0  # Stripe has the money, Tally does not know yet
    s.service.settle = settle

    assert s.payments.charge(wf).outcome == PAID  # the retry asks Stripe, and charges nothing again

    if gate is INTENT_GATE:
        (intent,) = _intents(s, wf)
        assert (intent.status, intent.amount) == ("succeeded", 2000)
    else:
        (invoice,) = _stripe_invoices(s)
        assert (invoice.status, invoice.total, invoice.metadata["po"]) == ("paid", 2000, "PO-7")
        assert [(i.status, i.amount) for i in s.sdk.payment_intents.list(params={"limit": 100}).auto_paging_iter()
                if i.id == invoice.payment_intent] == [("succeeded", 2000)]
    assert _balance(s) == 2000
    assert [m["properties"]["payment_status"] for m in s.publisher.messages
            if m["type"] == "payment_gate.payment_status"] == ["paid"]


def test_stripe_gate_configurations_read_back_and_refuse_what_does_not_fit(s):
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(500, 2000, {"payment_gate_type": "STRIPE"}))
    document = s.contracts.get(s.customer.id, contract["id"])
    body = contract_json(document, s.contracts.contract(document), s.contracts.products(), ContractView(s.clock.now))
    # "If left blank, will default to INVOICE"
    assert body["prepaid_balance_threshold_configuration"]["payment_gate_config"] == {
        "payment_gate_type": "STRIPE", "stripe_config": {"payment_type": "INVOICE"}}
    s.service.evaluate_customer(s.customer.id)
    with pytest.raises(InvalidInput) as refused:  # Tally settles a STRIPE gate itself
        s.service.release(workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1), PaymentOutcome.PAID)
    assert refused.value.field == "workflow_id"
    for body, field in [
        ({"payment_gate_type": "STRIPE", "stripe_config": {"payment_type": "PAYMENT_INTENT", "invoice_metadata": {"a": "b"}}},
         "update_prepaid_balance_threshold_configuration.payment_gate_config.stripe_config.invoice_metadata"),
        ({"payment_gate_type": "NONE", "stripe_config": {"payment_type": "INVOICE"}},
         "update_prepaid_balance_threshold_configuration.payment_gate_config.stripe_config"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            _edit(s, contract, update_prepaid_balance_threshold_configuration={"payment_gate_config": body})
        assert refused.value.field == field


def test_the_delivery_function_charges_the_crossing_its_queue_hands_over(s, monkeypatch):
    from functions.deliver_invoices import handler
    from tally import wiring

    monkeypatch.setattr(wiring, "threshold_payment_service", lambda: s.payments)
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(500, 2000, INTENT_GATE))
    s.service.evaluate_customer(s.customer.id)
    (reached,) = [m for m in s.publisher.messages if m["type"] == "payment_gate.threshold_reached"]
    event = {"Records": [{
        "messageId": "m-1", "receiptHandle": "r", "body": exact_json.dumps(reached), "md5OfBody": "",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "s",
                       "ApproximateFirstReceiveTimestamp": "0"},
        "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1",
    }]}
    context = type("C", (), {"function_name": "deliver", "memory_limit_in_mb": 512, "aws_request_id": "x",
                             "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:deliver"})()

    assert handler.handler(event, context) == {"batchItemFailures": []}
    assert handler.handler(event, context) == {"batchItemFailures": []}  # handed over again: nothing more

    (intent,) = _intents(s, workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1))
    assert (intent.status, intent.amount) == ("succeeded", 2000)
    assert _balance(s) == 2000


def test_a_spend_threshold_paid_by_payment_intent_is_not_billed_again_when_its_invoice_is_delivered(s):
    from tally.adapters.dynamo.billing_providers import DynamoDeliveryStateStore
    from tally.adapters.dynamo.invoices import DynamoInvoiceStore
    from tally.adapters.stripe_gateway import StripeGateway
    from tally.services.invoice_delivery import ALREADY_DELIVERED, InvoiceDeliveryService
    from tally.services.threshold_payments import collected_by_gate

    contract = _contract(s, spend_threshold_configuration={
        "commit": {"product_id": "p-setup", "name": "Early charge"}, "is_enabled": True,
        "payment_gate_config": INTENT_GATE, "threshold_amount": 1000})
    _calls(s, datetime(2026, 12, 2, tzinfo=UTC), 120)  # 1200 uncollected: crossing 1 buys 1000
    s.clock.now = datetime(2026, 12, 2, 5, 20, tzinfo=UTC)
    assert s.service.evaluate_customer(s.customer.id).charged == 1
    wf = workflow_id(contract["id"], ThresholdKind.SPEND, 1)
    assert s.payments.charge(wf).outcome == PAID
    (intent,) = _intents(s, wf)
    assert (intent.status, intent.amount) == ("succeeded", 1000)

    s.clock.now = datetime(2026, 12, 2, 6, tzinfo=UTC)  # the hourly close run finalizes the crossing's invoice
    (scheduled,) = s.close.finalize(s.customer.id, contract["id"], datetime(2026, 12, 1, tzinfo=UTC), s.clock.now)["finalized"]
    table, client = s.dynamo["billing"], s.dynamo["client"]
    state = DynamoDeliveryStateStore(table, client)
    delivery = InvoiceDeliveryService(
        DynamoInvoiceStore(table, client), s.payments._providers, state, s.payments._vault,
        StripeGateway(s.payments._stripe._api_base, max_network_retries=0), s.publisher, lambda: "unused", s.clock,
        collected=lambda record: collected_by_gate(s.store, record))

    outcome = delivery.deliver(scheduled)

    assert (outcome.outcome, outcome.external_invoice_id) == (ALREADY_DELIVERED, intent.id)
    assert _stripe_invoices(s) == []  # paid once, by the PaymentIntent: no Stripe invoice to pay again
    recorded = state.get(scheduled)
    assert (recorded["external_status"], recorded["invoiced_total"], recorded["invoice_id"]) == ("PAID", 1000, intent.id)


def test_a_crossing_with_nothing_to_pay_is_granted_without_a_charge(s):
    contract = _contract(s, prepaid_balance_threshold_configuration=_recharge(
        500, 2000, INTENT_GATE, discount_configuration={"payment_fraction": 0}))
    s.service.evaluate_customer(s.customer.id)
    wf = workflow_id(contract["id"], ThresholdKind.PREPAID_BALANCE, 1)

    assert (s.payments.charge(wf).outcome, s.payments.charge(wf).outcome) == (PAID, SETTLED_BEFORE)

    assert _intents(s, wf) == [] and _stripe_invoices(s) == []  # 2000 x 0 = 0: Stripe is not asked
    assert _balance(s) == 2000
