"""The Tally stack: composes one construct per capability and exports what clients need."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.assets import lambda_code
from infra.constructs.aggregator import Aggregator
from infra.constructs.alerts import Alerts
from infra.constructs.cycle_close import DEFAULT_GRACE_PERIOD_HOURS, DEFAULT_SCHEDULE, CycleClose
from infra.constructs.api_function import ApiFunction
from infra.constructs.backfill import Backfill
from infra.constructs.http_api import HttpApi
from infra.constructs.ingest import Ingest
from infra.constructs.aws_delivery_access import grant_aws_deliveries
from infra.constructs.invoice_delivery import InvoiceDelivery
from infra.constructs.page_signing import PageSigning
from infra.constructs.tables import Tables
from infra.constructs.tally_function import FunctionDefaults, powertools_layer
from infra.constructs.topics import Topics
from infra.settings import ScaleSettings

DEFAULT_POWERTOOLS_LAYER_VERSION = 18
# Off by default: the tables already have RemovalPolicy.RETAIN, so deleting a stack never drops
# data, and dev and local (moto) stacks stay free to reset their tables. Production passes
# `-c deletion_protection=true` to block deleting a table outside CloudFormation as well.
DEFAULT_DELETION_PROTECTION = False
LOG_RETENTION = logs.RetentionDays.ONE_MONTH


def _context_bool(value: Any) -> bool:
    # `cdk -c key=value` passes strings; cdk.json passes JSON booleans.
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in {"true", "1", "yes"}:
        return True
    if str(value).strip().lower() in {"false", "0", "no"}:
        return False
    raise ValueError(f"context value {value!r} is not a boolean")


class TallyStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)

        layer_version = int(
            self.node.try_get_context("powertools_layer_version") or DEFAULT_POWERTOOLS_LAYER_VERSION
        )
        deletion_protection = _context_bool(
            self.node.try_get_context("deletion_protection") or DEFAULT_DELETION_PROTECTION
        )

        # Cycle close: `-c cycle_close_schedule="rate(15 minutes)"`, `-c grace_period_hours=48`.
        cycle_close_schedule = str(self.node.try_get_context("cycle_close_schedule") or DEFAULT_SCHEDULE)
        grace = self.node.try_get_context("grace_period_hours")
        grace_period_hours = DEFAULT_GRACE_PERIOD_HOURS if grace is None else int(grace)  # 0 is valid
        if grace_period_hours < 0:
            raise ValueError(f"grace_period_hours must be 0 or more, not {grace_period_hours}")

        # Memory sizes, stream batching, concurrency, table capacity: `-c <key>=<value>`, infra/settings.py.
        scale = ScaleSettings.from_node(self.node)

        tables = Tables(self, "Tables", deletion_protection=deletion_protection, scale=scale)
        topics = Topics(self, "Topics")

        with lambda_code() as code:
            defaults = FunctionDefaults(
                code=code,
                layers=[powertools_layer(self, "PowertoolsLayer", layer_version)],
                log_retention=LOG_RETENTION,
                scale=scale,
            )
            ingest = Ingest(self, "Ingest", tables=tables, defaults=defaults)
            api = ApiFunction(self, "Api", tables=tables, defaults=defaults)
            aggregator = Aggregator(self, "Aggregator", tables=tables, defaults=defaults)
            alerts = Alerts(self, "Alerts", tables=tables, topics=topics, defaults=defaults)
            alerts.grant_evaluation(api, topics)
            alerts.grant_start(api)
            cycle_close = CycleClose(
                self,
                "CycleClose",
                tables=tables,
                topics=topics,
                defaults=defaults,
                schedule=cycle_close_schedule,
                grace_period_hours=grace_period_hours,
            )
            # Finalizing writes the ledger for good, which moves balances: balance alerts are
            # evaluated right there, not only on the next usage change.
            alerts.grant_evaluation(cycle_close.finalize, topics)
            cycle_close.grant_announcement(api, topics)  # a regenerated invoice is announced at once
            delivery = InvoiceDelivery(self, "InvoiceDelivery", tables=tables, topics=topics, defaults=defaults)
            delivery.grant_secret_writes(api)  # POST /v1/setUpBillingProvider stores a Stripe key
            grant_aws_deliveries(self, delivery.role)  # AWS Marketplace, customer topics and queues: from context
            page_signing = PageSigning(self, "PageSigning")
            page_signing.grant_signing(api)  # public page links: GET /pages/* and the URLs minted for them
            backfill = Backfill(self, "Backfill", tables=tables, defaults=defaults, ingest_timeout=ingest.function.timeout)
            backfill.grant_start(api)  # metric create sends the job's first messages
            Backfill.grant_activation(aggregator, tables)  # a metric met pending is activated

        http_api = HttpApi(
            self,
            "HttpApi",
            ingest_function=ingest.function,
            api_function=api.function,
            log_retention=LOG_RETENTION,
            rate_limit=scale.api_rate_limit,
            burst_limit=scale.api_burst_limit,
        )

        # GET /v1/services names it: the function depends on the API, never the API on the function.
        api.function.add_environment("TALLY_API_URL", http_api.url)
        CfnOutput(self, "ApiUrl", value=http_api.url)
        CfnOutput(self, "PageSigningSecretArn", value=page_signing.secret.secret_arn)
        CfnOutput(self, "EventsTableName", value=tables.events.table_name)
        CfnOutput(self, "CountersTableName", value=tables.counters.table_name)
        CfnOutput(self, "BillingTableName", value=tables.billing.table_name)
        CfnOutput(self, "AggregatorDlqUrl", value=aggregator.dlq.queue_url)
        CfnOutput(self, "CloseBillingPeriodsArn", value=cycle_close.state_machine.state_machine_arn)
        CfnOutput(self, "CycleCloseDlqUrl", value=cycle_close.dlq.queue_url)
        CfnOutput(self, "InvoicesTopicArn", value=topics.invoices.topic_arn)
        CfnOutput(self, "AlertsTopicArn", value=topics.alerts.topic_arn)
        CfnOutput(self, "AlertsDlqUrl", value=alerts.dlq.queue_url)
        CfnOutput(self, "InvoiceDeliveryQueueUrl", value=delivery.queue.queue_url)
        CfnOutput(self, "InvoiceDeliveryDlqUrl", value=delivery.dlq.queue_url)
        CfnOutput(self, "BackfillDlqUrl", value=backfill.dlq.queue_url)
