"""SQS -> Lambda for the local stack, as Lambda's SQS event source mapping does it: receive a
batch, invoke the function with an SQS event, delete what succeeded (all of it, or all but the
`batchItemFailures` the function reports). A message not deleted comes back after the queue's
visibility timeout, and moto moves it to the DLQ past the redrive policy's maxReceiveCount.
(The runtime drops AWS::Lambda::EventSourceMapping from the template: moto would need docker.)"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from infra.local.lambdas import FunctionError, LocalLambdas

logger = logging.getLogger("infra.local.queues")


@dataclass(frozen=True)
class QueueMapping:
    function: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    report_item_failures: bool = True


class QueuePump:
    def __init__(self, lambdas: LocalLambdas, sqs_client, region: str) -> None:
        self._lambdas = lambdas
        self._sqs = sqs_client
        self._region = region
        self.mappings: list[QueueMapping] = []
        self._stopped = threading.Event()

    def add_mapping(self, mapping: QueueMapping) -> None:
        self.mappings.append(mapping)

    def drain(self, wait_seconds: int = 0) -> int:
        """One pass over every queue until none hands out a message; how many were delivered."""
        delivered = 0
        for mapping in self.mappings:
            while True:
                count = self._poll(mapping, wait_seconds)
                delivered += count
                if count == 0:
                    break
        return delivered

    def drain_function(self, function_part: str, wait_seconds: int = 0) -> int:
        """Like drain, for the queues of functions whose name contains `function_part` only; with
        `wait_seconds`, a first empty poll waits that long for a (delayed) message to show up."""
        delivered = 0
        for mapping in self.mappings:
            if function_part in mapping.function:
                wait = wait_seconds
                while (count := self._poll(mapping, wait)) > 0:
                    delivered += count
                    wait = 0
        return delivered

    def _poll(self, mapping: QueueMapping, wait_seconds: int) -> int:
        received = self._sqs.receive_message(
            QueueUrl=mapping.queue_url, MaxNumberOfMessages=min(mapping.batch_size, 10),
            WaitTimeSeconds=wait_seconds, AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return 0
        event = {"Records": [self._record(mapping, m) for m in received]}
        failed: set[str] = set()
        try:
            answer = self._lambdas.invoke(mapping.function, event) or {}
            if mapping.report_item_failures:
                failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        except FunctionError as exc:
            logger.warning("%s failed on a batch from %s: %s", mapping.function, mapping.queue_url,
                           exc.payload.get("errorMessage"))
            failed = {m["MessageId"] for m in received}
        done = [m for m in received if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=mapping.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(received)

    def _record(self, mapping: QueueMapping, message: dict) -> dict:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.queue_arn,
            "awsRegion": self._region,
        }

    def run_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                if self.drain(wait_seconds=0) == 0:
                    self._stopped.wait(0.5)
            except Exception:  # noqa: BLE001 - the pump outlives one bad poll
                logger.exception("queue pump poll failed")
                self._stopped.wait(1.0)

    def stop(self) -> None:
        self._stopped.set()
