"""The alerts function: consumes the counters stream, evaluates the alerts of the customers whose
usage changed, and publishes each crossing once to the alerts topic."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from infra.constructs.tables import BILLING_GSI1, Tables
from infra.constructs.dead_letters import dead_letter_alarm, dead_letter_queue
from infra.constructs.streams import stream_source
from infra.constructs.tally_function import FunctionDefaults, TallyFunction
from infra.constructs.topics import ALERTS_TOPIC_ENV, Topics
from infra.stream_filters import COUNTER_WRITES
ALERTS_FUNCTION_ENV = "ALERTS_FUNCTION_NAME"


class Alerts(TallyFunction):
    def __init__(
        self, scope: Construct, construct_id: str, *, tables: Tables, topics: Topics, defaults: FunctionDefaults
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            defaults=defaults,
            handler="functions.alerts.handler.handler",
            service_name="tally-alerts",
            # Room to wait out another evaluator's publishing lease (5 s) a few times and still finish.
            timeout=Duration.seconds(60),
            memory_size=defaults.scale.alerts_memory_mb,
            environment={
                "COUNTERS_TABLE": tables.counters.table_name,
                "BILLING_TABLE": tables.billing.table_name,
                ALERTS_TOPIC_ENV: topics.alerts.topic_arn,
            },
            other_wildcard_reasons=[
                "dynamodb:ListStreams, granted by the DynamoDB event source below, supports no "
                "resource-level permissions either; the stream read actions are scoped to the "
                "counters stream ARN."
            ],
        )
        # Alerts, customers, aliases, metrics, catalog, contracts and grants are read; the only
        # writes are the (alert, customer) states, each conditional (PutItem creates one).
        self.allow(
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [tables.billing.table_arn],
        )
        self.allow(["dynamodb:Query"], [f"{tables.billing.table_arn}/index/{BILLING_GSI1}"])
        # Usage for usage and spend alerts; never written here.
        self.allow(["dynamodb:GetItem", "dynamodb:Query"], [tables.counters.table_arn])
        topics.grant_publish(self.role, topics.alerts)

        # Batches the alerts function gave up on, and all-customer evaluations (evaluate_alert)
        # that still failed for some customers after Lambda's retries: those were not evaluated.
        self.dlq = dead_letter_queue(self, "the alerts function's stream mapping and asynchronous invocations")
        self.function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.dlq),
            retry_attempts=2,  # a walk re-evaluates everyone: harmless, each crossing fires once
            max_event_age=Duration.hours(6),
        )

        # No batching window: the goal is an alert within seconds of the usage; batches still fill
        # up by themselves under load. Exactly-once publishing holds at any parallelism (each
        # crossing is claimed with a conditional write); the default 1 keeps a customer's crossings in order.
        scale = defaults.scale
        window = scale.alerts_batching_window_s
        self.function.add_event_source(
            stream_source(
                tables.counters,
                self.dlq,
                COUNTER_WRITES,
                batch_size=scale.alerts_batch_size,
                max_batching_window=Duration.seconds(window) if window else None,
                parallelization_factor=scale.alerts_parallelization_factor,
            )
        )

        self.dlq_alarm = dead_letter_alarm(
            self,
            self.dlq,
            (
                "Counter changes, or an all-customer alert's customers, that the alerts function "
                "could not evaluate are waiting in its DLQ: those customers' alerts were not "
                "checked until they are replayed. An all-customer alert's message names the "
                "customers and their errors."
            ),
        )

    def grant_evaluation(self, caller: TallyFunction, topics: Topics) -> None:
        """Let `caller` evaluate alerts itself and publish their crossings: the API (create for one
        customer, reset), or a function whose ledger writes move balances
        (`wiring.alert_service().evaluate_customer(customer_id)`)."""
        caller.function.add_environment(ALERTS_TOPIC_ENV, topics.alerts.topic_arn)
        topics.grant_publish(caller.role, topics.alerts)

    def grant_start(self, caller: TallyFunction) -> None:
        """Let `caller` start this function asynchronously (a new all-customer alert is evaluated
        on every customer off the request path)."""
        caller.function.add_environment(ALERTS_FUNCTION_ENV, self.function.function_name)
        caller.allow(["lambda:InvokeFunction"], [self.function.function_arn])
