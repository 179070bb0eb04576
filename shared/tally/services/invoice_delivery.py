"""Delivering a finalized invoice to the customer's billing provider, exactly once (Stripe, direct).

The delivery function calls `deliver` for every invoice.finalized message; SQS may hand the same
message over more than once, and a close run may announce an invoice again.

Exactly once, step by step (DESIGN.md, "Delivery to the outside world"):
1. Tally's record says FINALIZED at the provider: done, nothing is sent.
2. Ask Stripe first: the customer's invoice whose metadata names this Tally invoice. This is how a
   delivery that crashed after Stripe made the invoice, or whose answer was lost, resumes without
   sending blindly, even once Stripe's idempotency keys (kept 24 h) have expired.
3. Otherwise create it, as a draft, under the key `tally-invoice-<id>`; two racing deliveries get
   the same draft from Stripe.
4. Add each line Stripe does not show yet, under `tally-invoice-<id>-line-<index>`.
5. Finalize it under `tally-invoice-<id>-finalize`, then record the external id and status on
   Tally's invoice record. A crash between 5 and the record is step 2 on the retry.
Voiding a Tally invoice publishes invoice.voided, and the delivery function voids its Stripe
invoice (under `tally-invoice-<voided id>-void`); a regenerated invoice also voids the Stripe invoice
of the one it replaces before it is delivered, so void plus regenerate leaves one void and one open
invoice even if that message was lost.

Where: the configuration the invoice's contract names for the invoice's billing period, else the
customer's default (services/contract_billing_providers.py). A voided invoice's Stripe invoice is
looked for where that invoice was delivered, which a regenerated one's may not be.

Failures. ProviderUnavailable propagates: the message is retried. On the last attempt, or on a
permanent refusal (DeliveryRefused), the state is recorded with the provider's error and
invoice.billing_provider_error is published once (claimed on the record; its id is stable); the
caller then lets the message go to the DLQ, from which `tally` redelivers it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping, Protocol

from tally.billing.errors import NotFound
from tally.billing.invoice_delivery import (
    BILLING_PROVIDER_ERROR,
    STRIPE,
    DeliveryRefused,
    external_invoice,
    finalize_key,
    invoice_key,
    line_key,
    void_key,
)
from tally.billing.messages import envelope
from tally.billing.time import format_rfc3339
from tally.services.billing_providers import BillingProviderService
from tally.services.contract_billing_providers import configuration_in_force
from tally.services.invoice_records import FINALIZED, InvoiceStore

logger = logging.getLogger(__name__)

DELIVERED, ALREADY_DELIVERED, NOT_CONFIGURED, NOT_FINALIZED = "delivered", "already_delivered", "not_configured", "not_finalized"
NOT_BILLABLE = "not_billable"
VOIDED, NOT_VOIDED = "voided", "not_voided"
INVOICE_VOIDED = "invoice.voided"  # Tally's message: a finalized invoice was voided (POST /v1/invoices/void)
# Stripe invoice status -> Metronome's external_status
_EXTERNAL_STATUS = {"draft": "DRAFT", "open": "FINALIZED", "paid": "PAID", "uncollectible": "UNCOLLECTIBLE", "void": "VOID"}


class DeliveryState(Protocol):
    def get(self, invoice_id: str) -> dict | None: ...
    def record(self, invoice_id: str, external: dict) -> None: ...
    def claim_error_publication(self, invoice_id: str, now: datetime) -> bool: ...
    def release_error_publication(self, invoice_id: str) -> None: ...


class Vault(Protocol):
    def get(self, name: str) -> str: ...


class Publisher(Protocol):
    def publish(self, topic_arn: str, message: Mapping, attributes: Mapping[str, str]) -> str: ...


class InvoiceNotDeliverable(NotFound):
    """No finalized invoice has this id."""


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: str
    external_invoice_id: str | None = None


class InvoiceDeliveryService:
    def __init__(self, invoices: InvoiceStore, providers: BillingProviderService, state: DeliveryState, vault: Vault,
                 stripe, publisher: Publisher, invoices_topic: Callable[[], str], clock: Callable[[], datetime],
                 contracts: Callable[[str], dict | None] | None = None,
                 collected: Callable[[object], dict | None] | None = None) -> None:
        self._invoices = invoices
        # record -> its external_invoice when a STRIPE payment gate collected it already
        # (services/threshold_payments.collected_by_gate); None: never
        self._collected = collected
        self._providers = providers
        self._state = state
        self._vault = vault
        self._stripe = stripe  # adapters/stripe_gateway.StripeGateway
        self._publisher = publisher
        self._invoices_topic = invoices_topic
        self._clock = clock
        self._contracts = contracts  # contract id -> its stored document (None: customers' defaults only)

    def _target(self, record):
        """Where the invoice is delivered: its contract's configuration for its period, else the
        customer's default. A hierarchy child's invoice paid by its parent (payer PARENT) goes to
        the parent contract's."""
        contract_id, customer_id = record.invoice.payer or (record.contract_id, record.customer_id)
        document = None if self._contracts is None or not contract_id else self._contracts(contract_id)
        named = configuration_in_force(document, record.period_start, record.finalized_at)
        return self._providers.stripe_target(customer_id, named)

    def deliver(self, invoice_id: str) -> Delivery:
        """Raises ProviderUnavailable (retry) or DeliveryRefused (permanent; already reported)."""
        record = self._invoices.get(invoice_id)
        if record is None:
            raise InvoiceNotDeliverable(f"invoice {invoice_id} is not finalized")
        if record.status != FINALIZED:
            return Delivery(NOT_FINALIZED)  # voided before delivery: nothing to charge
        if not record.invoice.billable:
            return Delivery(NOT_BILLABLE)  # on the hierarchy parent's consolidated invoice, which is delivered
        state = self._state.get(invoice_id)
        if state is not None and state.get("external_status") in ("FINALIZED", "PAID"):
            return Delivery(ALREADY_DELIVERED, state.get("invoice_id"))
        target = self._target(record)
        if target is None:
            return Delivery(NOT_CONFIGURED)
        collected = None if self._collected is None else self._collected(record)
        if collected is not None:  # paid through a threshold's STRIPE payment gate: nothing more to bill
            self._state.record(invoice_id, collected)
            return Delivery(ALREADY_DELIVERED, collected["invoice_id"])
        try:
            return self._to_stripe(record, target)
        except DeliveryRefused as exc:
            self.report_failure(invoice_id, exc.message)
            raise

    def _to_stripe(self, record, target) -> Delivery:
        draft = external_invoice(record.id, record.invoice)
        key = self._vault.get(target.secret_name)
        metadata = {"tally_invoice_id": record.id, "tally_customer_id": record.customer_id,
                    "tally_contract_id": record.contract_id}
        if record.regenerated_from_invoice_id is not None:
            replaced = self._invoices.get(record.regenerated_from_invoice_id)
            old = target if replaced is None else self._target(replaced)
            if old is not None:
                self._void_replaced(self._vault.get(old.secret_name), old.stripe_customer_id, record.regenerated_from_invoice_id)
        found = self._stripe.find_invoice(key, target.stripe_customer_id, record.id)
        if found is None:
            found = self._stripe.create_invoice(
                key, customer=target.stripe_customer_id, currency=draft.currency,
                collection_method=target.collection_method, days_until_due=None, metadata=metadata,
                description=(f"Tally invoice {record.id}, {format_rfc3339(record.invoice.starting_at)} to "
                             f"{format_rfc3339(record.invoice.ending_before)}"),
                idempotency_key=invoice_key(record.id),
            )
        if found.status == "draft":
            for line in draft.lines:
                if line.index not in found.line_indexes:
                    self._stripe.add_item(key, customer=target.stripe_customer_id, invoice=found.id,
                                          currency=draft.currency, line=line, metadata=metadata,
                                          idempotency_key=line_key(record.id, line.index))
            found = self._stripe.finalize(key, found.id, finalize_key(record.id))
        status = _EXTERNAL_STATUS.get(found.status, "FINALIZED")
        self._state.record(record.id, {
            "billing_provider_type": STRIPE, "invoice_id": found.id, "external_status": status,
            "invoiced_total": found.total, "billing_provider_error": None,
            "delivered_at": format_rfc3339(self._clock()),
        })
        logger.info("invoice %s delivered to Stripe as %s (%s)", record.id, found.id, status)
        return Delivery(DELIVERED, found.id)

    def void_at_provider(self, invoice_id: str) -> Delivery:
        """invoice.voided: void the invoice's Stripe invoice, if it has one (idempotent)."""
        record = self._invoices.get(invoice_id)
        if record is None:
            raise InvoiceNotDeliverable(f"invoice {invoice_id} is not finalized")
        if record.status == FINALIZED:
            return Delivery(NOT_VOIDED)
        target = self._target(record)
        if target is None:
            return Delivery(NOT_CONFIGURED)
        voided = self._void_replaced(self._vault.get(target.secret_name), target.stripe_customer_id, invoice_id)
        return Delivery(VOIDED, None if voided is None else voided.id)

    def _void_replaced(self, key: str, customer: str, voided_id: str):
        """The Stripe invoice of a voided Tally invoice, voided (found by its metadata, so even one
        whose delivery was never recorded), once; None if Stripe has none."""
        old = self._stripe.find_invoice(key, customer, voided_id)
        if old is None:
            return None
        if old.status in ("draft", "open"):
            old = self._stripe.void(key, old.id, void_key(voided_id))
        self._state.record(voided_id, {
            "billing_provider_type": STRIPE, "invoice_id": old.id, "external_status": _EXTERNAL_STATUS.get(old.status, "VOID"),
            "invoiced_total": old.total, "billing_provider_error": None, "delivered_at": format_rfc3339(self._clock()),
        })
        return old

    def report_failure(self, invoice_id: str, reason: str) -> bool:
        """Record the provider's error and publish invoice.billing_provider_error once; True if
        this call published it."""
        record = self._invoices.get(invoice_id)
        if record is None:
            return False
        self._state.record(invoice_id, {"billing_provider_type": STRIPE, "invoice_id": None,
                                        "external_status": "INVALID_REQUEST_ERROR", "billing_provider_error": reason})
        if not self._state.claim_error_publication(invoice_id, self._clock()):
            return False
        try:
            self._publisher.publish(
                self._invoices_topic(),
                envelope(f"{BILLING_PROVIDER_ERROR}:{invoice_id}", BILLING_PROVIDER_ERROR, {
                    "invoice_id": invoice_id, "customer_id": record.customer_id, "contract_id": record.contract_id,
                    "billing_provider": STRIPE, "billing_provider_error": reason,
                }),
                {"type": BILLING_PROVIDER_ERROR, "customer_id": record.customer_id},
            )
        except Exception:
            self._state.release_error_publication(invoice_id)
            raise
        return True


def announce_void(publisher: Publisher, topic_arn: str, invoice_id: str, customer_id: str) -> None:
    """Tell the delivery function that a finalized invoice was voided (its Stripe invoice is voided
    in turn). The id is stable: a repeated void is one message to consumers that deduplicate."""
    publisher.publish(topic_arn, envelope(f"{INVOICE_VOIDED}:{invoice_id}", INVOICE_VOIDED,
                                          {"invoice_id": invoice_id, "customer_id": customer_id}),
                      {"type": INVOICE_VOIDED, "customer_id": customer_id})
