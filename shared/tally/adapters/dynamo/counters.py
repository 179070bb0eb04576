"""Usage counters table: pk `m#<metric>#k#<ingest key>`, sk `<bucket>#<group values JSON>`, where
the bucket is one of tally.billing.counters' (`D`/`M` for COUNT and SUM, `h`/`d` for the others;
the prefixes keep the kinds apart in key order).

Attributes: `v` running total (COUNT, SUM) or maximum (MAX); the parts of an additive counter, one
attribute each (`h00`..`h23` of a day, `d01`..`d31` of a month); `u` the distinct values (UNIQUE);
`lo`/`lv` order and value of the latest event (LATEST); `mk_<shard>` the per-shard high-water mark
(tally.billing.counters.mark_of: the sequence, `@`, the creation time of its newest record).

An additive counter is written as sub-items (tally.billing.counters.counter_sub_item): sort key the
counter's plus `~<n>`, n in 1..limits.COUNTER_SUB_ITEMS, each holding the marks of the shards that
write it. The unsuffixed item of a counter written before sub-items is read and summed with them,
never written again. (The same suffix names a UNIQUE counter's spill items: other buckets.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Iterable, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.billing.limits import (
    COUNTER_RANGE,
    DYNAMO_TRANSACTION_ITEMS,
    MAX_MARKS_PRUNED_PER_WRITE,
    MAX_UNIQUE_MEMBER_CHARS,
    UNIQUE_SPILL_ITEMS,
)
from tally.billing.quarantine import APPLIED, PENDING, QuarantinedPair, event_from_json, event_json, group_json
from tally.services.ports import NOT_PENDING, OUT_OF_RANGE, REAPPLIED, AdditiveState, StoreRefused
from tally.billing.counters import (
    COUNTER_CONTEXT,
    PART_NAMES,
    CounterKey,
    CounterRead,
    CounterRow,
    GroupOf,
    exact_sum,
    exact_text_sum,
    mark_created,
    mark_of,
    marks_to_prune,
    part_of,
    row_label,
    sub_item_key,
    sum_sub_items,
    untimed_restamps,
)

_log = logging.getLogger(__name__)

_UNIQUE_PREFIX = "="  # DynamoDB sets cannot hold an empty string; every member gets a prefix
_DIGEST_PREFIX = "#"  # a long value, kept as its digest (limits.MAX_UNIQUE_MEMBER_CHARS)
# A spill item's sort key is its counter's plus `~<n>`: after the counter's own (group JSON ends in
# ']'), before the next bucket's, so every range read of the counter reads its spills too.
_SPILL_MARK = "~"
_TRANSACTION_ITEMS = DYNAMO_TRANSACTION_ITEMS


def _spill_of(member: str) -> int:
    """The spill item a UNIQUE member goes to when its counter's item is full: always the same."""
    return 1 + int.from_bytes(hashlib.blake2b(member.encode("utf-8"), digest_size=4).digest(), "big") % UNIQUE_SPILL_ITEMS


def unique_member(value: str) -> str:
    """A UNIQUE value as its counter's set holds it: as it is, or past MAX_UNIQUE_MEMBER_CHARS as a
    128-bit digest, so ~6,000 distinct long values fit one item. Members are only ever counted,
    and equal values have equal digests, so the count is the same."""
    if len(value) <= MAX_UNIQUE_MEMBER_CHARS:
        return _UNIQUE_PREFIX + value
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest()
    return _DIGEST_PREFIX + base64.b64encode(digest).decode("ascii").rstrip("=")


def _within(attribute: str, placeholder: str, delta: Decimal, values: dict) -> str:
    """A condition that `attribute` + `delta` stays within +-COUNTER_RANGE (|delta| <= the range,
    so both bounds have at most 38 digits)."""
    values[placeholder + "lo"] = _number(COUNTER_CONTEXT.subtract(-COUNTER_RANGE, delta))
    values[placeholder + "hi"] = _number(COUNTER_CONTEXT.subtract(COUNTER_RANGE, delta))
    return f"(attribute_not_exists({attribute}) OR {attribute} BETWEEN {placeholder}lo AND {placeholder}hi)"


