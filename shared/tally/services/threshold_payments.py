"""The STRIPE payment gate of threshold billing: a claimed crossing charged through Stripe, then
settled (services/thresholds.py `settle`): paid, its commit counts; failed (declined, no default
payment method, no Stripe configuration), nothing is granted and the configuration is turned off
until an edit updates it. payment_gate.payment_status is published once (its id is the workflow's).

Where it runs. The evaluation that claims a crossing (the alerts function, on the counters stream)
only parks and publishes payment_gate.threshold_reached, with the message attribute
payment_gate_type STRIPE; the delivery queue receives those, and the delivery function calls
`charge`. A Stripe that is slow or down then holds up one queue message, retried with backoff and
parked in the DLQ, never the stream batch of every other customer.

Exactly once. A crossing is charged at most once however often `charge` runs, concurrently or after
a crash:
- PAYMENT_INTENT: the PaymentIntent is created unconfirmed under `tally-threshold-<workflow>-payment`
  (racing chargers get the same one), its id recorded on the charge, then it is confirmed off session
  under `...-confirm` only while Stripe says it `requires_confirmation`. A retry reads the recorded
  PaymentIntent from Stripe (asks first, never sends blindly): one that succeeded is settled paid,
  one declined is settled failed; a PaymentIntent takes money once.
- INVOICE: a one-off Stripe invoice (charge_automatically; metadata tally_invoice_id names the Tally
  SCHEDULED invoice the crossing issues, plus `stripe_config.invoice_metadata`) under
  `...-invoice`, found by that metadata on a retry, its one item under `...-item`, finalized, then
  paid under `...-pay` only while open and not yet attempted. An invoice is paid once. When cycle
  close later finalizes that Tally invoice, its delivery finds this Stripe invoice by the same
  metadata and records it instead of making another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable, Protocol

from tally.billing.errors import NotFound
from tally.billing.invoice_delivery import STRIPE, DeliveryRefused, ExternalLine, ProviderUnavailable
from tally.billing.thresholds import ChargeStatus, PaymentGate, PaymentOutcome, StripePaymentType
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.contract_billing_providers import configuration_in_force
from tally.services.thresholds import StoredCharge, ThresholdBillingService, ThresholdStore

logger = logging.getLogger(__name__)

PAID, FAILED, SETTLED_BEFORE, NOT_STRIPE = "paid", "failed", "settled_before", "not_stripe"
_DECLINED_INTENT = ("requires_payment_method", "requires_action", "canceled")


class Vault(Protocol):
    def get(self, name: str) -> str: ...


def payment_key(workflow: str, step: str) -> str:
    """Stripe idempotency key of one step of a crossing's payment: the workflow id is derived from
    (contract, configuration kind, crossing number)."""
    return f"tally-threshold-{workflow}-{step}"


@dataclass(frozen=True, slots=True)
class ThresholdPayment:
    outcome: str
    stripe_id: str | None = None
    reason: str | None = None


class _Declined(Exception):
    def __init__(self, reason: str, stripe_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.stripe_id = reason, stripe_id


class ThresholdPaymentService:
    def __init__(self, thresholds: ThresholdBillingService, store: ThresholdStore, providers, vault: Vault, stripe,
                 clock: Callable[[], datetime], contracts: Callable[[str], dict | None] | None = None) -> None:
        self._contracts = contracts  # contract id -> its stored document (None: customers' defaults only)
        self._thresholds = thresholds
        self._store = store
        self._providers = providers  # services/billing_providers.BillingProviderService: stripe_target
        self._vault = vault
        self._stripe = stripe  # adapters/stripe_payments.StripePayments
        self._clock = clock

    def charge(self, workflow: str) -> ThresholdPayment:
        """Charge a STRIPE gate's crossing and settle it. Raises ProviderUnavailable (Stripe did not
        answer: the message is retried); a permanent refusal settles the crossing failed."""
        charge = self._store.by_workflow(workflow)
        if charge is None:
            raise NotFound(f"threshold billing workflow {workflow} not found")
        if charge.document.get("payment_gate_type") != PaymentGate.STRIPE.value:
            return ThresholdPayment(NOT_STRIPE)
        if charge.status is not ChargeStatus.PENDING_PAYMENT:
            return ThresholdPayment(SETTLED_BEFORE, (charge.payment or {}).get("id"))
        if self._amount(charge) == 0:  # a discount's payment_fraction of 0: nothing to collect
            return self._settle(workflow, PaymentOutcome.PAID, None, None)
        target = self._target(charge)
        try:
            if target is None:
                raise _Declined("the customer has no Stripe billing provider configuration")
            key = self._vault.get(target.secret_name)
            kind = StripePaymentType(charge.document["stripe_config"]["payment_type"])
            if kind is StripePaymentType.PAYMENT_INTENT:
                stripe_id = self._by_payment_intent(charge, key, target.stripe_customer_id)
            else:
                stripe_id = self._by_invoice(charge, key, target.stripe_customer_id)
        except _Declined as declined:
            return self._settle(workflow, PaymentOutcome.FAILED, declined.stripe_id, declined.reason)
        except DeliveryRefused as refused:  # e.g. an unknown Stripe customer: it will not get better
            return self._settle(workflow, PaymentOutcome.FAILED, (charge.payment or {}).get("id"), refused.message)
        return self._settle(workflow, PaymentOutcome.PAID, stripe_id, None)

    def _target(self, charge: StoredCharge):
        """The Stripe configuration the contract names for the crossing's period (its invoices go
        there too), else the customer's default."""
        document = charge.document
        contract = None if self._contracts is None else self._contracts(document["contract_id"])
        at = parse_rfc3339(document["created_at"])
        return self._providers.stripe_target(document["customer_id"], configuration_in_force(contract, at, at))

    def _settle(self, workflow: str, outcome: PaymentOutcome, stripe_id: str | None, reason: str | None) -> ThresholdPayment:
        detail = {"billing_provider": STRIPE, "stripe_id": stripe_id}
        if reason is not None:
            detail["error"] = reason[:500]
        self._thresholds.settle(workflow, outcome, detail)
        logger.info("threshold workflow %s: Stripe payment %s (%s)", workflow, outcome.value, stripe_id)
        return ThresholdPayment(PAID if outcome is PaymentOutcome.PAID else FAILED, stripe_id, reason)

    def _record(self, charge: StoredCharge, payment: dict) -> None:
        if charge.payment != payment and self._store.record_payment(charge, payment) is None:
            raise ProviderUnavailable("the crossing was settled meanwhile; retrying reads it")

    @staticmethod
    def _amount(charge: StoredCharge) -> int:
        total = Decimal(charge.document["invoice_total"])  # USD cents, rounded once at the claim
        return int(total.to_integral_value())

    def _metadata(self, charge: StoredCharge) -> dict[str, str]:
        document = charge.document
        return {"tally_workflow_id": document["id"], "tally_invoice_id": document["invoice_id"],
                "tally_customer_id": document["customer_id"], "tally_contract_id": document["contract_id"]}

    # -- PaymentIntent on the default payment method --------------------------------------------
    def _by_payment_intent(self, charge: StoredCharge, key: str, customer: str) -> str:
        workflow = charge.document["id"]
        recorded = (charge.payment or {}).get("id")
        if recorded is not None:
            intent = self._stripe.retrieve_payment_intent(key, recorded)  # ask Stripe first
        else:
            method = self._stripe.default_payment_method(key, customer)
            if method is None:
                raise _Declined("the Stripe customer has no default payment method (invoice_settings)")
            intent = self._stripe.create_payment_intent(
                key, customer=customer, amount=self._amount(charge), currency="usd", payment_method=method,
                metadata=self._metadata(charge), idempotency_key=payment_key(workflow, "payment"))
            self._record(charge, {"type": "payment_intent", "id": intent.id})
        if intent.status == "requires_confirmation":
            intent = self._stripe.confirm_payment_intent(key, intent.id, payment_key(workflow, "confirm"))
        if intent.status == "succeeded":
            return intent.id
        if intent.status in _DECLINED_INTENT:
            raise _Declined(intent.error or f"the payment was not completed ({intent.status})", intent.id)
        raise ProviderUnavailable(f"PaymentIntent {intent.id} is {intent.status}; retrying")

    # -- a Stripe invoice charged automatically --------------------------------------------------
    def _by_invoice(self, charge: StoredCharge, key: str, customer: str) -> str:
        document = charge.document
        workflow = document["id"]
        recorded = (charge.payment or {}).get("id")
        if recorded is not None:
            invoice = self._stripe.retrieve_invoice(key, recorded)
        else:
            invoice = self._stripe.find_invoice(key, customer, document["invoice_id"])
            if invoice is None:
                invoice = self._stripe.create_invoice(
                    key, customer=customer, currency="usd", collection_method="charge_automatically",
                    days_until_due=None,
                    metadata=dict(document["stripe_config"].get("invoice_metadata") or {}) | self._metadata(charge),
                    description=f"{document['commit'].get('name') or 'Threshold commit'} (Tally invoice {document['invoice_id']})",
                    idempotency_key=payment_key(workflow, "invoice"))
            self._record(charge, {"type": "invoice", "id": invoice.id})
        if invoice.status == "draft":
            if 0 not in invoice.line_indexes:
                at = parse_rfc3339(document["created_at"])
                line = ExternalLine(0, self._amount(charge), document["commit"].get("name") or "Threshold commit", at, at)
                self._stripe.add_item(key, customer=customer, invoice=invoice.id, currency="usd", line=line,
                                      metadata=self._metadata(charge), idempotency_key=payment_key(workflow, "item"))
            invoice = self._stripe.finalize(key, invoice.id, payment_key(workflow, "finalize"))
        if invoice.status == "open":
            if (charge.payment or {}).get("attempted"):
                raise _Declined("the Stripe invoice's payment was declined", invoice.id)
            invoice = self._stripe.pay_invoice(key, invoice.id, payment_key(workflow, "pay"))
            if invoice.status == "open":
                self._record(self._store.by_workflow(workflow) or charge, {"type": "invoice", "id": invoice.id, "attempted": True})
                raise _Declined("the Stripe invoice's payment was declined", invoice.id)
        if invoice.status == "paid":
            return invoice.id
        raise _Declined(f"the Stripe invoice is {invoice.status}", invoice.id)


