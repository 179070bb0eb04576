"""The three DynamoDB tables: raw events, usage counters, and billing state."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as ddb
from constructs import Construct

BILLING_GSI1 = "gsi1"

_S = ddb.AttributeType.STRING


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, deletion_protection: bool) -> None:
        super().__init__(scope, construct_id)

        # Raw events. The stream feeds the aggregator; it needs only the new image of an insert.
        # `expires_at` ages out duplicate receipts after the 34-day dedup window.
        self.events = self._table(
            "Events",
            deletion_protection,
            stream=ddb.StreamViewType.NEW_IMAGE,
            time_to_live_attribute="expires_at",
        )
        # Usage counters. Both images, so the alerts consumer can see a threshold being crossed.
        self.counters = self._table(
            "Counters", deletion_protection, stream=ddb.StreamViewType.NEW_AND_OLD_IMAGES
        )
        # Customers, catalog, contracts, invoices, ledger, alert state, API keys.
        self.billing = self._table("Billing", deletion_protection)
        self.billing.add_global_secondary_index(
            index_name=BILLING_GSI1,
            partition_key=ddb.Attribute(name="gsi1pk", type=_S),
            sort_key=ddb.Attribute(name="gsi1sk", type=_S),
            projection_type=ddb.ProjectionType.ALL,
        )

    def _table(self, construct_id: str, deletion_protection: bool, **props) -> ddb.Table:
        return ddb.Table(
            self,
            construct_id,
            partition_key=ddb.Attribute(name="pk", type=_S),
            sort_key=ddb.Attribute(name="sk", type=_S),
            billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
            encryption=ddb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Every table holds records of account (usage or money): replacing or deleting the
            # stack must never drop one.
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=deletion_protection,
            **props,
        )