def quarantine_update(pair: QuarantinedPair, guarded: bool = True) -> dict:
    """The UpdateItem arguments that quarantine a pair under `q#<metric>` / its transaction id,
    adding its buckets; `guarded`: only while it is absent or pending (an applied pair stays so)."""
    request = {
        "Key": {"pk": {"S": "q#" + pair.metric_id}, "sk": {"S": pair.transaction_id}},
        "UpdateExpression": "ADD bk :b SET st = if_not_exists(st, :pending), reason = :r, ev = :e, seq = if_not_exists(seq, :s)",
        "ExpressionAttributeValues": {
            ":b": {"SS": list(pair.buckets)},
            ":pending": {"S": PENDING},
            ":r": {"S": pair.reason},
            ":e": {"S": event_json(pair.event)},
            ":s": {"S": pair.sequence},
        },
    }
    if guarded:
        request["ConditionExpression"] = "attribute_not_exists(st) OR st = :pending"
    return request


def _merge_by_transaction(pairs: list[QuarantinedPair]) -> list[QuarantinedPair]:
    # A transaction may touch an item once: one update per pair.
    merged: dict[str, QuarantinedPair] = {}
    for pair in pairs:
        held = merged.get(pair.transaction_id)
        merged[pair.transaction_id] = pair if held is None else replace(held, buckets=tuple(sorted({*held.buckets, *pair.buckets})))
    return list(merged.values())
_BATCH_WRITE_MAX = 25  # items per BatchWriteItem request (DynamoDB's limit)
_GROUPS_KEPT = 100_000  # parsed group values a warm function keeps between reads
_ZERO = Decimal(0)


def counter_pk(metric_id: str, ingest_key: str) -> str:
    return f"m#{metric_id}#k#{ingest_key}"


def counter_sk(bucket: str, group: tuple[str | None, ...]) -> str:
    return bucket + "#" + group_json(group)


def _key(key: CounterKey) -> dict:
    sk = counter_sk(key.bucket, key.group)
    if key.sub:
        sk += _SPILL_MARK + str(key.sub)
    return {"pk": {"S": counter_pk(key.metric_id, key.ingest_key)}, "sk": {"S": sk}}


def spill_item_key(key: CounterKey, spill: int) -> dict:
    """The key of a UNIQUE counter's spill item `spill` (1..UNIQUE_SPILL_ITEMS)."""
    item_key = _key(key)
    item_key["sk"] = {"S": item_key["sk"]["S"] + _SPILL_MARK + str(spill)}
    return item_key


def _number(value: Decimal) -> dict:
    return {"N": str(value)}


_RAW = threading.local()


def _keep_raw_json(response_dict: dict, customized_response_dict: dict, **_) -> None:
    """botocore's `before-parse` hook: while a counter read is in flight on this thread, its page
    is taken as the JSON DynamoDB sent, and botocore's own parser is handed an empty body.

    Counter items hold strings and numbers only, so the two agree exactly (botocore would only
    decode binary values; numbers stay strings either way), and the parser's walk through the
    output model, about 2.7 µs per attribute, was most of a draft invoice's CPU. Errors (non-200)
    are parsed by botocore as always."""
    if getattr(_RAW, "on", False) and response_dict.get("status_code") == 200:
        customized_response_dict.update(json.loads(response_dict["body"]))
        response_dict["body"] = b"{}"


@contextmanager
def _raw_pages():
    _RAW.on = True
    try:
        yield
    finally:
        _RAW.on = False


