"""The places where moto needs help to run this system faithfully (see DESIGN.md):

1. `LambdaFunction._invoke_lambda` wants docker. Every invoke path (the Invoke API, SNS/SQS
   deliveries, Step Functions tasks) passes through it, so it is redirected to in-process handlers.
2. moto's DynamoDB checks a condition and then writes, with no lock between: two threads can both
   pass `attribute_not_exists`. DynamoDB makes each write (and each transaction) atomic, so the
   write operations are serialized here, and reads with them (moto's reads walk dicts a write may
   be changing), each with the building of its answer (moto sizes and serializes the live items
   after the backend call). The lock never spans a handler call, only one operation.
3. moto's `transact_write_items` deep-copies every table it touches, once per item, as its rollback
   snapshot: a 100-item transaction on a 10,000-item table copies a million items. The snapshot is
   narrowed to the partitions the transaction touches (and the stream's length), same semantics.
4. `StreamShard.add` delivers each record alone, with one shared sequence number, and drops
   failures. It is replaced by one that keeps every record with an increasing sequence number and
   wakes the stream pump, which does the delivering (batches, order, retries, bisect).
5. moto's `Table.query` walks every item of the table, comparing keys as DynamoTypes (slow), and
   keeps those of the partition: a billing table of a few thousand items made each read of a
   customer's counters, alerts or contracts cost 25-100 ms. A query of the table now reads only the
   partition; a query of an index pre-selects with a plain compare of the index hash key. moto's
   own checks still run on what is left, so results are the same.
6. moto lets ADD grow a set past DynamoDB's 400 KB item and then fails every read of the item; an
   update past 400 KB is refused instead, as on DynamoDB (moto_item_size.py).
7. moto's BatchMeterUsage keeps no record and knows no subscribed customer: it keeps them and
   deduplicates as AWS does, every customer subscribed (moto_marketplace.py).
8. moto's `states:startExecution` task hands boto3 the state's parameter names, which boto3 does not
   know, so the task always failed: they are mapped onto the API's request as Step Functions does
   (moto_sfn_start.py). Its result still carries datetimes moto cannot serialize, so a state that
   starts an execution discards the result (ResultPath null), as the cycle close does.
"""

from __future__ import annotations

import threading
from typing import Callable

from moto.awslambda.models import LambdaFunction
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import StreamRecord, StreamShard

from infra.local.lambdas import LocalLambdas
from infra.local.moto_item_size import install_item_size_limit
from infra.local.moto_marketplace import install as install_marketplace_metering
from infra.local.moto_sfn_start import install as install_start_execution_task
from infra.local import moto_speed

_installed = False
_listeners: list[Callable[[], None]] = []
_lambdas: LocalLambdas | None = None
_append_lock = threading.Lock()
_write_lock = threading.RLock()
_writes = 0  # DynamoDB write operations so far (tried, not necessarily applied): tells a saver something changed
_ATOMIC_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_READS = ("get_item", "query", "scan", "batch_get_item", "transact_get_items")


def install(lambdas: LocalLambdas) -> None:
    global _installed, _lambdas
    _lambdas = lambdas
    if _installed:
        return
    _installed = True

    def _invoke_lambda(self, event=None):  # noqa: ANN001 - moto's signature
        import json

        payload = event if isinstance(event, str) else json.dumps(event or {})
        result, errored = _lambdas.invoke_json(self.function_arn, payload)
        return result, errored, ""

    def add(self, old, new):  # noqa: ANN001 - moto's signature
        view = self.table.stream_specification["StreamViewType"]
        if old is None:
            name = "INSERT"
        elif new is None:
            name = "REMOVE"
        else:
            name = "MODIFY"
        with _append_lock:  # sequence numbers strictly increase in append order
            sequence = len(self.items) + self.starting_sequence_number
            self.items.append(StreamRecord(self.table, view, name, old, new, sequence))
        for listener in list(_listeners):
            listener()

    LambdaFunction._invoke_lambda = _invoke_lambda
    StreamShard.add = add
    _narrow_transaction_snapshots()
    _partition_queries()
    # Reads too: an API function sends a draft's reads together (services/together.py) while the
    # stream pump writes counters, and moto's reads walk the dicts those writes change.
    install_atomic_writes(reads=True)
    install_item_size_limit()  # an UpdateItem past 400 KB is refused, as on DynamoDB
    install_marketplace_metering()  # BatchMeterUsage keeps records and deduplicates, as AWS does
    install_start_execution_task()  # states:startExecution tasks reach StartExecution (continue as new)
    moto_speed.install()  # memos of moto's per-request parsing, and unsigned DynamoDB requests


