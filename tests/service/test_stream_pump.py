"""The local stream pump delivers like a DynamoDB event source mapping: batches in order, filter
criteria, bisect on function error, checkpoints at reported item failures, bounded retries and the
on-failure destination."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from infra.local.lambdas import FunctionError
from infra.local.stream_pump import MappingConfig, StreamPump, matches


class Record:
    def __init__(self, seq: int, sk: str = "event", name: str = "INSERT") -> None:
        self.seq, self.sk, self.name = seq, sk, name

    def to_json(self) -> dict:
        return {
            "eventID": str(self.seq),
            "eventName": self.name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {"SequenceNumber": str(self.seq), "Keys": {"sk": {"S": self.sk}}},
        }


class ScriptedFunction:
    """Stands in for LocalLambdas: records each batch and answers from a script."""

    def __init__(self, script) -> None:
        self.script = script
        self.batches: list[list[int]] = []

    def invoke(self, name: str, event: dict):
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]
        self.batches.append(seqs)
        return self.script(seqs)


def pump_for(records, function, **config):
    shard = SimpleNamespace(id="shard-1", items=records)
    pump = StreamPump(function, lambda table: shard, retry_delay=0)
    failures: list[dict] = []
    pump.add_mapping(MappingConfig(function="f", table_name="t", stream_arn="arn:stream", on_failure=failures.append, **config))
    return pump, failures


def ok(seqs):
    return {"batchItemFailures": []}


def test_records_arrive_in_order_in_batches_of_the_batch_size():
    function = ScriptedFunction(ok)
    pump, _ = pump_for([Record(i) for i in range(1, 8)], function, batch_size=3)
    pump.drain()
    assert function.batches == [[1, 2, 3], [4, 5, 6], [7]]


def test_filter_criteria_drop_records_before_they_reach_the_function():
    records = [Record(1), Record(2, sk="dup#x"), Record(3, name="REMOVE"), Record(4)]
    function = ScriptedFunction(ok)
    pattern = {"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["event"]}}}}
    pump, _ = pump_for(records, function, batch_size=10, filters=[pattern])
    pump.drain()
    assert function.batches == [[1, 4]]


def test_a_function_error_bisects_the_batch_until_the_halves_succeed():
    def fail_with_poison(seqs):
        if 3 in seqs and len(seqs) > 1:
            raise FunctionError({"errorMessage": "boom"})
        return ok(seqs)

    function = ScriptedFunction(fail_with_poison)
    pump, _ = pump_for([Record(i) for i in range(1, 5)], function, batch_size=4, bisect=True, max_retries=10)
    pump.drain()
    assert function.batches == [[1, 2, 3, 4], [1, 2], [3, 4], [3], [4]]


def test_a_reported_item_failure_resumes_the_stream_at_that_record():
    calls = {"n": 0}

    def fail_once_at_3(seqs):
        calls["n"] += 1
        return {"batchItemFailures": [{"itemIdentifier": "3"}]} if calls["n"] == 1 else ok(seqs)

    function = ScriptedFunction(fail_once_at_3)
    pump, _ = pump_for([Record(i) for i in range(1, 6)], function, batch_size=5, report_item_failures=True, max_retries=3)
    pump.drain()
    assert function.batches == [[1, 2, 3, 4, 5], [3, 4, 5]]


def test_exhausted_retries_send_the_batch_to_the_on_failure_destination_and_move_on():
    def always_fail(seqs):
        if 2 in seqs:
            raise FunctionError({"errorMessage": "poison"})
        return ok(seqs)

    function = ScriptedFunction(always_fail)
    pump, failures = pump_for([Record(1), Record(2), Record(3)], function, batch_size=1, max_retries=2)
    pump.drain()
    assert function.batches == [[1], [2], [2], [2], [3]]  # one try and two retries
    assert [f["DDBStreamBatchInfo"]["startSequenceNumber"] for f in failures] == ["2"]


def test_unsupported_filter_operators_are_refused_loudly():
    with pytest.raises(ValueError):
        matches({"eventName": [{"prefix": "INS"}]}, {"eventName": "INSERT"})
