"""The local stack's state across restarts: snapshots of its data, saved every couple of seconds.

moto keeps everything in memory and has no persistence of its own. Two ways to add one:
- A write-ahead journal of the emulated AWS calls, replayed on start. Replaying a call re-runs it:
  every DynamoDB write would emit its stream record again, so the aggregator, the alerts and their
  SNS publishes would all fire again, and calls that read the clock or draw ids would not replay to
  the same state. The journal would also grow without bound unless it was snapshotted anyway.
- Snapshots of the data (chosen). Every SAVE_INTERVAL seconds, when something changed, and on
  stop, one JSON file gets the items of the stack's tables, the stream records the pump has not yet
  checkpointed, and the dead-letter queues' messages. It is written to a temporary file and then
  renamed over the old one, so a crash leaves one whole snapshot or the other, never half of one.

Restoring puts the items straight into moto's tables, with no stream record: the counters already
hold what those writes meant, so nothing is re-counted, re-evaluated or re-published.

Events acknowledged but not yet aggregated are the hard part. The aggregator counts exactly once
because each counter keeps, per stream shard, the highest sequence number it has applied
(tally.services.aggregate); a replayed record is refused. So:
1. The pump's checkpoints are read first. Then, with every DynamoDB write held off, the tables and
   every stream record from the oldest checkpoint on are copied: one instant for all of them, and
   each counter's effect is a prefix of the records it has seen.
2. On restore, those records go back on their shard with their original shard id and sequence
   numbers, and the pump resumes at each saved checkpoint. A record that was already in a counter
   when it was saved is refused by the counter's mark; one that was not is applied, once.
3. The shard's sequence numbers go on after the last saved one, so a new record is never taken for
   a replay of an old one.

Three more things make the restored stack behave like the one that stopped: the local API key is
kept (a user's saved commands still authenticate), so is the page signing key (the hosted invoice
and dashboard links it signed still open; like the API key, it is in the state file in clear), and
every unfinished backfill job is asked for again: the snapshot keeps the backfill queue's messages,
but not one being handled at that instant. A segment's checkpoint is in the billing table's
snapshot, and a page is applied once however often it is asked for (services/backfill.py).

A crash loses what changed after the last snapshot: at most SAVE_INTERVAL seconds, plus the time to
write one. Requests in flight at a crash may be half applied, as when a Lambda is killed on AWS.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from infra.local.runtime import LocalStack

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "lock"
SAVE_INTERVAL = 2.0
_TABLE = "AWS::DynamoDB::Table"
_QUEUE = "AWS::SQS::Queue"


class StateError(RuntimeError):
    """The state folder cannot be used: locked by another stack, or a snapshot that cannot be read."""


class SavedShard(BaseModel):
    shard_id: str
    first_sequence: int  # the sequence number of records[0] (of the next record if there is none)
    records: list[dict[str, Any]]  # stream records as the shard holds them, oldest first


class SavedState(BaseModel):
    """The snapshot file. Tables, shards and queues are keyed by the template's logical ids, which
    stay the same across deployments (physical names need not)."""

    format: Literal[1] = 1
    saved_at: datetime
    api_key: str | None = None
    items: dict[str, list[dict[str, Any]]]  # table -> items, in DynamoDB JSON
    shards: dict[str, SavedShard]  # table -> its stream shard from the oldest checkpoint on
    checkpoints: dict[str, int]  # "<function>/<table>" -> sequence number of the next record to deliver
    messages: dict[str, list[dict[str, Any]]]  # queue -> messages (body, message attributes)
    # generated secret (logical id) -> version stage (AWSCURRENT, AWSPREVIOUS) -> value
    secrets: dict[str, dict[str, str]] = {}

    def summary(self, outputs_by_table: dict[str, str]) -> str:
        counts = [f"{len(items):,} {outputs_by_table.get(table, table)}" for table, items in self.items.items()]
        pending = sum(len(shard.records) for shard in self.shards.values())
        if pending:
            counts.append(f"{pending:,} stream records to deliver")
        dead = sum(len(messages) for messages in self.messages.values())
        if dead:
            counts.append(f"{dead:,} dead letters")
        return f"restored state as of {self.saved_at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({', '.join(counts)})"


# -- the state folder ----------------------------------------------------------------------------
class StateDir:
    """One stack at a time per folder (an flock, which a crash releases too)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self._lock = None

    @property
    def file(self) -> Path:
        return self.path / STATE_FILE

    def claim(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        lock = open(self.path / LOCK_FILE, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateError(f"another local stack is using {self.path}; stop it, or pass another --state-dir") from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def discard(self) -> None:
        self.file.unlink(missing_ok=True)

    def load(self) -> SavedState | None:
        if not self.file.exists():
            return None
        try:
            return SavedState.model_validate_json(self.file.read_bytes())
        except ValueError as exc:
            raise StateError(f"cannot read {self.file} ({type(exc).__name__}); start with --fresh to discard it") from exc

    def save(self, state: SavedState) -> None:
        temporary = self.file.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(state.model_dump_json().encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.file)  # atomic: the old snapshot or the new one, never half


# -- capture ---------------------------------------------------------------------------------------
def capture(stack: LocalStack, api_key: str | None) -> SavedState:
    from moto.sqs.models import sqs_backends

    from infra.local import moto_patches
    from infra.local.runtime import ACCOUNT, REGION

    logical = _logical_ids(stack)
    tables = _tables(stack)
    # Checkpoints before the tables: whatever they cover is in the tables copied after them.
    checkpoints = stack.pump.checkpoints()
    with moto_patches.writes_paused():
        saved_at = datetime.now(timezone.utc)
        items = {name: [_item_json(item) for item in _items(table)] for name, table in tables.items()}
        shards = {}
        for name, table in tables.items():
            shard = table.stream_shard
            if shard is None:
                continue
            start = min((p for (_, t), p in checkpoints.items() if t == table.name), default=len(shard.items))
            shards[name] = SavedShard(
                shard_id=shard.id,
                first_sequence=shard.starting_sequence_number + start,
                records=[_record_json(record) for record in shard.items[start:]],
            )
        saved_checkpoints = {
            f"{logical[function]}/{logical[table]}": tables[logical[table]].stream_shard.starting_sequence_number + position
            for (function, table), position in checkpoints.items()
        }
    # After the checkpoints: a batch given up on is in its dead-letter queue by then.
    queues = sqs_backends[ACCOUNT][REGION].queues
    messages = {
        name: [{"body": m.body, "message_attributes": m.message_attributes} for m in list(queues[queue_name]._messages)]
        for name, queue_name in _queues(stack).items()
        if queue_name in queues
    }
    return SavedState(saved_at=saved_at, api_key=api_key, items=items, shards=shards,
                      checkpoints=saved_checkpoints, messages=messages, secrets=_secret_values(stack))


def fingerprint(stack: LocalStack) -> tuple:
    """Changes whenever something a snapshot holds may have changed (cheap; read every interval)."""
    from moto.sqs.models import sqs_backends

    from infra.local import moto_patches
    from infra.local.runtime import ACCOUNT, REGION

    queues = sqs_backends[ACCOUNT][REGION].queues
    depths = tuple(len(queues[q]._messages) if q in queues else 0 for q in _queues(stack).values())
    return moto_patches.write_count(), tuple(sorted(stack.pump.checkpoints().items())), depths


# -- restore ---------------------------------------------------------------------------------------
def restore(stack: LocalStack, state: SavedState) -> dict[tuple[str, str], int]:
    """Load `state` into the freshly deployed stack; return the pump's checkpoints to resume at."""
    from moto.dynamodb.models.table import StreamRecord
    from moto.sqs.models import sqs_backends

    from infra.local import moto_patches
    from infra.local.runtime import ACCOUNT, REGION

    tables = _tables(stack)
    with moto_patches.writes_paused():
        for name, items in state.items.items():
            table = tables.get(name)
            if table is None:
                logger.warning("the saved table %s is no longer in the template; its items are dropped", name)
                continue
            shard, table.stream_shard = table.stream_shard, None  # no stream record: nothing re-fires
            try:
                for item in items:
                    table.put_item(item, overwrite=True)
            finally:
                table.stream_shard = shard
        for name, saved in state.shards.items():
            shard = tables[name].stream_shard if name in tables else None
            if shard is None:
                continue
            # Same shard id and sequence numbers: the counters' per-shard marks recognise a replay.
            shard.id = saved.shard_id
            shard.starting_sequence_number = saved.first_sequence
            shard.items = [_stream_record(StreamRecord, record) for record in saved.records]

    sqs = sqs_backends[ACCOUNT][REGION]
    for name, queue_name in _queues(stack).items():
        for message in state.messages.get(name, []):
            sqs.send_message(queue_name, message["body"], message_attributes=message.get("message_attributes") or None)

    _restore_secrets(stack, state.secrets)

    physical = stack.deployment.resources
    resume: dict[tuple[str, str], int] = {}
    for key, sequence in state.checkpoints.items():
        function, table = key.split("/", 1)
        if function in physical and table in tables and tables[table].stream_shard is not None:
            resume[(physical[function], physical[table])] = sequence - tables[table].stream_shard.starting_sequence_number
    return resume


def finish_backfills() -> int:
    """Ask again for every unfinished segment of every backfill job; how many were asked for.
    Harmless for a segment whose message survived: the second run finds its pages claimed or done."""
    from tally import wiring

    metrics = wiring.metric_service().list(include_archived=True)
    return wiring.backfill_service().resume([m.id for m in metrics])


# -- saving in the background ----------------------------------------------------------------------
class StateSaver:
    """Saves a snapshot every `interval` seconds when something changed, and on stop."""

    def __init__(self, state_dir: StateDir, take: Callable[[], SavedState], changes: Callable[[], tuple],
                 interval: float = SAVE_INTERVAL) -> None:
        self._dir = state_dir
        self._take = take
        self._changes = changes
        self._interval = interval
        self._stopped = threading.Event()
        self._saved: tuple | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def save_if_changed(self) -> bool:
        with self._lock:
            seen = self._changes()  # read before the snapshot: a change during it is saved next time
            if seen == self._saved:
                return False
            self._dir.save(self._take())
            self._saved = seen
            return True

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.save_if_changed()
            except Exception:  # noqa: BLE001 - keep the stack serving; the next tick tries again
                logger.exception("could not save the local state to %s", self._dir.file)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        self.save_if_changed()


def _secret_ids(stack: LocalStack) -> dict[str, str]:
    """Logical id -> ARN, for the template's generated secrets (the runtime made them)."""
    return {
        logical: stack.deployment.resources[logical]
        for logical, resource in stack.template["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret" and logical in stack.deployment.resources
    }


def _secret_values(stack: LocalStack) -> dict[str, dict[str, str]]:
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("secretsmanager")
    values: dict[str, dict[str, str]] = {}
    for logical, arn in _secret_ids(stack).items():
        for stage in ("AWSPREVIOUS", "AWSCURRENT"):
            try:
                values.setdefault(logical, {})[stage] = client.get_secret_value(SecretId=arn, VersionStage=stage)["SecretString"]
            except ClientError:
                continue  # never rotated: no previous version
    return values


def _restore_secrets(stack: LocalStack, saved: dict[str, dict[str, str]]) -> None:
    """The saved values as the new secrets' versions: the previous one first, so that putting the
    current one makes it AWSPREVIOUS again."""
    import boto3

    client = boto3.client("secretsmanager")
    arns = _secret_ids(stack)
    for logical, stages in saved.items():
        if logical not in arns:
            continue
        for stage in ("AWSPREVIOUS", "AWSCURRENT"):
            if stage in stages:
                client.put_secret_value(SecretId=arns[logical], SecretString=stages[stage])


# -- moto's side -----------------------------------------------------------------------------------
def _logical_ids(stack: LocalStack) -> dict[str, str]:
    return {physical: logical for logical, physical in stack.deployment.resources.items()}


def _tables(stack: LocalStack) -> dict[str, Any]:
    """Logical id -> moto Table, for the template's tables."""
    from moto.dynamodb.models import dynamodb_backends

    from infra.local.runtime import ACCOUNT, REGION

    backend = dynamodb_backends[ACCOUNT][REGION]
    return {
        logical: backend.tables[stack.deployment.resources[logical]]
        for logical, resource in stack.template["Resources"].items()
        if resource["Type"] == _TABLE and stack.deployment.resources.get(logical) in backend.tables
    }


def _queues(stack: LocalStack) -> dict[str, str]:
    """Logical id -> queue name, for the template's queues (the dead-letter queues)."""
    return {
        logical: stack.deployment.resources[logical].rsplit("/", 1)[-1]
        for logical, resource in stack.template["Resources"].items()
        if resource["Type"] == _QUEUE and logical in stack.deployment.resources
    }


def _items(table) -> list:
    if table.range_key_attr is None:
        return list(table.items.values())
    return [item for partition in table.items.values() for item in partition.values()]


def _item_json(item) -> dict[str, Any]:
    return {name: _wire(value) for name, value in item.attrs.items()}


def _wire(value) -> dict[str, Any]:
    """A moto DynamoType in DynamoDB JSON, as the API takes it (binary as base64)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if value.type == "M":
        return {"M": {k: _wire(v) for k, v in value.value.items()}}
    if value.type == "L":
        return {"L": [_wire(v) if isinstance(v, DynamoType) else v for v in value.value]}
    if value.type == "B" and isinstance(value.value, bytes):
        return {"B": base64.b64encode(value.value).decode("ascii")}
    if value.type == "BS":
        return {"BS": [base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for v in value.value]}
    return {value.type: value.value}


def _record_json(record) -> dict[str, Any]:
    data = json.loads(json.dumps(record.to_json(), default=_json_default))
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):  # ApproximateCreationDateTime: moto keeps a naive UTC datetime
        return {"$datetime": value.replace(tzinfo=timezone.utc).timestamp()}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _stream_record(record_type, data: dict[str, Any]):
    record = record_type.__new__(record_type)  # as moto made it, without re-deriving it from items
    created = data["dynamodb"].get("ApproximateCreationDateTime")
    if isinstance(created, dict) and "$datetime" in created:
        data = {**data, "dynamodb": {**data["dynamodb"], "ApproximateCreationDateTime":
                                     datetime.fromtimestamp(created["$datetime"], timezone.utc).replace(tzinfo=None)}}
    record.record = data
    return record
