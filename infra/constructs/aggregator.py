"""The aggregator: consumes the events stream and applies each batch to the counters exactly once."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.constructs.tables import Tables
from infra.constructs.dead_letters import dead_letter_alarm, dead_letter_queue
from infra.constructs.streams import stream_source
from infra.constructs.tally_function import FunctionDefaults, TallyFunction
from infra.stream_filters import REAL_EVENT_INSERTS


class Aggregator(TallyFunction):
    def __init__(
        self, scope: Construct, construct_id: str, *, tables: Tables, defaults: FunctionDefaults
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            defaults=defaults,
            handler="functions.aggregate.handler.handler",
            service_name="tally-aggregate",
            timeout=Duration.seconds(60),
            memory_size=defaults.scale.aggregate_memory_mb,
            environment={
                "COUNTERS_TABLE": tables.counters.table_name,
                "BILLING_TABLE": tables.billing.table_name,
            },
            other_wildcard_reasons=[
                "dynamodb:ListStreams, granted by the DynamoDB event source below, supports no "
                "resource-level permissions either; the stream read actions are scoped to the "
                "events stream ARN."
            ],
        )
        self.allow(
            # A quarantine with its counter's high-water mark is one transaction of UpdateItems,
            # which IAM authorizes as UpdateItem.
            ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"],
            [tables.counters.table_arn],
        )
        # Metric definitions.
        self.allow(["dynamodb:GetItem", "dynamodb:Query"], [tables.billing.table_arn])

        # Records the aggregator gave up on; each needs a look (and a replay) by an operator.
        self.dlq = dead_letter_queue(self, "the aggregator's stream mapping")

        # Parallelization must stay 1: the exactly-once counters keep a per-shard sequence
        # high-water mark, which holds only if each shard is processed in order, one batch at a time.
        scale = defaults.scale
        self.function.add_event_source(
            stream_source(
                tables.events,
                self.dlq,
                REAL_EVENT_INSERTS,
                batch_size=scale.aggregate_batch_size,
                max_batching_window=Duration.seconds(scale.aggregate_batching_window_s),
                parallelization_factor=scale.aggregate_parallelization_factor,
            )
        )

        # Pairs the counters could not take (services/aggregate.py): kept with their reason, and
        # missing from the counters until re-applied.
        self.quarantine_alarm = cloudwatch.Alarm(
            self,
            "QuarantineAlarm",
            alarm_description=(
                "The aggregator quarantined (record, metric) pairs no counter could take; their usage "
                "is missing from those counters until the cause is fixed and they are re-applied."
            ),
            metric=cloudwatch.Metric(
                namespace="Tally",
                metric_name="PairsQuarantined",
                dimensions_map={"service": "tally-aggregate"},
                period=Duration.minutes(5),
                statistic=cloudwatch.Stats.SUM,
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        self.dlq_alarm = dead_letter_alarm(
            self,
            self.dlq,
            (
                "Stream records the aggregator could not apply are waiting in its DLQ: "
                "their usage is missing from the counters until they are replayed."
            ),
        )
