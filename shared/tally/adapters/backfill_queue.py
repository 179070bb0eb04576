"""The backfill queue on SQS: one message per (metric, segment), read by functions/backfill."""

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


def segment_message(metric_id: str, segment: int) -> str:
    return json.dumps({"metric_id": metric_id, "segment": segment})


class SqsBackfillQueue:
    def __init__(self, queue_url: Callable[[], str], client=None) -> None:
        self._queue_url = queue_url  # resolved on first send: a metric read never needs it
        self._client = client

    def send(self, metric_id: str, segments: list[int], delay_seconds: int) -> None:
        client = self._client or sqs_client()
        delay = min(900, max(0, delay_seconds))  # SQS's range
        for start in range(0, len(segments), SQS_BATCH):
            entries = [
                {"Id": str(i), "MessageBody": segment_message(metric_id, s), "DelaySeconds": delay}
                for i, s in enumerate(segments[start : start + SQS_BATCH])
            ]
            try:
                answer = client.send_message_batch(QueueUrl=self._queue_url(), Entries=entries)
            except ClientError as exc:
                raise StoreUnavailable("the backfill queue is unavailable; retry") from exc
            if answer.get("Failed"):
                raise StoreUnavailable("the backfill queue refused a message; retry")
