"""Backfill jobs in the billing table, and the events table read as parallel scan segments.

A job is one item, pk `backfill`, sk the metric id. While it waits for a scan it is in the waiting
index: gsi1pk `backfill#waiting`, gsi1sk `<created_at>#<metric id>` (a sparse partition of gsi1,
holding only the jobs waiting, so the sweep and a forming scan read those and nothing else). A scan
is formed by one transaction: the leading job gets `led_by` (its own id), `carries` (the member
metrics), `starts_at` and its segments' checkpoints, each member job gets `led_by` (the leader's
id), and all of them leave the index; each write is conditional on the job having no `led_by` yet,
so a job joins one scan.
A leader's segment n keeps flat attributes: `p<n>` pages finished, `c<n>` the cursor after them,
`e<n>` the claimed page's end key while it is applied, `d<n>` once done (the instant it finished);
`counted#<metric id>` the events counted for each member. Every later change is one conditional
UpdateItem on the leader's item (services/backfill.py). A job stored before shared scans (its
checkpoints written with it, no `scan`) is read as a scan of its own metric.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.events import ORIGINAL, stored_event
from tally.adapters.dynamo.reads import batch_get, query_gsi1
from tally.billing.backfill import SEGMENT_END, BackfillJob, SegmentCheckpoint
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.ports import ScanPage, StoreUnavailable

JOBS = "backfill"
WAITING = "backfill#waiting"  # the waiting index's gsi1 partition
COUNTED = "counted#"
# Items read per Scan call while a claimed page is read again up to its end key.
REREAD_LIMIT = 1000
# Attempts at forming a scan while jobs keep joining others (each attempt leaves those out).
FORM_ATTEMPTS = 5


def _key(metric_id: str) -> dict:
    return {"pk": {"S": JOBS}, "sk": {"S": metric_id}}


def _job(item: dict) -> BackfillJob:
    metric_id = item["sk"]["S"]
    segments = int(item["segments"]["N"])
    scan = item["led_by"]["S"] if "led_by" in item else None
    members = tuple(m["S"] for m in item["carries"]["L"]) if "carries" in item else ()
    counted = {name.removeprefix(COUNTED): int(value["N"]) for name, value in item.items() if name.startswith(COUNTED)}
    if scan is None and "p0" in item:  # a job from before shared scans: a scan of its own
        scan, members = metric_id, (metric_id,)
        counted = {metric_id: int(item["counted"]["N"]) + counted.get(metric_id, 0)}
    checkpoints = {}
    if scan == metric_id:
        for n in range(segments):
            checkpoints[n] = SegmentCheckpoint(
                pages=int(item[f"p{n}"]["N"]),
                cursor=item[f"c{n}"]["S"] if f"c{n}" in item else None,
                claimed_end=item[f"e{n}"]["S"] if f"e{n}" in item else None,
                done=f"d{n}" in item,
            )
    # A segment's done mark holds the instant it finished, written by the finish itself, so the
    # scan's completion is the latest of them: no second write that a crash could leave undone.
    # (`completed_at` and BOOL marks: items written before the marks held instants.)
    done_at = [item[f"d{n}"].get("S") for n in range(segments) if f"d{n}" in item]
    completed_at = parse_rfc3339(item["completed_at"]["S"]) if "completed_at" in item else None
    if completed_at is None and len(done_at) == segments and all(done_at):
        completed_at = max(parse_rfc3339(at) for at in done_at)
    return BackfillJob(
        metric_id=metric_id,
        settle=timedelta(seconds=int(item["settle_seconds"]["N"])),
        segments=segments,
        created_at=parse_rfc3339(item["created_at"]["S"]) if "created_at" in item else None,
        scan=scan,
        members=members,
        starts_at=parse_rfc3339(item["starts_at"]["S"]) if "starts_at" in item else None,
        checkpoints=checkpoints,
        scanned=int(item["scanned"]["N"]) if "scanned" in item else 0,
        counted=counted,
        completed_at=completed_at,
    )


class DynamoBackfillStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def create(self, job: BackfillJob) -> None:
        assert job.created_at is not None
        created = format_sortable(job.created_at)
        item = {
            **_key(job.metric_id),
            "settle_seconds": {"N": str(int(job.settle.total_seconds()))},
            "segments": {"N": str(job.segments)},
            "created_at": {"S": created},
            "gsi1pk": {"S": WAITING},  # in the waiting index, with the same write
            "gsi1sk": {"S": f"{created}#{job.metric_id}"},
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

    def waiting(self, limit: int) -> list[BackfillJob]:
        # One Query of the index's one partition, oldest first (gsi1sk starts with the instant).
        items, _ = query_gsi1(self._client, self._table, WAITING, limit)
        return [_job(item) for item in items]

    def form_scan(self, leader: str, members: list[str], starts_at: datetime) -> list[str] | None:
        carried = [leader] + [m for m in members if m != leader]
        for _ in range(FORM_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=self._formation(carried, starts_at))
                return carried
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise translate(exc) from exc
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if len(reasons) != len(carried):
                    raise StoreUnavailable("a backfill scan could not be formed; retry") from exc
                if reasons[0] == "ConditionalCheckFailed":
                    return None  # the leader leads or joined a scan already
                taken = {m for m, code in zip(carried, reasons) if code == "ConditionalCheckFailed"}
                carried = [m for m in carried if m not in taken]  # others joined another scan meanwhile
        raise StoreUnavailable("a backfill scan could not be formed (jobs kept changing); retry")

    def _formation(self, carried: list[str], starts_at: datetime) -> list[dict]:
        leader = carried[0]
        # Each write is conditional on the job waiting for a scan: a job joins one scan, once.
        condition = "attribute_exists(pk) AND attribute_not_exists(led_by)"
        item = self.get(leader)
        segments = item.segments if item is not None else 0
        checkpoints = ", ".join(f"p{n} = :zero" for n in range(segments))
        writes = [{"Update": {
            "TableName": self._table, "Key": _key(leader), "ConditionExpression": condition,
            "UpdateExpression": f"SET led_by = :scan, carries = :members, starts_at = :starts, scanned = :zero"
                                f"{', ' if checkpoints else ''}{checkpoints} REMOVE gsi1pk, gsi1sk",
            "ExpressionAttributeValues": {":scan": {"S": leader}, ":members": {"L": [{"S": m} for m in carried]},
                                          ":starts": {"S": format_sortable(starts_at)}, ":zero": {"N": "0"}},
        }}]
        writes += [{"Update": {
            "TableName": self._table, "Key": _key(member), "ConditionExpression": condition,
            "UpdateExpression": "SET led_by = :scan REMOVE gsi1pk, gsi1sk",
            "ExpressionAttributeValues": {":scan": {"S": leader}},
        }} for member in carried[1:]]
        return writes

    def drop(self, metric_id: str) -> None:
        # Conditional on no leader: a job a scan carries left the index with that scan's transaction.
        self._update(metric_id, UpdateExpression="REMOVE gsi1pk, gsi1sk", ConditionExpression="attribute_not_exists(led_by)")

    def _update(self, metric_id: str, **request) -> dict | None:
        try:
            return self._client.update_item(TableName=self._table, Key=_key(metric_id), **request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc) from exc

    def claim(self, scan: str, segment: int, pages: int, end: str) -> bool:
        # Conditional on the segment's page count and on no claim: one claim per page.
        return self._update(
            scan,
            UpdateExpression=f"SET e{segment} = :end",
            ConditionExpression=f"p{segment} = :pages AND attribute_not_exists(e{segment}) AND attribute_not_exists(d{segment})",
            ExpressionAttributeValues={":end": {"S": end}, ":pages": {"N": str(pages)}},
        ) is not None

    def finish(self, scan: str, segment: int, pages: int, end: str, scanned: int, counted: dict[str, int],
               at: datetime) -> bool:
        # Conditional on the claimed page still being claimed: its figures are added once.
        last = end == SEGMENT_END
        sets = [f"p{segment} = :next", f"d{segment} = :done" if last else f"c{segment} = :end"]
        values = {":next": {"N": str(pages + 1)}, ":end": {"S": end}, ":pages": {"N": str(pages)},
                  ":scanned": {"N": str(scanned)}}
        if last:
            values[":done"] = {"S": format_sortable(at)}
        adds, names = ["scanned :scanned"], {}
        for i, (metric_id, count) in enumerate(sorted(counted.items())):
            names[f"#k{i}"] = COUNTED + metric_id
            values[f":k{i}"] = {"N": str(count)}
            adds.append(f"#k{i} :k{i}")
        request = {
            "UpdateExpression": f"SET {', '.join(sets)} REMOVE e{segment} ADD {', '.join(adds)}",
            "ConditionExpression": f"p{segment} = :pages AND e{segment} = :end",
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        return self._update(scan, **request) is not None


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
