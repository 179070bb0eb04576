"""Cycle close: an EventBridge schedule starts the `close-billing-periods` state machine, which
finalizes every period due as of the event's `time` and publishes invoice.finalized.

    FindDuePeriods ─► DeadLetterContracts: Map, per contract whose due periods could not be found
         ▲               DeadLetterContract (SQS)
         │          ─► AnyPeriodsDue? ─continue_as─► ContinueAsNew (StartExecution) ─► ContinuedAsNew
         │                          ─yes─► ClosePeriods: Map (MaxConcurrency 5), per period
         │                          │           FinalizePeriod ─► PublishInvoices ─► PeriodClosed
         └──── next page ◄──────────┼─────────  on any error after retries: DeadLetterPeriod (SQS)
                                    │                                           ─► PeriodDeadLettered
                                    └─no──► DeliverNotifications ─► MoreNotificationsDue? ─no─► Closed
                                                   ▲──────────────────────yes──┘

After CLOSE_PAGES_PER_EXECUTION pages (tally.billing.limits: a STANDARD execution fails at 25,000
history events), FindDuePeriods reads nothing and names the execution that carries on; ContinueAsNew
starts it with the run's progress (cursor, as_of, summary) and this one succeeds with the summary so
far and the name. The last execution's output is the whole run's summary.

The data each state passes is described in tally.services.cycle_close_tasks. Retry and Catch match
error names: our own errors by class name (the Lambda errorType), AWS's by their documented names.
The local runtime (infra/local/workflows.py) runs this very definition in moto, with short retries.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.constructs.tables import BILLING_GSI1, BILLING_GSI2, Tables
from infra.constructs.dead_letters import dead_letter_alarm, dead_letter_queue
from infra.constructs.tally_function import FunctionDefaults, TallyFunction
from infra.constructs.topics import ALERTS_TOPIC_ENV, INVOICES_TOPIC_ENV, Topics
from infra.nag import acknowledge

# The name the local runtime, the CLI and operators know the workflow by; the physical name is
# prefixed with the stack name so that two stacks can share an account.
STATE_MACHINE_NAME = "close-billing-periods"
DEFAULT_SCHEDULE = "rate(1 hour)"
DEFAULT_GRACE_PERIOD_HOURS = 24
MAX_CONCURRENCY = 5
GRACE_PERIOD_ENV = "TALLY_GRACE_PERIOD_HOURS"

# Worth another attempt: storage or SNS throttled (StoreUnavailable, from the adapters), a
# finalization that kept losing the race with another write on the same customer's invoices
# (FinalizationRaced, services/invoice_records.py), Lambda throttled, or a timed-out attempt.
# Every step is idempotent per (contract, period), so a retry after a partial attempt cannot double
# anything. Anything else (a bad period, an unknown invoice) is not transient: it is dead-lettered.
RETRYABLE_ERRORS = [
    "StoreUnavailable",
    "FinalizationRaced",
    "Lambda.TooManyRequestsException",
    "Sandbox.Timedout",
]

_READ = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
# A finalization is one TransactWriteItems (authorised as its per-item actions): the new invoice
# records (conditional puts) and the customer's record counter (update).
_FINALIZE_WRITES = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]


class CycleClose(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tables: Tables,
        topics: Topics,
        defaults: FunctionDefaults,
        schedule: str = DEFAULT_SCHEDULE,
        grace_period_hours: int = DEFAULT_GRACE_PERIOD_HOURS,
    ) -> None:
        super().__init__(scope, construct_id)
        tables_env = {
            "BILLING_TABLE": tables.billing.table_name,
            "COUNTERS_TABLE": tables.counters.table_name,
        }
        # Finding and finalizing must agree on when a period is due.
        grace_env = {GRACE_PERIOD_ENV: str(grace_period_hours)}
        gsi1 = f"{tables.billing.table_arn}/index/{BILLING_GSI1}"

        # Queries the wake index (gsi2) for the customers to read, reads their contracts and invoices
        # to list the periods due, and moves the wake entries of those with nothing due (update).
        self.find_due = self._function(
            "FindDuePeriods",
            defaults,
            handler="find_due_periods",
            timeout=Duration.seconds(60),
            memory_size=defaults.scale.find_due_memory_mb,
            environment={**tables_env, **grace_env},
        )
        self.find_due.allow([*_READ, "dynamodb:UpdateItem"], [tables.billing.table_arn])
        self.find_due.allow(["dynamodb:Query"], [gsi1, f"{tables.billing.table_arn}/index/{BILLING_GSI2}"])

        # Prices the period from the counters and freezes it into FINALIZED invoices and ledger entries.
        self.finalize = self._function(
            "FinalizePeriod",
            defaults,
            handler="finalize_period",
            timeout=Duration.seconds(120),
            memory_size=defaults.scale.finalize_memory_mb,
            environment={**tables_env, **grace_env},
        )
        self.finalize.allow([*_READ, *_FINALIZE_WRITES], [tables.billing.table_arn])
        self.finalize.allow(["dynamodb:Query"], [gsi1])
        self.finalize.allow(_READ, [tables.counters.table_arn])

        # Publishes invoice.finalized once per invoice: reads the invoice, then claims, releases or
        # marks its publication with conditional updates.
        self.publish = self._function(
            "PublishInvoices",
            defaults,
            handler="publish_invoices",
            timeout=Duration.seconds(60),
            memory_size=defaults.scale.publish_memory_mb,
            environment={**tables_env, INVOICES_TOPIC_ENV: topics.invoices.topic_arn},
        )
        self.publish.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [tables.billing.table_arn])
        topics.grant_publish(self.publish.role, topics.invoices)

        # Publishes the offset lifecycle notifications due as of the run (services/notifications.py):
        # lists the configurations (gsi1), queries the occurrence index, reads the contract or
        # invoice an occurrence names, claims (put), releases (delete) and marks (update) each
        # delivery, moves each configuration's watermark (update); publishes on the alerts topic.
        self.notify = self._function(
            "DeliverNotifications",
            defaults,
            handler="deliver_notifications",
            timeout=Duration.seconds(300),
            memory_size=defaults.scale.notify_memory_mb,
            environment={"BILLING_TABLE": tables.billing.table_name, ALERTS_TOPIC_ENV: topics.alerts.topic_arn},
        )
        self.notify.allow(
            ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            [tables.billing.table_arn],
        )
        self.notify.allow(["dynamodb:Query"], [gsi1])
        topics.grant_publish(self.notify.role, topics.alerts)

        # Periods that still failed after their retries, and contracts whose due periods could not
        # be found. Each message names the period (or the customer and contract) and the error; it
        # stays due, so the next scheduled run tries it again.
        self.dlq = dead_letter_queue(self, "the close-billing-periods workflow")
        self.dlq_alarm = dead_letter_alarm(
            self,
            self.dlq,
            (
                "A billing period could not be closed: its invoice is still a draft (or finalized "
                "but not announced), or a contract's due periods could not be found. The message in "
                "the cycle-close DLQ names the period or contract and the error."
            ),
        )

        # ContinueAsNew starts this very state machine: its ARN is built from the name, since
        # the definition cannot refer to the resource it belongs to.
        self._state_machine_name = f"{Stack.of(self).stack_name}-{STATE_MACHINE_NAME}"
        self.state_machine_arn = Stack.of(self).format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self._state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=defaults.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self._state_machine_name,
            comment="Finalizes every billing period due as of the scheduled event's time.",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition()),
            # Runs overlap safely (every step is idempotent); this only bounds a stuck one.
            timeout=Duration.hours(1),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
        )
        invoked = ", ".join(
            f"<{Stack.of(self).get_logical_id(f.function.node.default_child)}.Arn>:*"
            for f in (self.find_due, self.finalize, self.publish, self.notify)
        )
        for function in (self.find_due, self.finalize, self.publish, self.notify):
            logical = Stack.of(self).get_logical_id(function.function.node.default_child)
            acknowledge(
                self.state_machine,
                f"AwsSolutions-IAM5[Resource::<{logical}.Arn>:*]",
                "The LambdaInvoke task grants lambda:InvokeFunction on the function and on its "
                f"versions and aliases (function ARN + ':*'), and on nothing else: {invoked}.",
            )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "CloudWatch Logs delivery (logs:CreateLogDelivery and related) and X-Ray "
            "(PutTraceSegments, GetSamplingRules...) support no resource-level permissions, so "
            "execution logging and tracing need Resource '*'.",
        )

        # EventBridge sends the scheduled event itself as the execution input: its `time` is the
        # instant the workflow closes periods as of.
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"Starts {STATE_MACHINE_NAME} ({schedule})",
            schedule=events.Schedule.expression(schedule),
            targets=[targets.SfnStateMachine(self.state_machine)],
        )

    @staticmethod
    def grant_announcement(caller: TallyFunction, topics: Topics) -> None:
        """`caller` announces the invoices it regenerates (POST /v1/invoices/regenerate) at once,
        as publish_invoices does: the topic's ARN and sns:Publish on it. Claiming and marking the
        publication are updates of the billing table, which the API may write already."""
        caller.function.add_environment(INVOICES_TOPIC_ENV, topics.invoices.topic_arn)
        topics.grant_publish(caller.role, topics.invoices)

    def _function(
        self,
        construct_id: str,
        defaults: FunctionDefaults,
        *,
        handler: str,
        timeout: Duration,
        memory_size: int,
        environment: dict[str, str],
    ) -> TallyFunction:
        return TallyFunction(
            self,
            construct_id,
            defaults=defaults,
            handler=f"functions.close_periods.handler.{handler}",
            service_name=f"tally-{handler.replace('_', '-')}",
            timeout=timeout,
            memory_size=memory_size,
            environment=environment,
        )

    @staticmethod
    def _retrying(task: sfn.TaskStateBase) -> sfn.TaskStateBase:
        task.add_retry(
            errors=RETRYABLE_ERRORS,
            interval=Duration.seconds(2),
            max_attempts=5,
            backoff_rate=2,
            max_delay=Duration.seconds(60),
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _definition(self) -> sfn.IChainable:
        # States get their own scope: their ids (the state names) would clash with the functions'.
        states = Construct(self, "States")
        find_due = self._retrying(
            tasks.LambdaInvoke(
                states,
                "FindDuePeriods",
                lambda_function=self.find_due.function,
                payload_response_only=True,
                result_path="$.progress",
                comment="The next page of due periods; fails with InvalidScheduledEvent on a bad event.",
            )
        )

        # A contract find_due had to skip. Same queue and message shape as a period's, with the
        # customer and contract in place of the period; the run goes on without it.
        dead_letter_contract = tasks.SqsSendMessage(
            states,
            "DeadLetterContract",
            queue=self.dlq,
            message_body=sfn.TaskInput.from_object(
                {
                    "as_of": sfn.JsonPath.string_at("$.as_of"),
                    "contract": {
                        "customer_id": sfn.JsonPath.string_at("$.skipped.customer_id"),
                        "contract_id": sfn.JsonPath.string_at("$.skipped.contract_id"),
                    },
                    "error": {
                        "Error": sfn.JsonPath.string_at("$.skipped.error"),
                        "Cause": sfn.JsonPath.string_at("$.skipped.cause"),
                    },
                    "execution": sfn.JsonPath.execution_id,
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        dead_letter_contract.add_retry(
            errors=["States.TaskFailed"], interval=Duration.seconds(1), max_attempts=3, backoff_rate=2
        )
        dead_letter_contracts = sfn.Map(
            states,
            "DeadLetterContracts",
            items_path="$.progress.skipped",
            item_selector={
                "as_of": sfn.JsonPath.string_at("$.progress.as_of"),
                "skipped": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            max_concurrency=MAX_CONCURRENCY,
            result_path=sfn.JsonPath.DISCARD,
        )
        dead_letter_contracts.item_processor(dead_letter_contract)

        dead_letter = tasks.SqsSendMessage(
            states,
            "DeadLetterPeriod",
            queue=self.dlq,
            message_body=sfn.TaskInput.from_object(
                {
                    "as_of": sfn.JsonPath.string_at("$.as_of"),
                    "period": sfn.JsonPath.object_at("$.period"),
                    "error": sfn.JsonPath.object_at("$.error"),
                    "execution": sfn.JsonPath.execution_id,
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        dead_letter.add_retry(
            errors=["States.TaskFailed"], interval=Duration.seconds(1), max_attempts=3, backoff_rate=2
        )
        dead_lettered = sfn.Pass(
            states,
            "PeriodDeadLettered",
            parameters={
                "period": sfn.JsonPath.object_at("$.period"),
                "status": "DEAD_LETTERED",
                "error": sfn.JsonPath.string_at("$.error.Error"),
            },
        )
        dead_letter.next(dead_lettered)

        finalize = self._retrying(
            tasks.LambdaInvoke(
                states,
                "FinalizePeriod",
                lambda_function=self.finalize.function,
                payload_response_only=True,
                result_path="$.finalized",
            )
        )
        publish = self._retrying(
            tasks.LambdaInvoke(
                states,
                "PublishInvoices",
                lambda_function=self.publish.function,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object(
                    {"invoice_ids": sfn.JsonPath.list_at("$.finalized.invoice_ids")}
                ),
                result_path="$.published",
            )
        )
        # A period that fails is set aside and the Map goes on: it never blocks the others.
        for task in (finalize, publish):
            task.add_catch(dead_letter, errors=[sfn.Errors.ALL], result_path="$.error")
        closed = sfn.Pass(
            states,
            "PeriodClosed",
            parameters={
                "period": sfn.JsonPath.object_at("$.period"),
                "status": "CLOSED",
                "invoice_ids": sfn.JsonPath.list_at("$.finalized.invoice_ids"),
                "finalized": sfn.JsonPath.list_at("$.finalized.finalized"),
                "published": sfn.JsonPath.list_at("$.published.published"),
            },
        )

        close_periods = sfn.Map(
            states,
            "ClosePeriods",
            items_path="$.progress.periods",
            item_selector={
                "as_of": sfn.JsonPath.string_at("$.progress.as_of"),
                "period": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            max_concurrency=MAX_CONCURRENCY,
            result_path="$.closed",
        )
        close_periods.item_processor(finalize.next(publish).next(closed))
        close_periods.next(find_due)  # the next page

        done = sfn.Pass(states, "Closed", output_path="$.progress.summary")
        # Once every period is closed (so that invoice.finalized occurrences are indexed), the
        # notifications due as of the same instant, a page per call until none is left. A failure
        # here is logged by the task and never undoes the close: the next run delivers what is due.
        notify = self._retrying(
            tasks.LambdaInvoke(
                states,
                "DeliverNotifications",
                lambda_function=self.notify.function,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object({"time": sfn.JsonPath.string_at("$.time")}),
                result_path="$.notifications",
                comment="Offset lifecycle notifications due as of the scheduled event's time.",
            )
        )
        notify.add_catch(done, errors=[sfn.Errors.ALL], result_path="$.notifications_error")
        more_notifications = (
            sfn.Choice(states, "MoreNotificationsDue")
            .when(sfn.Condition.boolean_equals("$.notifications.more", True), notify)
            .otherwise(done)
        )
        notify.next(more_notifications)
        # This execution has read its pages: a new one carries the run on from the cursor, under
        # the name FindDuePeriods derived from the run and its pages read. A retried or duplicate
        # StartExecution of that name is refused (ExecutionAlreadyExists): the run is carried on
        # already, so this execution ends as it would have.
        continued = sfn.Pass(
            states,
            "ContinuedAsNew",
            parameters={
                "continued_as": sfn.JsonPath.string_at("$.progress.continue_as"),
                "summary": sfn.JsonPath.object_at("$.progress.summary"),
            },
        )
        continue_as_new = tasks.StepFunctionsStartExecution(
            states,
            "ContinueAsNew",
            state_machine=sfn.StateMachine.from_state_machine_arn(states, "Itself", self.state_machine_arn),
            name=sfn.JsonPath.string_at("$.progress.continue_as"),
            input=sfn.TaskInput.from_object(
                {"time": sfn.JsonPath.string_at("$.time"), "progress": sfn.JsonPath.object_at("$.progress")}
            ),
            associate_with_parent=True,
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            result_path=sfn.JsonPath.DISCARD,
            comment="Carries the run on in a new execution, within the 25,000-event history limit.",
        )
        continue_as_new.add_retry(
            errors=["StepFunctions.ExecutionLimitExceededException"],
            interval=Duration.seconds(2),
            max_attempts=5,
            backoff_rate=2,
            max_delay=Duration.seconds(60),
            jitter_strategy=sfn.JitterType.FULL,
        )
        continue_as_new.add_catch(
            continued, errors=["StepFunctions.ExecutionAlreadyExistsException"], result_path=sfn.JsonPath.DISCARD
        )
        continue_as_new.next(continued)

        # A page may hold no period and still not be the last (its customers had nothing due):
        # the Map then closes nothing and sets `$.closed` to [] for the next page's summary.
        any_due = (
            sfn.Choice(states, "AnyPeriodsDue")
            .when(sfn.Condition.is_string("$.progress.continue_as"), continue_as_new)
            .when(sfn.Condition.boolean_equals("$.progress.more", True), close_periods)
            .otherwise(notify)
        )
        return find_due.next(dead_letter_contracts).next(any_due)
