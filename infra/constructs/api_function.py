"""The API function: every other /v1/* route (customers, catalog, contracts, invoices, events)."""

from __future__ import annotations

from aws_cdk import Duration
from constructs import Construct

from infra.constructs.tables import BILLING_GSI1, Tables
from infra.constructs.tally_function import FunctionDefaults, TallyFunction

# Read and write, with TransactWriteItems authorised as its per-item actions.
_READ_WRITE = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
]


class ApiFunction(TallyFunction):
    def __init__(
        self, scope: Construct, construct_id: str, *, tables: Tables, defaults: FunctionDefaults
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            defaults=defaults,
            handler="functions.api.handler.handler",
            service_name="tally-api",
            timeout=Duration.seconds(29),  # API Gateway's integration timeout
            memory_size=defaults.scale.api_memory_mb,
            reserved_concurrency=defaults.scale.api_reserved_concurrency,
            environment={
                "EVENTS_TABLE": tables.events.table_name,
                "COUNTERS_TABLE": tables.counters.table_name,
                "BILLING_TABLE": tables.billing.table_name,
            },
        )
        self.allow(_READ_WRITE, [tables.billing.table_arn])
        self.allow(["dynamodb:Query"], [f"{tables.billing.table_arn}/index/{BILLING_GSI1}"])
        # Counters are read to rate usage; the API also updates them (read+write by design).
        self.allow(
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            [tables.counters.table_arn],
        )
        # Event lookups and search; the API never writes raw events.
        self.allow(
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"],
            [tables.events.table_arn],
        )
