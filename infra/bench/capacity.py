"""DynamoDB capacity as AWS bills it, counted per path (ingest, aggregation, alerts) for the bench.

`CapacityMeter` hooks a boto3 DynamoDB client (botocore events, the client itself unchanged) and
charges every request by AWS's unit rules:
- write request units (WRU): 1 KB units per item, rounded up per item, at least 1;
  - PutItem: the larger of the item replaced and the item written;
  - UpdateItem: the larger of the item before and after;
  - DeleteItem: the item deleted;
  - a conditional write whose condition fails still consumes: the item as it is (at least 1);
  - BatchWriteItem: each put or delete on its own;
  - TransactWriteItems: twice each action (prepare and commit), ConditionCheck included; a
    cancelled transaction is charged whole (an upper bound: AWS does not say per action);
- read request units (RRU): 4 KB units, at least 1; eventually consistent reads cost half;
  - GetItem: the item (a missing item costs the minimum); BatchGetItem: each key on its own;
  - Query and Scan: the sum of every item the request evaluated (before its filter and projection),
    rounded up once per request; TransactGetItems: twice each item.

To know the sizes before a write, after an update and of what a query evaluated, the meter reads the
table through `peek`, a second client with no hooks (free, outside the counts).

Figures a bench reads (see `PathUsage`): per path, WRU, RRU, request counts by operation, items
written and read, the stream records the path consumed (`add_stream_records`), and the size in
bytes of every item it wrote. A request is charged to the path named by `with meter.path(name)` on
its thread, else to the path its table maps to (`tables`), else to "other".

    meter = CapacityMeter(peek=boto3.client("dynamodb"), tables={events: "ingest", counters: "aggregation"})
    with meter.attached(client):
        with meter.path("ingest"):
            ...
    meter.usage("ingest").wru
"""

from __future__ import annotations

import contextvars
import copy
import math
import re
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096

# -- item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)


def number_size(text: str) -> int:
    """About 1 byte per two significant digits, plus 1; leading and trailing zeros trimmed."""
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(value: Mapping[str, Any]) -> int:
    """The bytes of one wire-format attribute value ({"S": ...}, {"N": ...}, ...), name excluded."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(member.encode("utf-8")) for member in inner)
    if kind == "NS":
        return sum(number_size(member) for member in inner)
    if kind == "BS":
        return sum(len(member) for member in inner)
    if kind == "L":  # 3 bytes, plus 1 per element
        return 3 + sum(value_size(element) + 1 for element in inner)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(element) + 1 for name, element in inner.items())
    raise ValueError(f"not a DynamoDB attribute value: {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """The bytes of a wire-format item: its attribute names and values (0 for no item)."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int, transactional: bool = False) -> int:
    """WRU of writing one item of `size` bytes: whole KB, rounded up, at least 1."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units(size: int, consistent: bool = True, transactional: bool = False) -> float:
    """RRU of reading `size` bytes: whole 4 KB, rounded up, at least 1; half if eventually
    consistent, double if transactional."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def put_units(new: Mapping[str, Any], old: Mapping[str, Any] | None, succeeded: bool = True,
              transactional: bool = False) -> int:
    """A put replaces `old`: the larger of the two; a failed condition: the item as it is."""
    size = max(item_size(new), item_size(old)) if succeeded else item_size(old)
    return write_units(size, transactional)


def update_units(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, succeeded: bool = True,
                 transactional: bool = False) -> int:
    size = max(item_size(before), item_size(after)) if succeeded else item_size(before)
    return write_units(size, transactional)


def delete_units(old: Mapping[str, Any] | None, transactional: bool = False) -> int:
    return write_units(item_size(old), transactional)


def query_units(items: list[Mapping[str, Any]], consistent: bool) -> float:
    """One Query or Scan page: every item it evaluated, summed, rounded up once."""
    return read_units(sum(item_size(item) for item in items), consistent)


# -- the meter ------------------------------------------------------------------------------------


@dataclass
class PathUsage:
    """What one path cost. Units are multiples of 0.5, exact as floats."""

    wru: float = 0.0
    rru: float = 0.0
    requests: Counter = field(default_factory=Counter)  # operation name -> calls
    items_written: int = 0
    items_read: int = 0
    stream_records: int = 0  # records of a DynamoDB stream the path's function was given
    write_sizes: list[int] = field(default_factory=list)  # bytes billed, per item written

    def merged(self, other: "PathUsage") -> "PathUsage":
        return PathUsage(self.wru + other.wru, self.rru + other.rru, self.requests + other.requests,
                         self.items_written + other.items_written, self.items_read + other.items_read,
                         self.stream_records + other.stream_records, self.write_sizes + other.write_sizes)

    @property
    def largest_item(self) -> int:
        return max(self.write_sizes, default=0)


