"""How a Lambda reads a DynamoDB stream here: in order, in batches (100 by default: the sizes and
windows are scale settings, infra/settings.py), bisecting a failing batch, reporting the records that failed, and giving up only as late as the stream keeps records
(24 h), into a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs


def stream_source(
    table: dynamodb.ITable,
    dlq: sqs.IQueue,
    record_filter: dict,
    *,
    batch_size: int = 100,
    max_batching_window: Duration | None = None,
    parallelization_factor: int = 1,
) -> sources.DynamoEventSource:
    # One batch per shard at a time by default: the aggregator's high-water marks need shard order,
    # and alert crossings are published in stream order.
    return sources.DynamoEventSource(
        table,
        starting_position=lambda_.StartingPosition.TRIM_HORIZON,
        batch_size=batch_size,
        max_batching_window=max_batching_window,
        bisect_batch_on_error=True,
        report_batch_item_failures=True,
        retry_attempts=8,
        max_record_age=Duration.hours(24),
        parallelization_factor=parallelization_factor,
        on_failure=sources.SqsDlq(dlq),
        filters=[lambda_.FilterCriteria.filter(record_filter)],
    )
