"""How a Lambda reads a DynamoDB stream here: in order, in batches of 100, bisecting a failing
batch, reporting the records that failed, and giving up only as late as the stream keeps records
(24 h), into a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs


def stream_source(
    table: dynamodb.ITable, dlq: sqs.IQueue, record_filter: dict, max_batching_window: Duration | None = None
) -> sources.DynamoEventSource:
    # One batch per shard at a time: the aggregator's high-water marks need shard order, and alert
    # crossings are published in stream order.
    return sources.DynamoEventSource(
        table,
        starting_position=lambda_.StartingPosition.TRIM_HORIZON,
        batch_size=100,
        max_batching_window=max_batching_window,
        bisect_batch_on_error=True,
        report_batch_item_failures=True,
        retry_attempts=8,
        max_record_age=Duration.hours(24),
        parallelization_factor=1,
        on_failure=sources.SqsDlq(dlq),
        filters=[lambda_.FilterCriteria.filter(record_filter)],
    )