class DynamoCounterStore:
    page_limit: int | None = None  # items per Query page; None: DynamoDB's 1 MB pages

    def __init__(self, table: str, client=None, raw_reads: bool = True) -> None:
        self._table = table
        self._client = client or dynamodb()
        self._raw_reads = raw_reads
        self._groups: dict[str, tuple[str | None, ...]] = {}  # group values JSON -> parsed
        if raw_reads:
            self._client.meta.events.register(
                "before-parse.dynamodb.Query", _keep_raw_json, unique_id="tally-counters-raw-query"
            )
            # the counter item an add returns (ReturnValues), to find stale marks
            self._client.meta.events.register(
                "before-parse.dynamodb.UpdateItem", _keep_raw_json, unique_id="tally-counters-raw-update"
            )

    def _conditional_update(self, key: CounterKey, **kwargs) -> bool:
        try:
            self._client.update_item(TableName=self._table, Key=_key(key), **kwargs)
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc

    def add(self, key, shard, parts, new_mark, *, below=None, expected=None, prune_before=None, mark_required=False) -> bool:
        names = {"#m": "mk_" + shard}
        delta = exact_sum(parts.values())
        values = {":d": _number(delta), ":new": {"S": new_mark}}
        additions = ["v :d"]
        # Every sum stays within +-COUNTER_RANGE, where 38 digits hold it exactly: checked by
        # the write itself, since other shards add to the same counter concurrently.
        ranges = [_within("v", ":v", delta, values)]
        for index, (part, part_delta) in enumerate(sorted(parts.items())):
            names[f"#p{index}"], values[f":p{index}"] = part, _number(part_delta)
            additions.append(f"#p{index} :p{index}")
            ranges.append(_within(f"#p{index}", f":r{index}", part_delta, values))
        if expected is not None:
            condition = "#m = :expected"
            values[":expected"] = {"S": expected}
        else:
            condition = "#m < :below" if mark_required else "(attribute_not_exists(#m) OR #m < :below)"
            values[":below"] = {"S": below or new_mark}
        # Marks carry a time after the sequence (mark_of), and compare with a padded sequence as
        # their sequence does: `#m < :below` and `#m = :expected` keep their meaning.
        request = {
            "UpdateExpression": "ADD " + ", ".join(additions) + " SET #m = :new",
            "ConditionExpression": " AND ".join([condition, *ranges]),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if prune_before is None:
            return self._conditional_update(key, **request)
        # The item as written comes back with the write (ReturnValues: no read capacity), so the
        # stale marks are found without a read.
        try:
            if self._raw_reads:
                with _raw_pages():
                    item = self._client.update_item(TableName=self._table, Key=_key(key), ReturnValues="ALL_NEW", **request)
            else:
                item = self._client.update_item(TableName=self._table, Key=_key(key), ReturnValues="ALL_NEW", **request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        self._prune(key, shard, item.get("Attributes") or {}, prune_before)
        return True

    def _prune(self, key: CounterKey, shard: str, item: dict, before: int) -> None:
        """Remove the marks of `item` created before `before` (but `shard`'s), and re-stamp its
        untimed ones (tally.billing.counters.untimed_restamps), in one write conditional on each
        being unchanged: a shard that wrote again in between keeps its mark. Best effort: the
        counter is already right, and the next write tries again."""
        marks = {name[3:]: value["S"] for name, value in item.items() if name.startswith("mk_") and "S" in value}
        stale = marks_to_prune(marks, before, keep=shard)[:MAX_MARKS_PRUNED_PER_WRITE]
        restamps = list(untimed_restamps(marks, before, keep=shard).items())[: MAX_MARKS_PRUNED_PER_WRITE - len(stale)]
        if not stale and not restamps:
            return
        changed = stale + [restamped for restamped, _ in restamps]
        names = {f"#s{i}": "mk_" + mark for i, mark in enumerate(changed)}
        values = {f":s{i}": {"S": marks[mark]} for i, mark in enumerate(changed)}
        expression = []
        if stale:
            expression.append("REMOVE " + ", ".join(f"#s{i}" for i in range(len(stale))))
        if restamps:
            values |= {f":t{i}": {"S": new} for i, (_, new) in enumerate(restamps, start=len(stale))}
            expression.append("SET " + ", ".join(f"#s{i} = :t{i}" for i in range(len(stale), len(changed))))
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(key),
                UpdateExpression=" ".join(expression),
                ConditionExpression=" AND ".join(f"{name} = :s{name[2:]}" for name in names),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as exc:
            _log.warning("stale marks not pruned", extra={"counter": str(key), "marks": len(changed), "error": str(exc)})

    def additive_state(self, key, shard, floor=False) -> AdditiveState:
        try:
            item = self._client.get_item(TableName=self._table, Key=_key(key), ConsistentRead=True).get("Item") or {}
        except ClientError as exc:
            raise translate(exc) from exc
        mark = item.get("mk_" + shard, {}).get("S")
        total = Decimal(item["v"]["N"]) if "v" in item else None
        names = PART_NAMES.get(key.bucket[0], ())
        below = self.high_water_mark(replace(key, sub=0), shard) if floor and mark is None and key.sub else None
        return AdditiveState(mark, total, {name: Decimal(item[name]["N"]) for name in names if name in item}, below)

    def quarantine(self, pairs) -> None:
        for pair in pairs:
            try:
                self._client.update_item(TableName=self._table, **quarantine_update(pair))
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":  # applied already: stays so
                    raise translate(exc) from exc

    def quarantined(self, metric_id: str) -> list[QuarantinedPair]:
        """Every pair of the metric in quarantine, pending or applied, by transaction id."""
        pairs = []
        try:
            for page in self._client.get_paginator("query").paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": "q#" + metric_id}},
                ConsistentRead=True,
            ):
                for item in page["Items"]:
                    pairs.append(
                        QuarantinedPair(
                            metric_id,
                            event_from_json(item["ev"]["S"]),
                            tuple(sorted(item["bk"]["SS"])),
                            item["reason"]["S"],
                            item["seq"]["S"],
                            item["st"]["S"],
                        )
                    )
        except ClientError as exc:
            raise translate(exc) from exc
        return pairs

    def reapply(self, pair, additions) -> str:
        # One transaction: the counters' additions, each within +-COUNTER_RANGE, and the pair's move
        # from pending to applied. Only one of two concurrent re-applies can win that move, so the
        # pair is counted once, ever.
        actions = []
        for key, parts in additions.items():
            if not key.sub:  # to a sub-item, never to a counter's unsuffixed item
                key = sub_item_key(key, pair.transaction_id)
            names: dict[str, str] = {}
            delta = exact_sum(parts.values())
            values = {":d": _number(delta)}
            additions_expr = ["v :d"]
            ranges = [_within("v", ":v", delta, values)]
            for index, (part, part_delta) in enumerate(sorted(parts.items())):
                names[f"#p{index}"], values[f":p{index}"] = part, _number(part_delta)
                additions_expr.append(f"#p{index} :p{index}")
                ranges.append(_within(f"#p{index}", f":r{index}", part_delta, values))
            update = {
                "TableName": self._table,
                "Key": _key(key),
                "UpdateExpression": "ADD " + ", ".join(additions_expr),
                "ConditionExpression": " AND ".join(ranges),
                "ExpressionAttributeValues": values,
            }
            if names:
                update["ExpressionAttributeNames"] = names
            actions.append({"Update": update})
        actions.append({"Update": self._applied_update(pair)})
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[-1].get("Code") == "ConditionalCheckFailed":
                return NOT_PENDING
            if any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons[:-1]):
                return OUT_OF_RANGE
            raise translate(exc) from exc
        return REAPPLIED

    def mark_applied(self, pair) -> bool:
        try:
            self._client.update_item(**self._applied_update(pair))
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc

    def _applied_update(self, pair: QuarantinedPair) -> dict:
        return {
            "TableName": self._table,
            "Key": {"pk": {"S": "q#" + pair.metric_id}, "sk": {"S": pair.transaction_id}},
            "UpdateExpression": "SET st = :applied",
            "ConditionExpression": "st = :pending",
            "ExpressionAttributeValues": {":applied": {"S": APPLIED}, ":pending": {"S": PENDING}},
        }

    def refuse(self, key, shard, new_mark, expected, pairs) -> bool:
        # The mark moves past the refused records in the same transaction that quarantines them, so
        # a replay never counts them here; chunks keep each transaction within 100 items, in
        # sequence order, so the mark only ever covers records already quarantined.
        ordered = sorted(pairs, key=lambda pair: pair.sequence)
        for start in range(0, len(ordered), _TRANSACTION_ITEMS - 1):
            chunk = ordered[start : start + _TRANSACTION_ITEMS - 1]
            # an intermediate mark takes the final one's time: later, so kept at least as long
            mark = new_mark if start + len(chunk) >= len(ordered) else mark_of(chunk[-1].sequence, mark_created(new_mark))
            names = {"#m": "mk_" + shard}
            values = {":new": {"S": mark}}
            if expected is None:
                condition = "attribute_not_exists(#m)"
            else:
                condition, values[":expected"] = "#m = :expected", {"S": expected}
            moves = {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(key),
                    "UpdateExpression": "SET #m = :new",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
            merged = _merge_by_transaction(chunk)
            actions = [moves] + [{"Update": {"TableName": self._table, **quarantine_update(pair, guarded=False)}} for pair in merged]
            try:
                self._client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons") or []
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    return False
                raise translate(exc) from exc
            expected = mark
        return True

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
        if not values:
            return
        members = sorted({unique_member(v) for v in values})
        try:
            self._add_members(_key(key), members)
            return
        except StoreRefused:  # the counter's item is full: spill (a member may then be in both)
            pass
        by_spill: dict[int, list[str]] = {}
        for member in members:
            by_spill.setdefault(_spill_of(member), []).append(member)
        for spill, chosen in sorted(by_spill.items()):
            self._add_members(spill_item_key(key, spill), chosen)  # StoreRefused past every spill: quarantined

    def _add_members(self, key: dict, members: list[str]) -> None:
        try:
            self._client.update_item(
                TableName=self._table, Key=key, UpdateExpression="ADD u :s", ExpressionAttributeValues={":s": {"SS": members}}
            )
        except ClientError as exc:
            raise translate(exc) from exc

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

    def read(self, metric_id, ingest_key, first_bucket, last_bucket, parts=False):
        groups = self._group_cache()
        parse = _parts_row if parts else _row
        rows = [parse(item, groups) for item in self._items(metric_id, ingest_key, first_bucket, last_bucket, parts)]
        return sum_sub_items(rows) if first_bucket[0] in PART_NAMES else rows

    def sums(self, metric_id, ingest_key, first_bucket, last_bucket, parts):
        return _ItemSums(self._items(metric_id, ingest_key, first_bucket, last_bucket, parts), self._group_cache(), parts)

    def _group_cache(self) -> dict[str, tuple[str | None, ...]]:
        groups = self._groups  # metrics and ranges repeat a few group values many times
        if len(groups) > _GROUPS_KEPT:
            groups.clear()
        return groups

    def _items(self, metric_id: str, ingest_key: str, first_bucket: str, last_bucket: str, parts: bool) -> list[dict]:
        """The items of the counters in [first_bucket, last_bucket], every page, holding what a
        row holds: the sort key and the parts (`parts`), or the values."""
        names = _PART_NAMES[first_bucket[0]] if parts else _TOTAL_NAMES
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            # Only what a row holds: the partition key and the shards' marks would be parsed for
            # nothing, and parsing is most of a read's CPU in the function.
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {
                ":pk": {"S": counter_pk(metric_id, ingest_key)},
                ":lo": {"S": first_bucket},
                ":hi": {"S": last_bucket + "#~"},  # group JSON starts with '[', which sorts below '~'
            },
            "ConsistentRead": True,
        }
        if self.page_limit is not None:
            request["Limit"] = self.page_limit
        items: list[dict] = []
        try:
            while True:
                if self._raw_reads:
                    with _raw_pages():
                        page = self._client.query(**request)
                else:
                    page = self._client.query(**request)
                items += page["Items"]
                if "LastEvaluatedKey" not in page:
                    return items
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except ClientError as exc:
            raise translate(exc) from exc