def collected_by_gate(store: ThresholdStore, record) -> dict | None:
    """The external_invoice of a finalized Tally invoice whose whole total the STRIPE payment gate
    already collected (the SCHEDULED invoice a crossing issued: its commit purchase), so that its
    delivery records the payment instead of billing the customer a second time; None: deliver it
    as usual. A PAYMENT_INTENT crossing names its PaymentIntent (Stripe holds no invoice for it); an
    INVOICE crossing names its paid Stripe invoice."""
    if not record.contract_id:
        return None
    paid = [c for c in store.charges(record.contract_id)
            if c.document.get("invoice_id") == record.id and c.document.get("payment_gate_type") == PaymentGate.STRIPE.value]
    if not paid or any(c.status is not ChargeStatus.PAID for c in paid):
        return None
    total = sum((Decimal(c.document["invoice_total"]) for c in paid), Decimal(0))
    if total != record.invoice.total:
        return None  # other charges share the invoice: it is billed as usual
    return {"billing_provider_type": STRIPE, "invoice_id": (paid[-1].payment or {}).get("id"), "external_status": "PAID",
            "invoiced_total": int(total.to_integral_value()), "billing_provider_error": None,
            "delivered_at": None if paid[-1].settled_at is None else format_rfc3339(paid[-1].settled_at)}
