"""`tally local tail alerts|invoices`: subscribe a fresh SQS queue to a Tally topic and print each
message as it arrives, the way any subscriber would receive it. Works against the local stack's
AWS endpoint (or a real account, without --endpoint-url)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

from tally.billing import exact_json

TOPIC_OUTPUTS = {"alerts": "AlertsTopicArn", "invoices": "InvoicesTopicArn"}


class TopicTail:
    def __init__(self, topic: str, stack: str, endpoint_url: str | None, filter_policy: dict | None = None) -> None:
        from infra.cli.aws import aws_session, stack_output

        if topic not in TOPIC_OUTPUTS:
            raise ValueError(f"topic must be one of {sorted(TOPIC_OUTPUTS)}")
        session = aws_session(endpoint_url)
        self.sns = session.client("sns", endpoint_url=endpoint_url)
        self.sqs = session.client("sqs", endpoint_url=endpoint_url)
        self.topic_arn = stack_output(session, stack, TOPIC_OUTPUTS[topic], endpoint_url)
        self.queue_url = self.sqs.create_queue(QueueName=f"tally-tail-{topic}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"RawMessageDelivery": "true"}
        if filter_policy:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
        self.subscription_arn = self.sns.subscribe(
            TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes, ReturnSubscriptionArn=True
        )["SubscriptionArn"]

    def poll(self, wait_seconds: int = 2) -> list[dict[str, Any]]:
        """Messages delivered since the last poll, as {id, type, properties, attributes}."""
        batch = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        if batch:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        return [
            {
                **exact_json.loads(m["Body"]),  # amounts stay exact
                "attributes": {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()},
            }
            for m in batch
        ]

    def follow(self, show: Callable[[dict], None], stopped: Callable[[], bool]) -> None:
        while not stopped():
            for message in self.poll():
                show(message)

    def close(self) -> None:
        self.sns.unsubscribe(SubscriptionArn=self.subscription_arn)
        self.sqs.delete_queue(QueueUrl=self.queue_url)