class _ItemSums:
    """CounterSums of the items DynamoDB returned, kept as their number texts: no row or Decimal
    per counter or part, and a number parsed only where a read keeps it (a month cut at a price
    change keeps each of its days once). The items themselves are let go as soon as they are
    read, while they are still in the CPU's caches."""

    __slots__ = ("_buckets", "_groups", "_texts")

    def __init__(self, items: list[dict], groups: dict[str, tuple[str | None, ...]], parts: bool) -> None:
        buckets: list[str] = []
        members: list[tuple[str | None, ...]] = []
        texts: list = []  # per counter: its total's text, or (`parts`) its parts' texts in PART_NAMES order
        for item in items:
            bucket, _, group_json = item["sk"]["S"].partition("#")
            if group_json[-1] != "]":  # a sub-item, `<group JSON>~<n>`: added up with the others
                group_json = group_json[: group_json.rindex(_SPILL_MARK)]
            group = groups.get(group_json)
            if group is None:
                group = groups[group_json] = tuple(json.loads(group_json))
            buckets.append(bucket)
            members.append(group)
            get = item.get
            if parts:
                texts.append(tuple([None if (value := get(name)) is None else value["N"] for name in PART_NAMES[bucket[0]]]))
            else:
                texts.append(None if (value := get("v")) is None else value["N"])
        self._buckets, self._groups, self._texts = buckets, members, texts

    def add_totals(self, read: CounterRead, group_of: GroupOf, totals: dict[tuple, Decimal]) -> None:
        add, get_total = COUNTER_CONTEXT.add, totals.get
        counters = zip(self._buckets, self._groups, self._texts)
        if read.parts:
            kept_parts: dict[str, slice] = {}
            for bucket, group, texts in counters:
                kept = kept_parts.get(bucket)
                if kept is None:
                    kept = kept_parts[bucket] = read.kept_parts(bucket)
                numbers = [text for text in texts[kept] if text is not None]
                if numbers:
                    if group_of is not None:
                        group = group_of(group)
                    totals[group] = add(get_total(group, _ZERO), exact_text_sum(numbers))
            return
        kept_buckets: dict[str, bool] = {}
        for bucket, group, text in counters:
            keeps = kept_buckets.get(bucket)
            if keeps is None:
                keeps = kept_buckets[bucket] = read.keeps(row_label(bucket))
            if keeps:
                if group_of is not None:
                    group = group_of(group)
                # as `row.total or 0` for a row: zeros (0.000) and missing totals add 0
                totals[group] = add(get_total(group, _ZERO), (text is not None and Decimal(text)) or _ZERO)


