"""Events stream → usage counters, exactly once (see tally.services.aggregate for why it holds).

Not Powertools' BatchProcessor: it handles records one by one and may apply records that follow a
failed one, which would break the prefix rule the high-water marks rely on. The response shape is
the same `batchItemFailures` contract.
"""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tally import wiring
from tally.runtime import freeze_when_warm
from tally.adapters.dynamo.stream import ShardResolver, streamed_event

logger = Logger(service="tally-aggregate")
metrics = Metrics(namespace="Tally", service="tally-aggregate")
shards = ShardResolver()


@freeze_when_warm
@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    original = {}
    streamed = []
    failed_at = None
    for record in records:
        sequence = record["dynamodb"]["SequenceNumber"]
        try:
            item = streamed_event(record)
        except Exception:  # noqa: BLE001 - an unreadable record stops the batch here
            logger.exception("unreadable stream record", extra={"sequence_number": sequence})
            failed_at = sequence
            break
        if item is not None:
            original[item.sequence] = sequence
            streamed.append(item)
    shard = shards.shard_for(records[0]["eventSourceARN"], records[0]["dynamodb"]["SequenceNumber"])
    outcome = wiring.aggregate_service().apply_batch(shard, streamed)
    metrics.add_metric(name="CounterWrites", unit=MetricUnit.Count, value=outcome.counters_written)
    metrics.add_metric(name="EventsAggregated", unit=MetricUnit.Count, value=len(streamed))
    metrics.add_metric(name="PairsQuarantined", unit=MetricUnit.Count, value=outcome.quarantined)
    if outcome.first_failed_sequence is not None:
        candidate = original[outcome.first_failed_sequence]
        if failed_at is None or int(candidate) < int(failed_at):
            failed_at = candidate
    return {"batchItemFailures": [] if failed_at is None else [{"itemIdentifier": failed_at}]}
