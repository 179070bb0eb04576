"""Backfill jobs in the billing table, and the events table read as parallel scan segments.

A job is one item, pk `backfill`, sk the metric id. Each segment n keeps flat attributes: `p<n>`
pages finished, `c<n>` the cursor after them, `e<n>` the claimed page's end key while it is applied,
`d<n>` once done. Every change is one conditional UpdateItem on that item (services/backfill.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.events import ORIGINAL, stored_event
from tally.adapters.dynamo.reads import batch_get
from tally.billing.backfill import SEGMENT_END, BackfillJob, SegmentCheckpoint
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.ports import ScanPage, StoreUnavailable

JOBS = "backfill"
# Items read per Scan call while a claimed page is read again up to its end key.
REREAD_LIMIT = 1000


def _key(metric_id: str) -> dict:
    return {"pk": {"S": JOBS}, "sk": {"S": metric_id}}


def _job(item: dict) -> BackfillJob:
    segments = int(item["segments"]["N"])
    checkpoints = {}
    for n in range(segments):
        checkpoints[n] = SegmentCheckpoint(
            pages=int(item[f"p{n}"]["N"]),
            cursor=item[f"c{n}"]["S"] if f"c{n}" in item else None,
            claimed_end=item[f"e{n}"]["S"] if f"e{n}" in item else None,
            done=f"d{n}" in item,
        )
    # A segment's done mark holds the instant it finished, written by the finish itself, so the
    # job's completion is the latest of them: no second write that a crash could leave undone.
    # (`completed_at` and BOOL marks: items written before the marks held instants.)
    done_at = [item[f"d{n}"].get("S") for n in range(segments) if f"d{n}" in item]
    completed_at = parse_rfc3339(item["completed_at"]["S"]) if "completed_at" in item else None
    if completed_at is None and len(done_at) == segments and all(done_at):
        completed_at = max(parse_rfc3339(at) for at in done_at)
    return BackfillJob(
        metric_id=item["sk"]["S"],
        settle=timedelta(seconds=int(item["settle_seconds"]["N"])),
        segments=segments,
        checkpoints=checkpoints,
        scanned=int(item["scanned"]["N"]),
        counted=int(item["counted"]["N"]),
        completed_at=completed_at,
    )


class DynamoBackfillStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def create(self, job: BackfillJob) -> None:
        item = {
            **_key(job.metric_id),
            "settle_seconds": {"N": str(int(job.settle.total_seconds()))},
            "segments": {"N": str(job.segments)},
            "scanned": {"N": "0"},
            "counted": {"N": "0"},
            **{f"p{n}": {"N": "0"} for n in range(job.segments)},
        }
        try:  # idempotent by the metric id: a job is created once
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    def get(self, metric_id: str) -> BackfillJob | None:
        try:
            item = self._client.get_item(TableName=self._table, Key=_key(metric_id), ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise translate(exc) from exc
        return None if item is None else _job(item)

    def get_many(self, metric_ids: list[str]) -> dict[str, BackfillJob]:
        items = batch_get(self._client, self._table, [_key(m) for m in metric_ids])
        return {item["sk"]["S"]: _job(item) for item in items}

    def _update(self, metric_id: str, **request) -> dict | None:
        try:
            return self._client.update_item(TableName=self._table, Key=_key(metric_id), **request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc) from exc

    def claim(self, metric_id: str, segment: int, pages: int, end: str) -> bool:
        # Conditional on the segment's page count and on no claim: one claim per page.
        return self._update(
            metric_id,
            UpdateExpression=f"SET e{segment} = :end",
            ConditionExpression=f"p{segment} = :pages AND attribute_not_exists(e{segment}) AND attribute_not_exists(d{segment})",
            ExpressionAttributeValues={":end": {"S": end}, ":pages": {"N": str(pages)}},
        ) is not None

    def finish(self, metric_id: str, segment: int, pages: int, end: str, scanned: int, counted: int, at: datetime) -> bool:
        # Conditional on the claimed page still being claimed: its figures are added once.
        last = end == SEGMENT_END
        sets = [f"p{segment} = :next", f"d{segment} = :done" if last else f"c{segment} = :end"]
        values = {":next": {"N": str(pages + 1)}, ":end": {"S": end}, ":pages": {"N": str(pages)},
                  ":scanned": {"N": str(scanned)}, ":counted": {"N": str(counted)}}
        if last:
            values[":done"] = {"S": format_sortable(at)}
        return self._update(
            metric_id,
            UpdateExpression=f"SET {', '.join(sets)} REMOVE e{segment} ADD scanned :scanned, counted :counted",
            ConditionExpression=f"p{segment} = :pages AND e{segment} = :end",
            ExpressionAttributeValues=values,
        ) is not None


def _cursor(key: dict) -> str:
    return json.dumps([key["pk"]["S"], key["sk"]["S"]])


def _start_key(cursor: str) -> dict:
    pk, sk = json.loads(cursor)
    return {"pk": {"S": pk}, "sk": {"S": sk}}


class DynamoSegmentScan:
    """The events table as parallel scan segments, read strongly consistent. A page's first read is
    filtered to the first receipts ingested before the metric's activation (what the backfill
    counts; the filter saves transfer, not read units), and ends at DynamoDB's LastEvaluatedKey. A
    claimed page read again after a crash is read unfiltered, so that its end key is seen among
    the items: the same range, from which the service keeps the same events."""

    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def _scan(self, segment: int, segments: int, start: str | None, limit: int,
              ingested_before: datetime | None) -> tuple[list[dict], dict | None, int]:
        request = {"TableName": self._table, "Segment": segment, "TotalSegments": segments,
                   "Limit": limit, "ConsistentRead": True}
        if start is not None:
            request["ExclusiveStartKey"] = _start_key(start)
        if ingested_before is not None:
            request["FilterExpression"] = "sk = :original AND ing < :before"
            request["ExpressionAttributeValues"] = {":original": {"S": ORIGINAL},
                                                    ":before": {"S": format_sortable(ingested_before)}}
        try:
            answer = self._client.scan(**request)
        except ClientError as exc:
            raise translate(exc) from exc
        return answer.get("Items", []), answer.get("LastEvaluatedKey"), int(answer.get("ScannedCount", 0))

    def scan_segment(self, segment: int, segments: int, start: str | None, limit: int, ingested_before: datetime,
                     until: str | None = None) -> ScanPage:
        if until is None:  # Scan calls (each at most 1 MB) until `limit` items are read or the segment ends
            kept: list[dict] = []
            scanned, cursor = 0, start
            while True:
                items, last, count = self._scan(segment, segments, cursor, limit - scanned, ingested_before)
                kept += items
                scanned += count
                if last is None:
                    return ScanPage([stored_event(i) for i in kept], SEGMENT_END, scanned)
                cursor = _cursor(last)
                if scanned >= limit:
                    return ScanPage([stored_event(i) for i in kept], cursor, scanned)
        read: list[dict] = []
        cursor = start
        while True:
            items, last, _ = self._scan(segment, segments, cursor, REREAD_LIMIT, None)
            for item in items:
                read.append(item)
                if until != SEGMENT_END and _cursor(item) == until:
                    return ScanPage([stored_event(i) for i in read], until, len(read))
            if last is None:
                if until == SEGMENT_END:
                    return ScanPage([stored_event(i) for i in read], until, len(read))
                # The page's last item is gone (deleted by TTL, 35 days after its ingest) between the
                # claim and this retry: where the page ended is unknown. Stop rather than count twice.
                raise StoreUnavailable("a backfill page's end key no longer exists; the page needs an operator")
            cursor = _cursor(last)
