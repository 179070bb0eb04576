"""Finalized invoices delivered through AWS, exactly once per invoice and method (issue 17):
metered to AWS Marketplace (aws_marketplace, direct_to_billing_provider), or sent to the SNS topic
(aws_sns) or SQS queue (aws_sqs) the customer's configuration names. The rules are in
billing/aws_delivery.py; the delivery function calls this when the invoice does not go to Stripe.

AWS Marketplace, step by step (the Stripe delivery's structure, DESIGN.md "Delivery to the
outside world"):
1. The invoice's `delivery#aws_marketplace` record says METERED (or SKIPPED): done.
2. Otherwise claim the record, conditionally, with everything the usage record will carry: the
   quantity (owed_cents), the AWS customer, product and dimension, and an hour slot of that AWS
   customer (claimed first, conditionally, so two invoices never share a timestamp). A racing or
   later attempt reads the claim back instead: it sends the same usage record.
3. BatchMeterUsage. AWS deduplicates an identical record, so the crash between AWS's answer and
   step 4 is resolved by sending the claimed record again: AWS answers Success with the same
   metering record and the customer is charged once. AWS offers no way to list what it holds, so
   once the claimed timestamp is 6 hours old (AWS refuses it) an unconfirmed claim is refused
   visibly (invoice.billing_provider_error) rather than metered again under a new timestamp.
4. Record METERED with AWS's metering record id, on the delivery record and as the invoice's
   external_invoice.

aws_sns / aws_sqs: the message is the invoice as GET /v1/customers/{id}/invoices/{invoice_id}
answers it, in Tally's {id, type, properties} envelope, with the id of the invoices topic's
invoice.finalized message. Sent, then recorded SENT: a crash between the two sends it again under
the same id (and, on a FIFO topic or queue, the same MessageDeduplicationId, which SNS and SQS
drop within 5 minutes); receivers deduplicate on the id, as for every Tally message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol

from tally.billing import exact_json
from tally.billing.aws_delivery import (
    AWS_MARKETPLACE,
    AWS_SNS,
    AWS_SQS,
    USAGE_FEE,
    check_message_size,
    deduplication_id,
    destination_settings,
    hour_slots,
    is_fifo,
    message_id,
    owed_cents,
    region_of,
    still_accepted,
)
from tally.billing.invoice_delivery import BILLING_PROVIDER_ERROR, DIRECT, DeliveryRefused, ProviderUnavailable
from tally.billing.messages import envelope
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.invoice_delivery import (
    ALREADY_DELIVERED,
    DELIVERED,
    NOT_BILLABLE,
    NOT_CONFIGURED,
    NOT_FINALIZED,
    Delivery,
    DeliveryState,
    InvoiceNotDeliverable,
    Publisher,
)
from tally.services.contract_billing_providers import configuration_in_force
from tally.services.invoice_records import FINALIZED, InvoiceStore

logger = logging.getLogger(__name__)

METERING, METERED, SKIPPED, SENT = "METERING", "METERED", "SKIPPED", "SENT"
DONE = (METERED, SKIPPED, SENT)
INVOICE_FINALIZED = "invoice.finalized"


class Records(Protocol):
    def get(self, invoice_id: str, method: str) -> dict | None: ...
    def claim(self, invoice_id: str, method: str, record: dict) -> dict: ...
    def save(self, invoice_id: str, method: str, record: dict) -> None: ...
    def claim_slot(self, slot: str, hour: str, invoice_id: str) -> bool: ...


class Providers(Protocol):
    def customer_configurations(self, customer_id: str, include_archived: bool = False) -> list[dict]: ...


@dataclass(frozen=True, slots=True)
class AwsTarget:
    method: str  # aws_marketplace (metered), aws_sns or aws_sqs
    billing_provider: str
    configuration: dict  # the customer's configuration
    method_configuration: dict  # its delivery method's (setUpBillingProvider)


class AwsInvoiceDelivery:
    def __init__(self, invoices: InvoiceStore, providers: Providers, delivery_methods: Callable[[str], dict | None],
                 records: Records, state: DeliveryState, aws, render: Callable[[object], dict],
                 publisher: Publisher, invoices_topic: Callable[[], str], clock: Callable[[], datetime],
                 contracts: Callable[[str], dict | None] | None = None) -> None:
        self._invoices = invoices
        self._providers = providers
        self._delivery_methods = delivery_methods  # delivery method id -> its document (a consistent read)
        self._records = records
        self._state = state  # the invoice's external_invoice (adapters/dynamo/billing_providers.py)
        self._aws = aws  # adapters/aws_destinations.AwsDestinations
        self._render = render  # a stored invoice -> its GET invoice JSON
        self._publisher = publisher
        self._invoices_topic = invoices_topic
        self._clock = clock
        self._contracts = contracts  # contract id -> its stored document (None: customers' defaults only)

    def target(self, record) -> AwsTarget | None:
        """Where the invoice goes through AWS, if it does: the configuration its contract names for
        its billing period (services/contract_billing_providers.py), else the customer's oldest
        active AWS configuration; the payer's, for an invoice paid by a hierarchy parent."""
        contract_id, customer_id = record.invoice.payer or (record.contract_id, record.customer_id)
        document = None if self._contracts is None or not contract_id else self._contracts(contract_id)
        named = configuration_in_force(document, record.period_start, record.finalized_at)
        configurations = self._providers.customer_configurations(customer_id)
        if named is not None:  # the contract's choice, or nothing (another provider's, or archived)
            configurations = [c for c in configurations if c["id"] == named]
        for config in configurations:
            kind, provider = config["delivery_method"], config["billing_provider"]
            if (provider, kind) == (AWS_MARKETPLACE, DIRECT) or kind in (AWS_SNS, AWS_SQS):
                method = self._delivery_methods(config["delivery_method_id"]) or {}
                method_kind = AWS_MARKETPLACE if kind == DIRECT else kind
                return AwsTarget(method_kind, provider, config["configuration"], method.get("configuration") or {})
        return None

    def deliver(self, invoice_id: str) -> Delivery:
        """Raises ProviderUnavailable (retry) or DeliveryRefused (permanent; already reported)."""
        record = self._invoices.get(invoice_id)
        if record is None:
            raise InvoiceNotDeliverable(f"invoice {invoice_id} is not finalized")
        if record.status != FINALIZED:
            return Delivery(NOT_FINALIZED)
        if not record.invoice.billable:
            return Delivery(NOT_BILLABLE)  # on a hierarchy parent's consolidated invoice, which is delivered
        target = self.target(record)
        if target is None:
            return Delivery(NOT_CONFIGURED)
        kept = self._records.get(invoice_id, target.method)
        if kept is not None and kept["state"] in DONE:
            return Delivery(ALREADY_DELIVERED, kept.get("external_id"))
        try:
            if target.method == AWS_MARKETPLACE:
                return self._meter(record, target)
            return self._send(record, target)
        except DeliveryRefused as exc:
            self.report_failure(invoice_id, exc.message, target)
            raise

    # -- AWS Marketplace ---------------------------------------------------------------------------
    def _meter(self, record, target: AwsTarget) -> Delivery:
        settings = target.configuration
        customer = ({"CustomerIdentifier": settings["aws_customer_id"]} if "aws_customer_id" in settings
                    else {"CustomerAWSAccountId": settings["aws_customer_account_id"]})
        claim = self._records.get(record.id, AWS_MARKETPLACE)
        if claim is None:
            claim = self._records.claim(record.id, AWS_MARKETPLACE, self._new_claim(record, target, customer))
        if claim["state"] in DONE:
            return Delivery(ALREADY_DELIVERED, claim.get("external_id"))
        done = self._confirm(record.id, claim, target.method_configuration)
        return self._done(record, done, done["quantity"])

    def _confirm(self, invoice_id: str, claim: dict, method: dict) -> dict:
        """Send the claimed usage record (again, after a crash: AWS keeps an identical record once)
        and save it METERED (SKIPPED when nothing is owed)."""
        if claim["state"] in DONE:
            return claim
        if claim["quantity"] == 0:
            done = claim | {"state": SKIPPED}
        else:
            timestamp = parse_rfc3339(claim["timestamp"])
            if not still_accepted(timestamp, self._clock()):
                raise DeliveryRefused(
                    f"the usage record claimed for {claim['timestamp']} ({claim['quantity']} {claim['dimension']}) by invoice "
                    f"{invoice_id} was never confirmed and AWS no longer takes that timestamp: check the customer's AWS "
                    "bill before metering it by hand")
            result = self._aws.meter(region=claim["region"], product_code=claim["product_code"], customer=claim["customer"],
                                     dimension=claim["dimension"], quantity=claim["quantity"], timestamp=timestamp,
                                     role_arn=method.get("aws_iam_role_arn"), external_id=method.get("aws_external_id"))
            if result.status != "Success":
                raise DeliveryRefused(f"AWS Marketplace answered {result.status} for the usage record of "
                                      f"{claim['timestamp']} ({claim['quantity']} {claim['dimension']})")
            done = claim | {"state": METERED, "external_id": result.metering_record_id}
        self._records.save(invoice_id, AWS_MARKETPLACE, done)
        return done

    def _new_claim(self, record, target: AwsTarget, customer: dict) -> dict:
        already = 0
        if record.regenerated_from_invoice_id is not None:  # the bill so far: what the voided invoice metered
            voided = self._records.get(record.regenerated_from_invoice_id, AWS_MARKETPLACE)
            if voided is not None:
                # A voided invoice is never delivered again, so its unconfirmed claim is confirmed
                # here (the identical record), or refused, before this one is priced against it.
                voided = self._confirm(record.regenerated_from_invoice_id, voided, target.method_configuration)
                already = voided["already_metered"] + voided["quantity"]
        quantity = owed_cents(record.id, record.invoice, already)
        settings = target.configuration
        claim = {"state": METERING, "quantity": quantity, "dimension": USAGE_FEE, "customer": customer,
                 "product_code": settings["aws_product_code"], "region": settings["aws_region"],
                 "already_metered": already, "timestamp": None, "external_id": None}
        if quantity == 0:
            return claim  # nothing to meter: no hour slot taken
        slot = f"{settings['aws_product_code']}#{next(iter(customer.values()))}#{USAGE_FEE}"
        for hour in hour_slots(self._clock()):
            if self._records.claim_slot(slot, format_rfc3339(hour), record.id):
                return claim | {"timestamp": format_rfc3339(hour)}
        raise ProviderUnavailable(f"AWS customer {next(iter(customer.values()))} has a usage record in each of the "
                                  "last 6 hours; retrying in the next hour")

    # -- SNS and SQS -------------------------------------------------------------------------------
    def _send(self, record, target: AwsTarget) -> Delivery:
        destination = next(iter(destination_settings(target.method, target.configuration, target.method_configuration,
                                                     "configuration").values()))
        message = envelope(message_id(record.id), INVOICE_FINALIZED, {
            "invoice_id": record.id, "customer_id": record.customer_id, "contract_id": record.contract_id,
            "billing_provider": target.billing_provider, "delivery_method": target.method,
            "billing_provider_configuration": target.configuration, "invoice": self._render(record),
        })
        body = exact_json.dumps(message)
        check_message_size(record.id, body)
        attributes = {"type": INVOICE_FINALIZED, "customer_id": record.customer_id, "invoice_id": record.id}
        fifo = is_fifo(destination)
        group, dedup = (record.customer_id, deduplication_id(record.id)) if fifo else (None, None)
        region = region_of(destination)
        if target.method == AWS_SNS:
            sent = self._aws.publish(destination, region, body, attributes, group, dedup)
        else:
            sent = self._aws.send(destination, region, body, attributes, group, dedup)
        claim = {"state": SENT, "destination": destination, "message_id": message["id"], "external_id": sent}
        self._records.save(record.id, target.method, claim)
        return self._done(record, claim, None, provider=target.billing_provider)

    # -- shared ------------------------------------------------------------------------------------
    def _done(self, record, claim: dict, total: int | None, provider: str = AWS_MARKETPLACE) -> Delivery:
        status = {METERED: "FINALIZED", SKIPPED: "SKIPPED", SENT: "SENT"}[claim["state"]]
        self._state.record(record.id, {
            "billing_provider_type": provider, "invoice_id": claim.get("external_id"), "external_status": status,
            "invoiced_total": total, "billing_provider_error": None, "delivered_at": format_rfc3339(self._clock()),
        })
        logger.info("invoice %s delivered (%s, %s)", record.id, status, claim.get("destination", AWS_MARKETPLACE))
        return Delivery(DELIVERED, claim.get("external_id"))

    def report_failure(self, invoice_id: str, reason: str, target: AwsTarget | None = None) -> bool:
        """Record the error and publish invoice.billing_provider_error once; True if this call published it."""
        record = self._invoices.get(invoice_id)
        if record is None:
            return False
        target = target or self.target(record)
        provider = AWS_MARKETPLACE if target is None else target.billing_provider
        self._state.record(invoice_id, {"billing_provider_type": provider, "invoice_id": None,
                                        "external_status": "INVALID_REQUEST_ERROR", "billing_provider_error": reason})
        if not self._state.claim_error_publication(invoice_id, self._clock()):
            return False
        try:
            self._publisher.publish(
                self._invoices_topic(),
                envelope(f"{BILLING_PROVIDER_ERROR}:{invoice_id}", BILLING_PROVIDER_ERROR, {
                    "invoice_id": invoice_id, "customer_id": record.customer_id, "contract_id": record.contract_id,
                    "billing_provider": provider, "delivery_method": None if target is None else target.method,
                    "billing_provider_error": reason,
                }),
                {"type": BILLING_PROVIDER_ERROR, "customer_id": record.customer_id},
            )
        except Exception:
            self._state.release_error_publication(invoice_id)
            raise
        return True
