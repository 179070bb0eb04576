"""Usage counters table: pk `m#<metric>#k#<ingest key>`, sk `<bucket>#<group values JSON>` where the
bucket is `h` + YYYYMMDDHH or `d` + YYYYMMDD (the prefixes keep the two grains apart in key order).

Attributes: `v` running total (COUNT, SUM) or maximum (MAX); `u` the distinct values (UNIQUE);
`lo`/`lv` order and value of the latest event (LATEST); `mk_<shard>` the per-shard high-water mark.
"""

from __future__ import annotations

import json
from decimal import Decimal

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.billing.counters import CounterKey, CounterRow

_UNIQUE_PREFIX = "="  # DynamoDB sets cannot hold an empty string; every member gets a prefix


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

    def read(self, metric_id, ingest_key, first_bucket, last_bucket):
        rows = []
        paginator = self._client.get_paginator("query")
        try:
            for page in paginator.paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":pk": {"S": counter_pk(metric_id, ingest_key)},
                    ":lo": {"S": first_bucket},
                    ":hi": {"S": last_bucket + "#~"},  # group JSON starts with '[', which sorts below '~'
                },
                ConsistentRead=True,
            ):
                rows.extend(_row(item) for item in page["Items"])
        except ClientError as exc:
            raise translate(exc) from exc
        return rows


def _row(item: dict) -> CounterRow:
    bucket, _, group = item["sk"]["S"].partition("#")
    latest = (item["lo"]["S"], Decimal(item["lv"]["N"])) if "lo" in item else None
    return CounterRow(
        bucket=bucket,
        group=tuple(json.loads(group)),
        total=Decimal(item["v"]["N"]) if "v" in item else None,
        uniques=frozenset(v[len(_UNIQUE_PREFIX) :] for v in item.get("u", {}).get("SS", [])),
        latest=latest,
    )
