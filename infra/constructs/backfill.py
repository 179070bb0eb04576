"""Backfill jobs: a new metric's events from before its activation, counted off the request path.

API (metric create) --(the job's start, delayed by the settle time)--> queue --> backfill function
(forms a scan with the jobs waiting) --(one message per scan segment)--> the same queue -->
backfill function --(the segment's next message)--> the same queue, until the segment is read.
A message that keeps failing is parked in the DLQ after MAX_RECEIVES deliveries (the alarm fires);
redriven, its segment resumes from its checkpoint (services/backfill.py).

Stuck jobs: a create that dies after storing its job but before sending the start would leave the
job waiting forever. An EventBridge schedule puts its event on the same queue every SWEEP_EVERY,
and the function sweeps: it reads the waiting index (a sparse partition of the billing table's
gsi1, never a scan) and starts the jobs waiting past `stuck_after`: the API's timeout (no create
runs longer) plus the settle time plus a margin. Why a schedule and not a stream-driven start: the
billing table has no stream (one would carry every billing write to a function, for the rare
metric create), and the sweep also wakes jobs whose start was lost any other way; the queue as its
target keeps one path for every failure: SQS retries, the same DLQ and alarm (and EventBridge's own
delivery failures go to that DLQ too).

The settle time is what makes the activation race impossible (tally.billing.backfill): longer than
any ingest can take between stamping its events and writing them, so it is derived here from the
ingest function's timeout, plus a margin for a write already sent when the timeout strikes.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from infra.constructs.dead_letters import dead_letter_alarm, dead_letter_queue, work_queue
from infra.constructs.tables import BILLING_GSI1, Tables
from infra.constructs.tally_function import FunctionDefaults, TallyFunction

MAX_RECEIVES = 5
TIMEOUT = Duration.seconds(300)  # tally.billing.limits.BACKFILL_RUN_SECONDS bounds a scan's metrics from it
SETTLE_MARGIN = Duration.seconds(20)
SWEEP_EVERY = Duration.minutes(5)
STUCK_MARGIN = Duration.seconds(60)
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
        # The metrics' definitions (GetItem), their activation and their jobs' scans and checkpoints
        # (conditional UpdateItems; forming a scan is one transaction of them, authorized as such).
        self.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [tables.billing.table_arn])
        # The waiting index: gsi1 (its `backfill#waiting` partition), read by the sweep and a forming scan.
        self.allow(["dynamodb:Query"], [f"{tables.billing.table_arn}/index/{BILLING_GSI1}"])

        self.dlq = dead_letter_queue(self, "backfill segments that failed MAX_RECEIVES times")
        self.queue = work_queue(self, self.dlq, TIMEOUT, MAX_RECEIVES)
        self.queue.grant_send_messages(self.role)  # a segment's next message
        self.function.add_environment("BACKFILL_QUEUE_URL", self.queue.queue_url)
        self.function.add_event_source(sources.SqsEventSource(self.queue, batch_size=1, report_batch_item_failures=True))
        self.dlq_alarm = dead_letter_alarm(
            self,
            self.dlq,
            "A metric's backfill start or segment, or a sweep, failed repeatedly and waits in the backfill "
            "DLQ: the metric misses the events ingested before its creation (its backfill_status stays "
            "waiting or running). Fix the cause, then redrive the DLQ: a segment resumes from its "
            "checkpoint, exactly once; a start or sweep is harmless to repeat.",
        )
        # The sweep: EventBridge puts its scheduled event on the queue (the target adds the queue
        # policy for events.amazonaws.com, limited to this rule); what it fails to deliver goes to the DLQ.
        self.sweep = events.Rule(
            self,
            "Sweep",
            description="Starts the backfill jobs whose create died before sending their start",
            schedule=events.Schedule.rate(SWEEP_EVERY),
            targets=[targets.SqsQueue(self.queue, dead_letter_queue=self.dlq, retry_attempts=3)],
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
        """Let `caller` (the API, on metric create) start jobs: send to the queue, nothing else. A
        job waits for the sweep longer than `caller` can run, plus the settle time."""
        stuck_after = int(caller.function.timeout.to_seconds()) + self.settle_seconds + int(STUCK_MARGIN.to_seconds())
        self.function.add_environment("BACKFILL_STUCK_AFTER_SECONDS", str(stuck_after))
        self.queue.grant_send_messages(caller.role)
        caller.function.add_environment("BACKFILL_QUEUE_URL", self.queue.queue_url)
        caller.function.add_environment("BACKFILL_SETTLE_SECONDS", str(self.settle_seconds))
        caller.function.add_environment("BACKFILL_SEGMENTS", str(SEGMENTS))
