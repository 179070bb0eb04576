"""AWS Marketplace metering (meteringmarketplace BatchMeterUsage) and a customer's SNS topic or
SQS queue, through boto3: the only module that calls them.

Errors become ProviderUnavailable (retry: throttling, AWS's 5xx, a record AWS left unprocessed)
or DeliveryRefused (permanent: a bad product code, customer or dimension, a timestamp AWS no
longer accepts, no permission on the customer's topic or queue)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tally.billing.invoice_delivery import DeliveryRefused, ProviderUnavailable

_RETRYABLE = {"ThrottlingException", "Throttling", "InternalServiceErrorException", "InternalError",
              "InternalFailure", "ServiceUnavailable", "KMSThrottlingException", "RequestThrottled"}
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})


@dataclass(frozen=True, slots=True)
class MeteringResult:
    status: str  # AWS's: Success, CustomerNotSubscribed, DuplicateRecord
    metering_record_id: str | None


class AwsDestinations:
    """`endpoint_url`: None for AWS itself; the local stack's (moto) when set."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self._endpoint_url = endpoint_url
        self._clients: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, region: str | None, role_arn: str | None = None, external_id: str | None = None):
        key = (service, region, role_arn, external_id)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        options: dict[str, Any] = {"config": _CONFIG}
        if region:  # else the function's own region
            options["region_name"] = region
        if self._endpoint_url:
            options["endpoint_url"] = self._endpoint_url
        if role_arn:  # the seller account's role (setUpBillingProvider's aws_iam_role_arn), as Metronome assumes it
            assume = {"RoleArn": role_arn, "RoleSessionName": "tally-invoice-delivery"}
            if external_id:
                assume["ExternalId"] = external_id
            sts_options = {k: v for k, v in options.items() if k != "config"}
            credentials = _call(lambda: boto3.client("sts", **sts_options).assume_role(**assume))["Credentials"]
            options |= {"aws_access_key_id": credentials["AccessKeyId"],
                        "aws_secret_access_key": credentials["SecretAccessKey"],
                        "aws_session_token": credentials["SessionToken"]}
            return boto3.client(service, **options)  # not kept: the credentials expire
        client = boto3.client(service, **options)
        with self._lock:
            self._clients[key] = client
        return client

    def meter(self, *, region: str, product_code: str, customer: dict[str, str], dimension: str, quantity: int,
              timestamp: datetime, role_arn: str | None = None, external_id: str | None = None) -> MeteringResult:
        """One usage record. `customer`: {"CustomerIdentifier": ...} or {"CustomerAWSAccountId": ...}."""
        client = self._client("meteringmarketplace", region, role_arn, external_id)
        record = {"Timestamp": timestamp, "Dimension": dimension, "Quantity": quantity} | customer
        answer = _call(lambda: client.batch_meter_usage(UsageRecords=[record], ProductCode=product_code))
        if answer.get("UnprocessedRecords"):
            raise ProviderUnavailable("AWS Marketplace left the usage record unprocessed; retrying")
        (result,) = answer["Results"]
        return MeteringResult(result["Status"], result.get("MeteringRecordId"))

    def publish(self, topic_arn: str, region: str, body: str, attributes: dict[str, str],
                group_id: str | None, deduplication_id: str | None) -> str:
        client = self._client("sns", region)
        request: dict[str, Any] = {"TopicArn": topic_arn, "Message": body, "MessageAttributes": _attributes(attributes)}
        if group_id is not None:
            request |= {"MessageGroupId": group_id, "MessageDeduplicationId": deduplication_id}
        return _call(lambda: client.publish(**request))["MessageId"]

    def send(self, queue_url: str, region: str | None, body: str, attributes: dict[str, str],
             group_id: str | None, deduplication_id: str | None) -> str:
        client = self._client("sqs", region)
        request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body, "MessageAttributes": _attributes(attributes)}
        if group_id is not None:
            request |= {"MessageGroupId": group_id, "MessageDeduplicationId": deduplication_id}
        return _call(lambda: client.send_message(**request))["MessageId"]


def _attributes(attributes: dict[str, str]) -> dict:
    return {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}


def _call(request):
    try:
        return request()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _RETRYABLE or status >= 500:
            raise ProviderUnavailable(f"AWS answered {code or status}; retrying") from exc
        message = exc.response.get("Error", {}).get("Message", "")
        raise DeliveryRefused(f"AWS refused the request ({code}): {message}"[:500]) from exc
    except BotoCoreError as exc:
        raise ProviderUnavailable(f"AWS did not answer: {type(exc).__name__}") from exc
