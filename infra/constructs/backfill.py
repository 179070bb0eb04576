"""Backfill jobs: a new metric's events from before its activation, counted off the request path.

API (metric create) --(one message per scan segment, delayed by the settle time)--> queue -->
backfill function --(the segment's next message)--> the same queue, until the segment is read.
A message that keeps failing is parked in the DLQ after MAX_RECEIVES deliveries (the alarm fires);
redriven, its segment resumes from its checkpoint (services/backfill.py).

The settle time is what makes the activation race impossible (tally.billing.backfill): longer than
any ingest can take between stamping its events and writing them, so it is derived here from the
ingest function's timeout, plus a margin for a write already sent when the timeout strikes.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from infra.constructs.dead_letters import dead_letter_alarm, dead_letter_queue, work_queue
from infra.constructs.tables import Tables
from infra.constructs.tally_function import FunctionDefaults, TallyFunction

MAX_RECEIVES = 5
TIMEOUT = Duration.seconds(300)
SETTLE_MARGIN = Duration.seconds(20)
SEGMENTS = 8
METRICS_PARTITION = "metrics"  # adapters/dynamo/billing.py METRICS


class Backfill(TallyFunction):
    def __init__(
        self, scope: Construct, construct_id: str, *, tables: Tables, defaults: FunctionDefaults, ingest_timeout: Duration
    ) -> None:
        self.settle_seconds = int(ingest_timeout.to_seconds() + SETTLE_MARGIN.to_seconds())
        super().__init__(
            scope,
            construct_id,
            defaults=defaults,
            handler="functions.backfill.handler.handler",
            service_name="tally-backfill",
            timeout=TIMEOUT,
            memory_size=defaults.scale.backfill_memory_mb,
            environment={
                "EVENTS_TABLE": tables.events.table_name,
                "COUNTERS_TABLE": tables.counters.table_name,
                "BILLING_TABLE": tables.billing.table_name,
                "BACKFILL_SETTLE_SECONDS": str(self.settle_seconds),
                "BACKFILL_SEGMENTS": str(SEGMENTS),
            },
        )
        # Reads the events table a scan page at a time, and nothing else of it.
        self.allow(["dynamodb:Scan"], [tables.events.table_arn])
        # Counters, as the aggregator writes them: a quarantine with its counter's high-water mark
        # is one transaction of UpdateItems, which IAM authorizes as UpdateItem.
        self.allow(["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"], [tables.counters.table_arn])
        # The metric's definition (GetItem) and its job's checkpoints (conditional UpdateItem).
        self.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [tables.billing.table_arn])

        self.dlq = dead_letter_queue(self, "backfill segments that failed MAX_RECEIVES times")
        self.queue = work_queue(self, self.dlq, TIMEOUT, MAX_RECEIVES)
        self.queue.grant_send_messages(self.role)  # a segment's next message
        self.function.add_environment("BACKFILL_QUEUE_URL", self.queue.queue_url)
        self.function.add_event_source(sources.SqsEventSource(self.queue, batch_size=1, report_batch_item_failures=True))
        self.dlq_alarm = dead_letter_alarm(
            self,
            self.dlq,
            "A metric's backfill segment failed repeatedly and waits in the backfill DLQ: the metric "
            "misses the events ingested before its creation (its backfill_status stays running). Fix "
            "the cause, then redrive the DLQ: the segment resumes from its checkpoint, exactly once.",
        )

    @staticmethod
    def grant_activation(aggregator: TallyFunction, tables: Tables) -> None:
        """Let the aggregator activate a metric it meets pending (tally.billing.backfill, point 1):
        UpdateItem on the billing table's metrics partition, naming no attribute but the key and
        activated_at, and returning none; no other write to the billing table."""
        aggregator.role.add_to_policy(iam.PolicyStatement(
            actions=["dynamodb:UpdateItem"],
            resources=[tables.billing.table_arn],
            conditions={
                "ForAllValues:StringEquals": {
                    "dynamodb:LeadingKeys": [METRICS_PARTITION],
                    "dynamodb:Attributes": ["pk", "sk", "activated_at"],
                },
                "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
            },
        ))

    def grant_start(self, caller: TallyFunction) -> None:
        """Let `caller` (the API, on metric create) start jobs: send to the queue, nothing else."""
        self.queue.grant_send_messages(caller.role)
        caller.function.add_environment("BACKFILL_QUEUE_URL", self.queue.queue_url)
        caller.function.add_environment("BACKFILL_SETTLE_SECONDS", str(self.settle_seconds))
        caller.function.add_environment("BACKFILL_SEGMENTS", str(SEGMENTS))
