"""The ingest function: POST /v1/ingest writes raw events, first receipt wins."""

from __future__ import annotations

from aws_cdk import Duration
from constructs import Construct

from infra.constructs.tables import Tables
from infra.constructs.tally_function import FunctionDefaults, TallyFunction


class Ingest(TallyFunction):
    def __init__(
        self, scope: Construct, construct_id: str, *, tables: Tables, defaults: FunctionDefaults
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            defaults=defaults,
            handler="functions.ingest.handler.handler",
            service_name="tally-ingest",
            timeout=Duration.seconds(10),
            memory_size=defaults.scale.ingest_memory_mb,
            reserved_concurrency=defaults.scale.ingest_reserved_concurrency,
            environment={
                "EVENTS_TABLE": tables.events.table_name,
                "BILLING_TABLE": tables.billing.table_name,
            },
        )
        # TransactWriteItems is authorised as its per-item actions (Put, ConditionCheck).
        self.allow(
            ["dynamodb:PutItem", "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem"],
            [tables.events.table_arn],
        )
        # Bearer API keys are looked up by hash in the billing table, and the batch's customer ids
        # in its alias claims (an archived customer's later events are not stored).
        self.allow(["dynamodb:GetItem", "dynamodb:BatchGetItem"], [tables.billing.table_arn])