_TOTAL_NAMES = {f"#{name}": name for name in ("sk", "v", "u", "lo", "lv")}
_PART_NAMES = {kind: {"#sk": "sk"} | {f"#{part}": part for part in parts} for kind, parts in PART_NAMES.items()}


def _attributes(row: CounterRow) -> dict:
    """The value attributes of a counter item (the inverse of `_row`)."""
    attributes: dict = {}
    if row.total is not None:
        attributes["v"] = _number(row.total)
    if row.uniques:
        attributes["u"] = {"SS": sorted({unique_member(v) for v in row.uniques})}
    if row.latest is not None:
        attributes["lo"], attributes["lv"] = {"S": row.latest[0]}, _number(row.latest[1])
    for label, value in row.labelled_parts():
        attributes[part_of(label)] = _number(value)
    return attributes


def _bucket_and_group(item: dict, groups: dict[str, tuple[str | None, ...]]) -> tuple[str, tuple[str | None, ...]]:
    bucket, _, group_json = item["sk"]["S"].partition("#")
    if group_json[-1] != "]":  # a sub-item or a UNIQUE counter's spill item: `<group JSON>~<n>`, read with it
        group_json = group_json[: group_json.rindex(_SPILL_MARK)]
    group = groups.get(group_json)
    if group is None:
        group = groups[group_json] = tuple(json.loads(group_json))
    return bucket, group


def _parts_row(item: dict, groups: dict[str, tuple[str | None, ...]]) -> CounterRow:
    bucket, group = _bucket_and_group(item, groups)
    get = item.get
    parts = tuple([None if (value := get(part)) is None else Decimal(value["N"]) for part in PART_NAMES[bucket[0]]])
    return CounterRow(bucket, group, parts=parts)


def _row(item: dict, groups: dict[str, tuple[str | None, ...]]) -> CounterRow:
    bucket, group = _bucket_and_group(item, groups)
    label = row_label(bucket)
    value = item.get("v")
    total = None if value is None else Decimal(value["N"])
    if "u" not in item and "lo" not in item:  # COUNT, SUM and MAX: a total and nothing else
        return CounterRow(label, group, total)
    latest = (item["lo"]["S"], Decimal(item["lv"]["N"])) if "lo" in item else None
    uniques = frozenset(v[1:] if v[0] == _UNIQUE_PREFIX else v for v in item.get("u", {}).get("SS", []))
    return CounterRow(label, group, total, uniques, latest)
