"""The places where moto needs help to run this system faithfully (see DESIGN.md):

1. `LambdaFunction._invoke_lambda` wants docker. Every invoke path (the Invoke API, SNS/SQS
   deliveries, Step Functions tasks) passes through it, so it is redirected to in-process handlers.
2. moto's DynamoDB checks a condition and then writes, with no lock between: two threads can both
   pass `attribute_not_exists`. DynamoDB makes each write (and each transaction) atomic, so the
   write operations are serialized here, and reads with them (moto's reads walk dicts a write may
   be changing), each with the building of its answer (moto sizes and serializes the live items
   after the backend call). The lock never spans a handler call, only one operation.
3. (moto_speed.py) moto's `transact_write_items` deep-copies every table it touches, once per
   item, as its rollback snapshot: the snapshot is narrowed to the items the transaction touches.
4. `StreamShard.add` delivers each record alone, with one shared sequence number, and drops
   failures. It is replaced by one that keeps every record with an increasing sequence number and
   wakes the stream pump, which does the delivering (batches, order, retries, bisect).
5. (moto_speed.py) moto's `Table.query` sorts and walks every item of the table: a query reads
   only its partition, or for an index, the items whose index hash key matches.
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
