"""invoice.finalized (SQS, subscribed to the invoices topic with raw delivery) -> the customer's
billing provider, exactly once (tally.services.invoice_delivery; AWS Marketplace, SNS and SQS:
tally.services.aws_invoice_delivery); invoice.voided -> its provider invoice voided;
payment_gate.threshold_reached of a STRIPE payment gate (from the alerts topic) -> the crossing
charged through Stripe and settled once (tally.services.threshold_payments).

A message that fails is reported in `batchItemFailures`, so SQS hands it over again after its
visibility timeout; after MAX_RECEIVES it is parked in the DLQ by the queue's redrive policy. On
that last attempt a still-unavailable provider is reported as invoice.billing_provider_error; a
permanent refusal is reported at once (and retried only to park it)."""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.billing.invoice_delivery import ProviderUnavailable
from tally.billing.thresholds import THRESHOLD_REACHED
from tally.runtime import freeze_when_warm
from tally.services.invoice_delivery import INVOICE_VOIDED, NOT_CONFIGURED
from tally.settings import get_settings

logger = Logger(service="tally-deliver-invoices")
# Every record failing is still an answer (all of them in batchItemFailures), not an exception.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_record(record: SQSRecord) -> str:
    message = json.loads(record.body)
    if message.get("type") == THRESHOLD_REACHED:
        return charge_threshold(message)
    if message.get("type") not in ("invoice.finalized", INVOICE_VOIDED):
        return "ignored"
    invoice_id = str(message["properties"]["invoice_id"])
    service = wiring.invoice_delivery_service()
    try:
        if message["type"] == INVOICE_VOIDED:
            delivery = service.void_at_provider(invoice_id)
        else:
            delivery = service.deliver(invoice_id)
            if delivery.outcome == NOT_CONFIGURED:  # not Stripe: AWS Marketplace, SNS or SQS, if configured
                service = wiring.aws_invoice_delivery_service()
                delivery = service.deliver(invoice_id)
    except ProviderUnavailable as exc:
        receives = int(record.attributes.approximate_receive_count or 1)
        if receives >= get_settings().delivery_max_receives:
            service.report_failure(invoice_id, exc.message)  # the last attempt: it goes to the DLQ now
        raise
    logger.info("invoice delivery", extra={"invoice_id": invoice_id, "outcome": delivery.outcome,
                                           "external_invoice_id": delivery.external_invoice_id})
    return delivery.outcome


def charge_threshold(message: dict) -> str:
    """A STRIPE payment gate's crossing, charged and settled once (tally.services.threshold_payments).
    Stripe unavailable: retried, then parked in the DLQ with the crossing still waiting for its
    payment (redriven, it resumes from what Stripe holds)."""
    properties = message["properties"]
    if properties.get("payment_gate_type") != "STRIPE":
        return "ignored"
    payment = wiring.threshold_payment_service().charge(str(properties["workflow_id"]))
    logger.info("threshold payment", extra={"workflow_id": properties["workflow_id"], "outcome": payment.outcome,
                                            "stripe_id": payment.stripe_id})
    return payment.outcome


@freeze_when_warm
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=deliver_record, processor=processor, context=context)
