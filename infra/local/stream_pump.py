"""Delivers DynamoDB stream records to Lambda the way the event source mapping would on AWS:
batches of up to BatchSize in sequence order, a batching window, FilterCriteria, retries with
BisectBatchOnFunctionError, ReportBatchItemFailures checkpoints, MaximumRetryAttempts and the
on-failure destination. Tests call `drain()`; the running stack runs `run_forever()` in a thread."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from moto.core.utils import unix_time

from infra.local.lambdas import FunctionError, LocalLambdas


@dataclass
class MappingConfig:
    function: str
    table_name: str
    stream_arn: str
    batch_size: int = 100
    batching_window: float = 0.0
    bisect: bool = False
    report_item_failures: bool = False
    max_retries: int = -1  # -1: until the record expires, as on AWS
    filters: list[dict] = field(default_factory=list)
    on_failure: Callable[[dict], None] | None = None


@dataclass
class _State:
    position: int = 0  # index into the shard's record list: everything before it is checkpointed
    pending: list[tuple[int, int]] = field(default_factory=list)  # ranges to (re)deliver, in order
    attempts: int = 0
    window_started: float | None = None


def matches(pattern: Any, value: Any) -> bool:
    """EventBridge-style pattern matching, the subset Lambda filter criteria use here: nested
    objects, and lists of exact values."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(p, value[k]) for k, p in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict):
                raise ValueError(f"filter operator {option} is not supported by the local pump")
        return value in pattern
    raise ValueError(f"unsupported filter pattern {pattern!r}")


class StreamPump:
    def __init__(self, lambdas: LocalLambdas, shard_of: Callable[[str], Any], max_window: float = 0.2,
                 retry_delay: float = 0.01) -> None:
        self._lambdas = lambdas
        self._shard_of = shard_of  # table name -> moto StreamShard
        self._mappings: list[tuple[MappingConfig, _State]] = []
        self._max_window = max_window  # local cap on MaximumBatchingWindowInSeconds, for freshness
        self._retry_delay = retry_delay
        self._wake = threading.Condition()
        self._stopped = False
        self._busy = threading.Lock()  # one delivery at a time per stack: per-shard order holds
        self.delivered_batches = 0
        self.failed_batches = 0

    def add_mapping(self, config: MappingConfig) -> None:
        self._mappings.append((config, _State()))

    def checkpoints(self) -> dict[tuple[str, str], int]:
        """(function, table) -> index of the first record of the table's shard not yet checkpointed.
        Everything before it is applied (or sent to the on-failure destination)."""
        return {(config.function, config.table_name): state.position for config, state in self._mappings}

    def resume_at(self, checkpoints: dict[tuple[str, str], int]) -> None:
        """Start each mapping at its checkpoint, as a restarted event source mapping would; call
        before the pump runs."""
        for config, state in self._mappings:
            state.position = checkpoints.get((config.function, config.table_name), state.position)

    def notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def stop(self) -> None:
        self._stopped = True
        self.notify()

    # -- delivery ----------------------------------------------------------------------------
    def _record(self, config: MappingConfig, stream_record: Any) -> dict:
        record = stream_record.to_json()
        dynamodb = dict(record["dynamodb"])
        if isinstance(dynamodb.get("ApproximateCreationDateTime"), datetime):
            dynamodb["ApproximateCreationDateTime"] = unix_time(dynamodb["ApproximateCreationDateTime"])
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record["eventVersion"],
            "eventSource": record["eventSource"],
            "awsRegion": record["awsRegion"],
            "dynamodb": dynamodb,
            "eventSourceARN": config.stream_arn,
        }

    def _passes(self, config: MappingConfig, record: dict) -> bool:
        if not config.filters:
            return True
        return any(matches(f, record) for f in config.filters)

    def _step(self, config: MappingConfig, state: _State, final: bool) -> bool:
        items = self._shard_of(config.table_name).items
        if not state.pending:
            if state.position >= len(items):
                return False
            chosen, index = 0, state.position
            while index < len(items) and chosen < config.batch_size:
                if self._passes(config, self._record(config, items[index])):
                    chosen += 1
                index += 1
            if chosen < config.batch_size and not final and config.batching_window > 0:
                # Batching window: wait for a fuller batch (the window is capped locally).
                if state.window_started is None:
                    state.window_started = time.monotonic()
                    return False
                if time.monotonic() - state.window_started < min(config.batching_window, self._max_window):
                    return False
            state.window_started = None
            state.pending = [(state.position, index)]
        low, high = state.pending[0]
        records = [r for r in (self._record(config, items[i]) for i in range(low, high)) if self._passes(config, r)]
        if not records:  # everything in the range was filtered out: checkpoint past it
            state.pending.pop(0)
            state.position = max(state.position, high)
            return True
        self.delivered_batches += 1
        try:
            result = self._lambdas.invoke(config.function, {"Records": records})
        except FunctionError:
            self.failed_batches += 1
            return self._retry(config, state, low, high, records, bisect=True)
        failures = (result or {}).get("batchItemFailures") if config.report_item_failures else None
        if failures:
            self.failed_batches += 1
            failed = {f.get("itemIdentifier") for f in failures}
            for index in range(low, high):
                if items[index].to_json()["dynamodb"]["SequenceNumber"] in failed:
                    # checkpoint at the first failed record; the stream resumes there
                    state.position = max(state.position, index)
                    return self._retry(config, state, index, high, records, bisect=False)
            return self._retry(config, state, low, high, records, bisect=True)  # unknown id: whole batch
        state.pending.pop(0)
        state.position = max(state.position, high)
        state.attempts = 0
        return True

    def _retry(self, config, state, low, high, records, bisect: bool) -> bool:
        state.attempts += 1
        if config.max_retries >= 0 and state.attempts > config.max_retries:
            if config.on_failure is not None:
                config.on_failure(
                    {
                        "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": config.function},
                        "DDBStreamBatchInfo": {
                            "shardId": self._shard_of(config.table_name).id,
                            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                            "batchSize": len(records),
                            "streamArn": config.stream_arn,
                        },
                    }
                )
            state.pending.pop(0)
            state.position = max(state.position, high)
            state.attempts = 0
            return True
        if bisect and config.bisect and high - low > 1:
            middle = (low + high) // 2
            state.pending[0:1] = [(low, middle), (middle, high)]
        else:
            state.pending[0] = (low, high)
        time.sleep(self._retry_delay)
        return True

    def drain(self, timeout: float = 60.0) -> None:
        """Deliver until every mapping has checkpointed every record (ignores batching windows)."""
        deadline = time.monotonic() + timeout
        with self._busy:
            while True:
                worked = False
                for config, state in self._mappings:
                    worked |= self._step(config, state, final=True)
                if not worked:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("stream pump did not drain in time")

    def run_forever(self) -> None:
        while not self._stopped:
            with self._busy:
                worked = False
                for config, state in self._mappings:
                    try:
                        worked |= self._step(config, state, final=False)
                    except Exception as exc:  # noqa: BLE001 - keep the pump alive; report it
                        print(f"stream pump error: {exc!r}", flush=True)
            if not worked:
                with self._wake:
                    self._wake.wait(timeout=0.02)


def sqs_on_failure(sqs_client, queue_url: str) -> Callable[[dict], None]:
    def send(message: dict) -> None:
        sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))

    return send
