"""Parsing DynamoDB stream records of the events table into what the aggregator folds."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from tally.adapters.dynamo.events import ORIGINAL, stored_event
from tally.billing.counters import StreamedEvent, sequence_key


class NotACountableRecord(Exception):
    pass


def streamed_event(record: dict) -> StreamedEvent | None:
    """The event of an INSERT of an original receipt; None for records that never count
    (duplicate receipts, TTL removals). Raises on a record that cannot be read."""
    dynamodb = record["dynamodb"]
    if record.get("eventName") != "INSERT" or dynamodb["Keys"]["sk"]["S"] != ORIGINAL:
        return None
    image = dynamodb.get("NewImage")
    if not image:
        raise NotACountableRecord("INSERT record without NewImage: the stream view type must include new images")
    stored = stored_event(image)
    return StreamedEvent(
        sequence_key(dynamodb["SequenceNumber"]), stored.event, stored.ingested_at, created_at(dynamodb)
    )


def created_at(dynamodb: dict) -> int | None:
    """The record's ApproximateCreationDateTime (epoch seconds, maybe fractional) rounded up; None
    when absent or unreadable: the counters' marks then carry no time and are never pruned."""
    value = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return math.ceil(number) if number.is_finite() and number > 0 else None


class ShardResolver:
    """Finds the stream shard a batch came from.

    Lambda's DynamoDB stream events do not name the shard, yet the counters' high-water marks must be
    per shard (shards are processed in parallel, each in order). A shard's SequenceNumberRange is
    known from DescribeStream; when ranges are ambiguous, GetShardIterator(AT_SEQUENCE_NUMBER) only
    succeeds on the shard that holds the record. Answers are cached for the life of the container.
    """

    def __init__(self, client=None) -> None:
        self._client = client
        self._shards: dict[str, list[tuple[str, int, int | None]]] = {}

    def _streams(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("dynamodbstreams", config=Config(retries={"mode": "standard"}))
        return self._client

    def _describe(self, stream_arn: str) -> list[tuple[str, int, int | None]]:
        shards, start = [], None
        while True:
            kwargs = {"StreamArn": stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            description = self._streams().describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                span = shard.get("SequenceNumberRange", {})
                end = span.get("EndingSequenceNumber")
                shards.append((shard["ShardId"], int(span.get("StartingSequenceNumber", "0")), int(end) if end else None))
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        self._shards[stream_arn] = shards
        return shards

    def shard_for(self, stream_arn: str, sequence_number: str) -> str:
        seq = int(sequence_number)
        for refresh in (False, True):
            shards = self._describe(stream_arn) if refresh or stream_arn not in self._shards else self._shards[stream_arn]
            candidates = [s for s in shards if s[1] <= seq and (s[2] is None or seq <= s[2])]
            if len(candidates) == 1:
                return candidates[0][0]
            for shard_id, _, _ in candidates:
                try:
                    self._streams().get_shard_iterator(
                        StreamArn=stream_arn,
                        ShardId=shard_id,
                        ShardIteratorType="AT_SEQUENCE_NUMBER",
                        SequenceNumber=sequence_number,
                    )
                except Exception:  # noqa: BLE001 - any refusal means "not this shard"
                    continue
                return shard_id
        raise LookupError(f"no shard of {stream_arn} holds sequence number {sequence_number}")