_KEY_SCHEMAS: dict[str, list[str]] = {}
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
_READS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")


class CapacityMeter:
    def __init__(self, peek, tables: Mapping[str, str] | None = None, default_path: str = "other") -> None:
        self._peek = peek
        self._tables = dict(tables or {})
        self._default = default_path
        self._path: contextvars.ContextVar[str | None] = contextvars.ContextVar(f"capacity-path-{id(self)}", default=None)
        self._lock = threading.Lock()
        self._usage: dict[str, PathUsage] = {}

    # -- reading the figures
    def usage(self, path: str) -> PathUsage:
        with self._lock:
            return copy.deepcopy(self._usage.get(path, PathUsage()))

    def paths(self) -> dict[str, PathUsage]:
        with self._lock:
            return copy.deepcopy(self._usage)

    def total(self) -> PathUsage:
        result = PathUsage()
        for usage in self.paths().values():
            result = result.merged(usage)
        return result

    def reset(self) -> None:
        with self._lock:
            self._usage.clear()

    # -- attributing requests to paths
    @contextmanager
    def path(self, name: str) -> Iterator[None]:
        """Charge this thread's requests (and those of threads started from a copy of its context)
        to `name`."""
        token = self._path.set(name)
        try:
            yield
        finally:
            self._path.reset(token)

    def add_stream_records(self, path: str, count: int) -> None:
        with self._lock:
            self._usage.setdefault(path, PathUsage()).stream_records += count

    def _path_of(self, table: str) -> str:
        return self._path.get() or self._tables.get(table, self._default)

    def _charge(self, table: str, operation: str, wru: float = 0.0, rru: float = 0.0,
                written: list[int] | None = None, read: int = 0) -> None:
        path = self._path_of(table)
        with self._lock:
            usage = self._usage.setdefault(path, PathUsage())
            usage.wru += wru
            usage.rru += rru
            usage.requests[operation] += 1
            usage.items_written += len(written or ())
            usage.write_sizes.extend(written or ())
            usage.items_read += read

    # -- the client hooks
    @contextmanager
    def attached(self, client) -> Iterator["CapacityMeter"]:
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)
        try:
            yield self
        finally:
            events.unregister("before-parameter-build.dynamodb", self._before)
            events.unregister("after-call.dynamodb", self._after)

    def _before(self, params: dict, model, context: dict, **_: Any) -> None:
        operation = model.name
        if operation not in _WRITES and operation not in _READS:
            return
        state: dict[str, Any] = {"params": copy.deepcopy(params)}
        if operation in ("PutItem", "DeleteItem", "UpdateItem"):
            state["old"] = self._get(params["TableName"], self._key_of(params))
        elif operation == "BatchWriteItem":
            state["old"] = {
                (table, i): self._get(table, self._key_of({"TableName": table, **self._request_body(r)}))
                for table, requests in params["RequestItems"].items() for i, r in enumerate(requests)
            }
        elif operation == "TransactWriteItems":
            state["old"] = [self._get(body["TableName"], self._key_of(body))
                            for body in (next(iter(action.values())) for action in params["TransactItems"])]
        context["capacity_meter"] = state

    def _after(self, http_response, parsed: dict, model, context: dict, **_: Any) -> None:
        state = context.pop("capacity_meter", None)
        if state is None:
            return
        operation, params = model.name, state["params"]
        error = (parsed.get("Error") or {}).get("Code")
        if error and error not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            return  # refused before any work (validation, throttling): nothing consumed
        ok = not error
        if operation == "PutItem":
            size = max(item_size(params["Item"]), item_size(state["old"])) if ok else item_size(state["old"])
            self._charge(params["TableName"], operation, wru=write_units(size), written=[size])
        elif operation == "UpdateItem":
            after = self._get(params["TableName"], self._key_of(params)) if ok else None
            size = max(item_size(state["old"]), item_size(after)) if ok else item_size(state["old"])
            self._charge(params["TableName"], operation, wru=write_units(size), written=[size])
        elif operation == "DeleteItem":
            size = item_size(state["old"])
            self._charge(params["TableName"], operation, wru=write_units(size), written=[size])
        elif operation == "BatchWriteItem":
            unprocessed = {(t, self._fingerprint(r)) for t, rs in (parsed.get("UnprocessedItems") or {}).items() for r in rs}
            for table, requests in params["RequestItems"].items():
                sizes = []
                for i, request in enumerate(requests):
                    if (table, self._fingerprint(request)) in unprocessed:
                        continue  # not written: resent later, charged then
                    new = request.get("PutRequest", {}).get("Item")
                    sizes.append(max(item_size(new), item_size(state["old"][(table, i)])))
                self._charge(table, operation, wru=sum(write_units(s) for s in sizes), written=sizes)
        elif operation == "TransactWriteItems":
            # Charged whole to the first action's table's path; written or cancelled alike.
            sizes, table = [], None
            for action, old in zip(params["TransactItems"], state["old"]):
                kind, body = next(iter(action.items()))
                table = table or body["TableName"]
                if kind == "Put":
                    sizes.append(max(item_size(body["Item"]), item_size(old)))
                elif kind == "Update" and ok:
                    sizes.append(max(item_size(old), item_size(self._get(body["TableName"], self._key_of(body)))))
                else:  # Delete, ConditionCheck, or an update that did not happen
                    sizes.append(item_size(old))
            self._charge(table or "", operation, wru=sum(write_units(s, transactional=True) for s in sizes), written=sizes)
        elif operation == "GetItem":
            item = self._get(params["TableName"], params["Key"])
            self._charge(params["TableName"], operation, rru=read_units(item_size(item), bool(params.get("ConsistentRead"))),
                         read=1 if item else 0)
        elif operation == "BatchGetItem":
            unprocessed = parsed.get("UnprocessedKeys") or {}
            for table, request in params["RequestItems"].items():
                skipped = {self._fingerprint(k) for k in unprocessed.get(table, {}).get("Keys", [])}
                rru, found = 0.0, 0
                for key in request["Keys"]:
                    if self._fingerprint(key) in skipped:
                        continue
                    item = self._get(table, key)
                    found += 1 if item else 0
                    rru += read_units(item_size(item), bool(request.get("ConsistentRead")))
                self._charge(table, operation, rru=rru, read=found)
        elif operation in ("Query", "Scan"):
            evaluated = self._evaluated(operation, params)
            self._charge(params["TableName"], operation, rru=query_units(evaluated, bool(params.get("ConsistentRead"))),
                         read=len(evaluated))
        elif operation == "TransactGetItems":
            rru, table = 0.0, ""
            for action in params["TransactItems"]:
                body = action["Get"]
                table = table or body["TableName"]
                rru += read_units(item_size(self._get(body["TableName"], body["Key"])), transactional=True)
            self._charge(table, operation, rru=rru, read=len(params["TransactItems"]))

    # -- peeking at the table, outside the counts
    def _get(self, table: str, key: dict) -> dict | None:
        return self._peek.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _key_names(self, table: str) -> list[str]:
        names = _KEY_SCHEMAS.get(table)
        if names is None:
            schema = self._peek.describe_table(TableName=table)["Table"]["KeySchema"]
            names = _KEY_SCHEMAS[table] = [part["AttributeName"] for part in schema]
        return names

    def _key_of(self, body: dict) -> dict:
        if "Key" in body:
            return body["Key"]
        return {name: body["Item"][name] for name in self._key_names(body["TableName"])}

    @staticmethod
    def _request_body(request: dict) -> dict:
        if "PutRequest" in request:
            return {"Item": request["PutRequest"]["Item"]}
        return {"Key": request["DeleteRequest"]["Key"]}

    @staticmethod
    def _fingerprint(value: Any) -> str:
        import json

        return json.dumps(value, sort_keys=True, default=str)

    def _evaluated(self, operation: str, params: dict) -> list[dict]:
        """The items the request evaluated: the same request without filter and projection."""
        request = {name: params[name] for name in ("TableName", "IndexName", "KeyConditionExpression", "Limit",
                                                   "ExclusiveStartKey", "ScanIndexForward", "ConsistentRead",
                                                   "Segment", "TotalSegments") if name in params}
        used = set(_PLACEHOLDER.findall(params.get("KeyConditionExpression", "")))
        names = {k: v for k, v in (params.get("ExpressionAttributeNames") or {}).items() if k in used}
        values = {k: v for k, v in (params.get("ExpressionAttributeValues") or {}).items() if k in used}
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
        call = self._peek.query if operation == "Query" else self._peek.scan
        return call(**request).get("Items", [])
