"""Invoice delivery: finalized invoices to the customer's billing provider (Stripe), exactly once.

invoices topic --(invoice.finalized and invoice.voided only, raw)--> queue --> delivery function --> Stripe
alerts topic --(payment_gate.threshold_reached of a STRIPE payment gate, raw)--> the same queue: the
delivery function charges the crossing (services/threshold_payments.py), off the counters stream's path.
A message that keeps failing is parked in the DLQ after MAX_RECEIVES deliveries (the alarm fires);
the function publishes invoice.billing_provider_error on the invoices topic before that.

Secrets: billing provider keys live in Secrets Manager under `tally/<stack>/billing-providers/`.
The delivery function may only read them; the API function may only create and update them
(POST /v1/setUpBillingProvider); nothing else has either right.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.constructs.dead_letters import dead_letter_alarm, dead_letter_queue, work_queue
from infra.constructs.tables import BILLING_GSI1, Tables
from infra.constructs.tally_function import FunctionDefaults, TallyFunction
from infra.constructs.topics import ALERTS_TOPIC_ENV, INVOICES_TOPIC_ENV, Topics
from infra.nag import acknowledge

MAX_RECEIVES = 5
TIMEOUT = Duration.seconds(60)
SECRETS_PREFIX_ENV = "BILLING_PROVIDER_SECRETS_PREFIX"


def secrets_prefix(scope: Construct) -> str:
    return f"tally/{Stack.of(scope).stack_name}/billing-providers"


def _secrets_arn(scope: Construct) -> str:
    # Secrets Manager appends "-<6 random characters>" to a secret's name in its ARN: a name
    # prefix is the narrowest resource that covers the secrets POST /v1/setUpBillingProvider makes.
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:secretsmanager:{stack.region}:{stack.account}:secret:{secrets_prefix(scope)}/*"


def _secrets_finding(scope: Construct) -> str:
    return (f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>"
            f":secret:{secrets_prefix(scope)}/*]")


class InvoiceDelivery(TallyFunction):
    def __init__(
        self, scope: Construct, construct_id: str, *, tables: Tables, topics: Topics, defaults: FunctionDefaults
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            defaults=defaults,
            handler="functions.deliver_invoices.handler.handler",
            service_name="tally-deliver-invoices",
            timeout=TIMEOUT,
            memory_size=defaults.scale.delivery_memory_mb,
            environment={
                "BILLING_TABLE": tables.billing.table_name,
                INVOICES_TOPIC_ENV: topics.invoices.topic_arn,
                ALERTS_TOPIC_ENV: topics.alerts.topic_arn,  # payment_gate.payment_status
                SECRETS_PREFIX_ENV: secrets_prefix(scope),
                "DELIVERY_MAX_RECEIVES": str(MAX_RECEIVES),
            },
        )
        # Reads: the invoice record, customer configurations (gsi1) and delivery methods. Writes:
        # only the record's delivery state, conditional (adapters/dynamo/billing_providers.py).
        # A STRIPE payment gate's crossing: its charge is updated (the Stripe object, the outcome),
        # and a failed payment turns the contract's configuration off (a conditional put of the
        # contract, adapters/dynamo/documents.py replace).
        self.allow(["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:PutItem"],
                   [tables.billing.table_arn])
        self.allow(["dynamodb:Query"], [f"{tables.billing.table_arn}/index/{BILLING_GSI1}"])
        self.allow(["secretsmanager:GetSecretValue"], [_secrets_arn(self)])
        acknowledge(
            self.role,
            _secrets_finding(self),
            "Billing provider secrets are created at run time, one per delivery method, and Secrets "
            "Manager suffixes each ARN with random characters: the name prefix is the narrowest "
            "resource. The role may only read them.",
        )
        topics.grant_publish(self.role, topics.invoices)  # invoice.billing_provider_error
        topics.grant_publish(self.role, topics.alerts)  # payment_gate.payment_status

        self.dlq = dead_letter_queue(self, "invoice deliveries that failed MAX_RECEIVES times")
        self.queue = work_queue(self, self.dlq, TIMEOUT, MAX_RECEIVES)
        topics.invoices.add_subscription(
            subscriptions.SqsSubscription(
                self.queue,
                raw_message_delivery=True,
                filter_policy={
                    "type": sns.SubscriptionFilter.string_filter(allowlist=["invoice.finalized", "invoice.voided"])
                },
            )
        )
        topics.alerts.add_subscription(
            subscriptions.SqsSubscription(
                self.queue,
                raw_message_delivery=True,
                filter_policy={
                    "type": sns.SubscriptionFilter.string_filter(allowlist=["payment_gate.threshold_reached"]),
                    "payment_gate_type": sns.SubscriptionFilter.string_filter(allowlist=["STRIPE"]),
                },
            )
        )
        self.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=10,
                report_batch_item_failures=True,
                # Bounds the calls to the billing provider, whatever the backlog a cycle close leaves.
                max_concurrency=defaults.scale.delivery_max_concurrency,
            )
        )
        self.dlq_alarm = dead_letter_alarm(
            self,
            self.dlq,
            "Finalized invoices that could not be delivered to their billing provider are waiting in "
            "the delivery DLQ (invoice.billing_provider_error was published for each). Fix the cause, "
            "then redrive the DLQ: a delivery resumes from what the provider already holds.",
        )

    def grant_secret_writes(self, caller: TallyFunction) -> None:
        """Let `caller` (the API) create and update billing provider secrets, never read them."""
        caller.function.add_environment(SECRETS_PREFIX_ENV, secrets_prefix(caller))
        caller.allow(["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue"], [_secrets_arn(caller)])
        acknowledge(
            caller.role,
            _secrets_finding(caller),
            "POST /v1/setUpBillingProvider stores each billing provider's secret under Tally's name "
            "prefix; Secrets Manager suffixes ARNs with random characters. The role may create and "
            "update them, never read them.",
        )