def install_atomic_writes(reads: bool = False) -> None:
    """Patch 2 alone, for tests that race threads on moto without the local runtime. With `reads`,
    reads take the same lock, so none iterates a table while a write changes it (moto's reads walk
    its dicts and can fail with "dictionary changed size during iteration"). Idempotent."""
    for name in _ATOMIC_WRITES + (_READS if reads else ()):
        operation = getattr(DynamoDBBackend, name)
        if not hasattr(operation, "_tally_serialized"):
            setattr(DynamoDBBackend, name, _atomic(operation, counted=name in _ATOMIC_WRITES))
    if reads:
        # A read's answer is built after the backend call returns: moto's responses size and
        # serialize the live item objects (BatchGetItem sums `item.size()`), which a concurrent
        # UpdateItem may be adding attributes to. The whole request, answer included, holds the
        # lock ("dictionary changed size during iteration" in a BatchGetItem under a backfill).
        from moto.dynamodb.responses import DynamoHandler

        if not hasattr(DynamoHandler.call_action, "_tally_serialized"):  # its own __wrapped__ is moto's
            DynamoHandler.call_action = _atomic(DynamoHandler.call_action, counted=False)


def _narrow_transaction_snapshots() -> None:
    import copy
    import types

    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy_except_tables(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    # moto's own whole-table snapshot becomes a no-op; the wrapper below snapshots what is touched
    dynamodb_models.copy = types.SimpleNamespace(deepcopy=deepcopy_except_tables, copy=copy.copy)
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        partitions: dict[tuple[str, DynamoType], object] = {}
        stream_lengths: dict[str, int] = {}
        for entry in transact_items:
            kind, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            source = op["Item"] if kind == "Put" else op.get("Key", {})
            if table.hash_key_attr not in source:
                continue
            hash_key = DynamoType(source[table.hash_key_attr])
            if (table.name, hash_key) not in partitions:
                current = table.items.get(hash_key)
                partitions[(table.name, hash_key)] = None if current is None else copy.deepcopy(current)
            if table.stream_shard is not None:
                stream_lengths.setdefault(table.name, len(table.stream_shard.items))
        try:
            return original(self, transact_items)
        except Exception:
            for (table_name, hash_key), saved in partitions.items():
                table = self.tables[table_name]
                if saved is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = saved
            for table_name, length in stream_lengths.items():
                del self.tables[table_name].stream_shard.items[length:]
            raise

    DynamoDBBackend.transact_write_items = transact_write_items


def _partition_queries() -> None:
    from moto.dynamodb.models.table import Table

    hint = threading.local()
    original_query, original_all_items = Table.query, Table.all_items

    def query(self, hash_key, *args, **kwargs):
        # moto's signature: (hash_key, range_comparison, range_objs, limit, exclusive_start_key,
        # scan_index_forward, projection_expressions, index_name=None, ...)
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if hash_key is not None and index_name is None and self.range_key_attr:
            hint.partition = (self, None, hash_key)
        elif hash_key is not None and index_name is not None and self.range_key_attr:
            index = next((i for i in self.all_indexes() if i.name == index_name), None)
            hash_attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"] if index else []
            if len(hash_attrs) == 1:
                hint.partition = (self, hash_attrs[0], hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            hint.partition = None

    def all_items(self):
        partition = getattr(hint, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        _, index_hash_attr, key = partition
        if index_hash_attr is None:
            # moto keeps the partition's items in `items[hash_key]`; query filters to exactly those
            return list(self.items.get(key, {}).values())
        # An index query keeps the items whose index hash key equals `key`: a cheap superset here
        # (plain type and value compare), which moto's own, slower checks then narrow.
        # moto's all_items also sorts the whole table; the index query sorts what it keeps anyway.
        return [
            item
            for partition_items in list(self.items.values())
            for item in list(partition_items.values())
            if (value := item.attrs.get(index_hash_attr)) is not None and value.type == key.type and value.value == key.value
        ]

    Table.query, Table.all_items = query, all_items


def _atomic(operation, counted: bool = True):
    def serialized(self, *args, **kwargs):
        global _writes
        with _write_lock:
            if counted:  # a write: the saver's "something changed"
                _writes += 1
            return operation(self, *args, **kwargs)

    serialized.__wrapped__ = operation
    serialized._tally_serialized = True
    return serialized


def on_stream_record(listener: Callable[[], None]) -> None:
    _listeners.append(listener)


def write_count() -> int:
    return _writes


def writes_paused():
    """Hold every DynamoDB write (and transaction) off: inside, the tables are one instant."""
    return _write_lock


def committed_records(shard) -> list:
    """The shard's records as of the last completed write: a failed transaction's records, which
    its rollback removes, are never visible to the pump."""
    with _write_lock:
        return list(shard.items)
