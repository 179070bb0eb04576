"""The backfill queue on SQS, read by functions/backfill: a job's start (`{"metric_id"}`), one
message per scan segment (`{"metric_id": <the scan's leader>, "segment"}`), and the sweep's
schedule events, which EventBridge puts there itself."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Callable

import boto3
from botocore.exceptions import ClientError

from tally.services.ports import StoreUnavailable

SQS_BATCH = 10  # SendMessageBatch's most entries


@lru_cache(maxsize=1)
def sqs_client():
    return boto3.client("sqs")


def segment_message(scan: str, segment: int) -> str:
    return json.dumps({"metric_id": scan, "segment": segment})


def start_message(metric_id: str) -> str:
    return json.dumps({"metric_id": metric_id})


class SqsBackfillQueue:
    def __init__(self, queue_url: Callable[[], str], client=None) -> None:
        self._queue_url = queue_url  # resolved on first send: a metric read never needs it
        self._client = client

    def send(self, scan: str, segments: list[int], delay_seconds: int) -> None:
        self._send([segment_message(scan, s) for s in segments], delay_seconds)

    def start(self, metric_id: str, delay_seconds: int) -> None:
        self._send([start_message(metric_id)], delay_seconds)

    def _send(self, bodies: list[str], delay_seconds: int) -> None:
        client = self._client or sqs_client()
        delay = min(900, max(0, delay_seconds))  # SQS's range
        for start in range(0, len(bodies), SQS_BATCH):
            entries = [
                {"Id": str(i), "MessageBody": body, "DelaySeconds": delay}
                for i, body in enumerate(bodies[start : start + SQS_BATCH])
            ]
            try:
                answer = client.send_message_batch(QueueUrl=self._queue_url(), Entries=entries)
            except ClientError as exc:
                raise StoreUnavailable("the backfill queue is unavailable; retry") from exc
            if answer.get("Failed"):
                raise StoreUnavailable("the backfill queue refused a message; retry")
