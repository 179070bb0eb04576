"""Invoices delivered through AWS (issue 17): metered to AWS Marketplace, or sent to a customer's
SNS topic or SQS queue. Pure: the rules and the keys; adapters/aws_destinations.py speaks boto3.

AWS Marketplace, as Metronome documents it ("Invoice with AWS"): the listing has one usage
dimension, `usage_fee`, priced at $0.01 a unit, and Tally meters what the customer owes in cents.
Pricing stays in Tally (tiers, credits, commits), and the customer's AWS bill shows the total.
Metronome meters hourly the difference between the bill so far and what it already metered; Tally
meters once per finalized invoice, the invoice's total, and for a regenerated invoice the
difference from what its voided invoice metered (AWS cannot lower a bill: a smaller total is
refused, visibly, never metered as a negative).

Whole units. AWS takes an integer quantity (0 to 2^31-1). An invoice total that is not a whole
number of cents is refused (DeliveryRefused: invoice.billing_provider_error, the message parked),
never rounded: Tally does not decide alone which way a fraction of a cent goes on an AWS bill.
Round it where the price is set (a product's quantity rounding, or whole-cent prices).

One record per (AWS customer, product, dimension, hour). AWS keeps the first record of a
(customer, dimension, timestamp) and answers DuplicateRecord to a different quantity under the
same key, and it accepts timestamps up to 6 hours old. So each invoice claims an hour slot of its
AWS customer (the current hour, else one of the 5 before it); the claim, kept on the delivery
record, makes a retry send the *same* record, which AWS deduplicates.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

from tally.billing.errors import InvalidInput
from tally.billing.invoice_delivery import CURRENCIES, DeliveryRefused
from tally.billing.pricing import Invoice

AWS_MARKETPLACE = "aws_marketplace"
AWS_SNS, AWS_SQS = "aws_sns", "aws_sqs"
USAGE_FEE = "usage_fee"  # Metronome's dimension: its API identifier must be usage_fee, $0.01 a unit
MAX_QUANTITY = 2**31 - 1  # AWS's Quantity: an Integer
SLOT_HOURS = 6  # AWS refuses records 6 hours or more after the event
MAX_MESSAGE_BYTES = 256 * 1024  # SNS and SQS

AWS_REGIONS = (
    "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1",
    "ap-southeast-2", "ca-central-1", "cn-north-1", "cn-northwest-1", "eu-central-1", "eu-north-1", "eu-south-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "me-south-1", "sa-east-1", "us-east-1", "us-east-2", "us-gov-east-1",
    "us-gov-west-1", "us-west-1", "us-west-2",
)  # metronome-sdk's aws_region values
_TOPIC_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256}(?:\.fifo)?)$")
# A queue URL: SQS's (https://sqs.<region>.amazonaws.com/<account>/<name>), or an endpoint's that
# serves the SQS API (the local stack's moto: http://127.0.0.1:<port>/<account>/<name>).
_QUEUE_URL = re.compile(r"^https?://([A-Za-z0-9.-]{1,253}(?::\d{1,5})?)/(\d{12})/([A-Za-z0-9_-]{1,80}(?:\.fifo)?)$")
_SQS_HOST = re.compile(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def owed_cents(tally_invoice_id: str, invoice: Invoice, already_metered: int = 0) -> int:
    """The usage_fee quantity of a finalized invoice: its total in cents, less what the invoice it
    regenerates already metered. Raises DeliveryRefused rather than round or go negative."""
    currency = CURRENCIES.get(invoice.credit_type.id)
    if currency is None:
        raise DeliveryRefused(f"invoice {tally_invoice_id} is in {invoice.credit_type.name}; AWS Marketplace "
                              "is billed in USD cents")
    cents = invoice.total * currency[1]
    if cents != cents.to_integral_value():
        raise DeliveryRefused(f"invoice {tally_invoice_id} totals {cents} cents, not a whole number of cents: "
                              "AWS Marketplace meters whole units and Tally does not round them")
    owed = int(cents) - already_metered
    if owed < 0:
        raise DeliveryRefused(f"invoice {tally_invoice_id} totals {cents} cents, less than the {already_metered} "
                              "its voided invoice metered: AWS Marketplace cannot lower a bill; refund the "
                              f"{-owed} cents through AWS")
    if owed > MAX_QUANTITY:
        raise DeliveryRefused(f"invoice {tally_invoice_id} owes {owed} cents, over AWS Marketplace's largest "
                              f"quantity ({MAX_QUANTITY})")
    return owed


def hour_slots(now: datetime) -> list[datetime]:
    """The metering timestamps an invoice may claim, newest first: the current hour and the 5
    before it (each still inside AWS's 6 hours when sent now)."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    return [hour - timedelta(hours=back) for back in range(SLOT_HOURS)]


def still_accepted(timestamp: datetime, now: datetime) -> bool:
    return now - timestamp < timedelta(hours=SLOT_HOURS)


def message_id(tally_invoice_id: str) -> str:
    """The id of the invoice's message: the one the invoices topic's invoice.finalized carries, so
    a consumer deduplicates both the same way."""
    return f"invoice.finalized:{tally_invoice_id}"


def deduplication_id(tally_invoice_id: str) -> str:
    """A FIFO queue or topic's MessageDeduplicationId (at most 128 characters)."""
    return hashlib.sha256(message_id(tally_invoice_id).encode()).hexdigest()


def topic_arn(value, field: str) -> str:
    if not isinstance(value, str) or not _TOPIC_ARN.match(value):
        raise InvalidInput(field, "must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
    return value


def queue_url(value, field: str) -> str:
    if not isinstance(value, str) or not _QUEUE_URL.match(value):
        raise InvalidInput(field, "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)")
    return value


def region_of(destination: str) -> str | None:
    """The region of a topic ARN or an SQS queue URL; None for another endpoint's queue URL (the
    client's own region then)."""
    topic = _TOPIC_ARN.match(destination)
    if topic is not None:
        return topic.group(1)
    queue = _QUEUE_URL.match(destination)
    if queue is None:
        raise ValueError(f"not an SNS topic ARN or SQS queue URL: {destination}")
    host = _SQS_HOST.match(queue.group(1))
    return None if host is None else host.group(1)


def is_fifo(destination: str) -> bool:
    return destination.endswith(".fifo")


def check_message_size(tally_invoice_id: str, body: str) -> None:
    size = len(body.encode())
    if size > MAX_MESSAGE_BYTES:
        raise DeliveryRefused(f"invoice {tally_invoice_id}'s message is {size} bytes, over the 262144 SNS and "
                              "SQS take")


def marketplace_customer_settings(configuration: dict, field: str, required: bool) -> dict:
    """An aws_marketplace customer configuration (metronome-sdk's billing config fields):
    aws_customer_id or aws_customer_account_id, aws_product_code, aws_region, and optionally
    aws_is_subscription_product and aws_expiration_date. `required`: metered directly by Tally."""
    known = {"aws_customer_id", "aws_customer_account_id", "aws_product_code", "aws_region",
             "aws_is_subscription_product", "aws_expiration_date"}
    unknown = sorted(set(configuration) - known)
    if unknown:
        raise InvalidInput(f"{field}.{unknown[0]}", f"is not an AWS Marketplace setting ({', '.join(sorted(known))})")
    settings: dict = {}
    for name, limit in (("aws_customer_id", 255), ("aws_customer_account_id", 12), ("aws_product_code", 255)):
        value = configuration.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip() or len(value) > limit:
                raise InvalidInput(f"{field}.{name}", f"must be a non-empty string of at most {limit} characters")
            settings[name] = value
    if "aws_customer_account_id" in settings and not re.fullmatch(r"\d{12}", settings["aws_customer_account_id"]):
        raise InvalidInput(f"{field}.aws_customer_account_id", "must be a 12-digit AWS account id")
    if "aws_customer_id" in settings and "aws_customer_account_id" in settings:
        raise InvalidInput(f"{field}.aws_customer_account_id", "give aws_customer_id or aws_customer_account_id, not both "
                           "(AWS takes one customer identifier)")
    region = configuration.get("aws_region")
    if region is not None:
        if region not in AWS_REGIONS:
            raise InvalidInput(f"{field}.aws_region", "must be an AWS region metronome-sdk lists (e.g. us-east-1)")
        settings["aws_region"] = region
    subscription = configuration.get("aws_is_subscription_product")
    if subscription is not None:
        if not isinstance(subscription, bool):
            raise InvalidInput(f"{field}.aws_is_subscription_product", "must be a boolean")
        settings["aws_is_subscription_product"] = subscription
    if configuration.get("aws_expiration_date") is not None:
        settings["aws_expiration_date"] = _text(configuration["aws_expiration_date"], f"{field}.aws_expiration_date")
    if required:
        if "aws_customer_id" not in settings and "aws_customer_account_id" not in settings:
            raise InvalidInput(f"{field}.aws_customer_id", "is required (or aws_customer_account_id) to meter to AWS Marketplace")
        for name in ("aws_product_code", "aws_region"):
            if name not in settings:
                raise InvalidInput(f"{field}.{name}", "is required to meter to AWS Marketplace")
    return settings


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InvalidInput(field, "must be a non-empty string of at most 255 characters")
    return value


def destination_settings(kind: str, configuration: dict, defaults: dict, field: str) -> dict:
    """The topic (aws_sns) or queue (aws_sqs) a customer configuration names, else its delivery
    method's (setUpBillingProvider) configuration: {aws_sns_topic_arn} or {aws_sqs_queue_url}."""
    name = "aws_sns_topic_arn" if kind == AWS_SNS else "aws_sqs_queue_url"
    value = configuration.get(name, defaults.get(name))
    if value is None:
        raise InvalidInput(f"{field}.{name}", f"is required for {kind} delivery (here or in the delivery method's configuration)")
    check = topic_arn if kind == AWS_SNS else queue_url
    return {name: check(value, f"{field}.{name}")}


_ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")


def method_settings(provider: str, kind: str, configuration: dict) -> dict:
    """An account-level AWS delivery method's configuration (setUpBillingProvider): the seller
    account's role to assume (aws_iam_role_arn, aws_external_id; Metronome's fields; without them
    Tally's own role meters), and for aws_sns/aws_sqs a default topic or queue."""
    known = {"aws_iam_role_arn", "aws_external_id"}
    if kind == AWS_SNS:
        known.add("aws_sns_topic_arn")
    elif kind == AWS_SQS:
        known.add("aws_sqs_queue_url")
    unknown = sorted(set(configuration) - known)
    if unknown:
        raise InvalidInput(f"configuration.{unknown[0]}", f"is not a {provider} {kind} setting ({', '.join(sorted(known))})")
    settings = dict(configuration)
    role = settings.get("aws_iam_role_arn")
    if role is not None and (not isinstance(role, str) or not _ROLE_ARN.match(role)):
        raise InvalidInput("configuration.aws_iam_role_arn", "must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    if settings.get("aws_external_id") is not None:
        if role is None:
            raise InvalidInput("configuration.aws_external_id", "is used only with aws_iam_role_arn")
        external = settings["aws_external_id"]
        if not isinstance(external, str) or not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", external):
            raise InvalidInput("configuration.aws_external_id", "must be 2 to 1224 characters of [A-Za-z0-9+=,.@:/_-]")
    if "aws_sns_topic_arn" in settings:
        topic_arn(settings["aws_sns_topic_arn"], "configuration.aws_sns_topic_arn")
    if "aws_sqs_queue_url" in settings:
        queue_url(settings["aws_sqs_queue_url"], "configuration.aws_sqs_queue_url")
    return settings


def customer_settings(provider: str, kind: str, configuration: dict, method_configuration: dict, field: str) -> dict:
    """A customer configuration delivered through AWS: the marketplace fields (required when Tally
    meters directly; passed along to a topic or queue otherwise) and, for aws_sns/aws_sqs, the
    topic or queue (here, else the delivery method's default, read when delivering)."""
    rest, named = dict(configuration), {}
    if kind in (AWS_SNS, AWS_SQS):
        name = "aws_sns_topic_arn" if kind == AWS_SNS else "aws_sqs_queue_url"
        if name in rest:
            named = {name: rest.pop(name)}
        destination_settings(kind, named, method_configuration, field)
    if provider == AWS_MARKETPLACE:
        rest = marketplace_customer_settings(rest, field, required=kind not in (AWS_SNS, AWS_SQS))
    return rest | named
