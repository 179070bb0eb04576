"""Usage counters table: pk `m#<metric>#k#<ingest key>`, sk `<bucket>#<group values JSON>` where the
bucket is `h` + YYYYMMDDHH or `d` + YYYYMMDD (the prefixes keep the two grains apart in key order).

Attributes: `v` running total (COUNT, SUM) or maximum (MAX); `u` the distinct values (UNIQUE);
`lo`/`lv` order and value of the latest event (LATEST); `mk_<shard>` the per-shard high-water mark.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Iterable, Mapping

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.billing.counters import CounterKey, CounterRow

_UNIQUE_PREFIX = "="  # DynamoDB sets cannot hold an empty string; every member gets a prefix
_BATCH_WRITE_MAX = 25  # items per BatchWriteItem request (DynamoDB's limit)


def counter_pk(metric_id: str, ingest_key: str) -> str:
    return f"m#{metric_id}#k#{ingest_key}"


def counter_sk(bucket: str, group: tuple[str | None, ...]) -> str:
    return bucket + "#" + json.dumps(list(group), separators=(",", ":"), ensure_ascii=False)


def _key(key: CounterKey) -> dict:
    return {"pk": {"S": counter_pk(key.metric_id, key.ingest_key)}, "sk": {"S": counter_sk(key.bucket, key.group)}}


def _number(value: Decimal) -> dict:
    return {"N": str(value)}


class DynamoCounterStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def _conditional_update(self, key: CounterKey, **kwargs) -> bool:
        try:
            self._client.update_item(TableName=self._table, Key=_key(key), **kwargs)
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc

    def add(self, key, shard, delta, new_mark, *, below=None, expected=None) -> bool:
        names = {"#m": "mk_" + shard}
        values = {":d": _number(delta), ":new": {"S": new_mark}}
        if expected is not None:
            condition = "#m = :expected"
            values[":expected"] = {"S": expected}
        else:
            condition = "attribute_not_exists(#m) OR #m < :below"
            values[":below"] = {"S": below or new_mark}
        return self._conditional_update(
            key,
            UpdateExpression="ADD v :d SET #m = :new",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def high_water_mark(self, key, shard):
        try:
            item = self._client.get_item(
                TableName=self._table,
                Key=_key(key),
                ConsistentRead=True,
                ProjectionExpression="#m",
                ExpressionAttributeNames={"#m": "mk_" + shard},
            ).get("Item")
        except ClientError as exc:
            raise translate(exc) from exc
        return None if not item or "mk_" + shard not in item else item["mk_" + shard]["S"]

    def raise_max(self, key, value):
        self._conditional_update(
            key,
            UpdateExpression="SET v = :x",
            ConditionExpression="attribute_not_exists(v) OR v < :x",
            ExpressionAttributeValues={":x": _number(value)},
        )

    def add_uniques(self, key, values):
        if values:
            self._conditional_update(
                key,
                UpdateExpression="ADD u :s",
                ExpressionAttributeValues={":s": {"SS": sorted(_UNIQUE_PREFIX + v for v in values)}},
            )

    def raise_latest(self, key, order, value):
        self._conditional_update(
            key,
            UpdateExpression="SET lo = :o, lv = :v",
            ConditionExpression="attribute_not_exists(lo) OR lo < :o",
            ExpressionAttributeValues={":o": {"S": order}, ":v": _number(value)},
        )

    def put_rows(
        self, metric_id: str, ingest_key: str, rows: Iterable[CounterRow], marks: Mapping[str, str] | None = None
    ) -> int:
        """Store counters as given, replacing any stored item: bulk loads (imports, benchmark
        fixtures), never live counting, which must go through the conditional writes above.
        `marks` (shard -> high-water mark) are stored on every item, so a later replay of those
        shards adds nothing. Returns the number of items written."""
        pk = {"S": counter_pk(metric_id, ingest_key)}
        extra = {"mk_" + shard: {"S": mark} for shard, mark in (marks or {}).items()}
        written = 0
        batch: list[dict] = []
        for row in rows:
            item = {"pk": pk, "sk": {"S": counter_sk(row.bucket, row.group)}, **_attributes(row), **extra}
            batch.append({"PutRequest": {"Item": item}})
            if len(batch) == _BATCH_WRITE_MAX:
                written += self._batch_write(batch)
                batch = []
        if batch:
            written += self._batch_write(batch)
        return written

    def _batch_write(self, requests: list[dict]) -> int:
        # Idempotent: each put replaces its item by key, so resending unprocessed ones is safe.
        pending, delay = {self._table: requests}, 0.05
        try:
            while pending:
                pending = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        except ClientError as exc:
            raise translate(exc) from exc
        return len(requests)

    def read(self, metric_id, ingest_key, first_bucket, last_bucket):
        rows: list[CounterRow] = []
        groups: dict[str, tuple[str | None, ...]] = {}  # a range repeats a few group values many times
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            # Only what a row holds: the partition key and the shards' marks would be parsed for
            # nothing, and parsing is most of a read's CPU in the function.
            "ProjectionExpression": "#sk, #v, #u, #lo, #lv",
            "ExpressionAttributeNames": {"#sk": "sk", "#v": "v", "#u": "u", "#lo": "lo", "#lv": "lv"},
            "ExpressionAttributeValues": {
                ":pk": {"S": counter_pk(metric_id, ingest_key)},
                ":lo": {"S": first_bucket},
                ":hi": {"S": last_bucket + "#~"},  # group JSON starts with '[', which sorts below '~'
            },
            "ConsistentRead": True,
        }
        try:
            while True:
                page = self._client.query(**request)
                rows.extend(_row(item, groups) for item in page["Items"])
                if "LastEvaluatedKey" not in page:
                    return rows
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except ClientError as exc:
            raise translate(exc) from exc


def _attributes(row: CounterRow) -> dict:
    """The value attributes of a counter item (the inverse of `_row`)."""
    attributes: dict = {}
    if row.total is not None:
        attributes["v"] = _number(row.total)
    if row.uniques:
        attributes["u"] = {"SS": sorted(_UNIQUE_PREFIX + v for v in row.uniques)}
    if row.latest is not None:
        attributes["lo"], attributes["lv"] = {"S": row.latest[0]}, _number(row.latest[1])
    return attributes


def _row(item: dict, groups: dict[str, tuple[str | None, ...]]) -> CounterRow:
    bucket, _, group_json = item["sk"]["S"].partition("#")
    group = groups.get(group_json)
    if group is None:
        group = groups[group_json] = tuple(json.loads(group_json))
    value = item.get("v")
    row = CounterRow(bucket, group, None if value is None else Decimal(value["N"]))
    if "u" not in item and "lo" not in item:
        return row
    latest = (item["lo"]["S"], Decimal(item["lv"]["N"])) if "lo" in item else None
    uniques = frozenset(v[len(_UNIQUE_PREFIX) :] for v in item.get("u", {}).get("SS", []))
    return CounterRow(bucket, group, row.total, uniques, latest)
