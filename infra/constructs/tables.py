"""The three DynamoDB tables: raw events, usage counters, and billing state."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as ddb
from constructs import Construct

from infra.nag import acknowledge
from infra.settings import ScaleSettings

BILLING_GSI1 = "gsi1"
BILLING_GSI2 = "gsi2"  # the cycle-close wake index (shared/tally/adapters/dynamo/close_index.py)

_S = ddb.AttributeType.STRING


class Tables(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deletion_protection: bool,
        scale: ScaleSettings = ScaleSettings.defaults(),
    ) -> None:
        super().__init__(scope, construct_id)
        self._scale = scale

        # Raw events. The stream feeds the aggregator; it needs only the new image of an insert.
        # `expires_at` ages out duplicate receipts after the 34-day dedup window.
        self.events = self._table(
            "events",
            "Events",
            deletion_protection,
            stream=ddb.StreamViewType.NEW_IMAGE,
            time_to_live_attribute="expires_at",
            point_in_time_recovery=scale.events_point_in_time_recovery,
        )
        if not scale.events_point_in_time_recovery:
            acknowledge(
                self.events,
                "AwsSolutions-DDB3",
                "Point-in-time recovery of the events table was turned off by the operator "
                "(-c events_point_in_time_recovery=false): it is billed on 34 days of raw events.",
            )
        # Usage counters. Both images, so the alerts consumer can see a threshold being crossed.
        self.counters = self._table(
            "counters",
            "Counters", deletion_protection, stream=ddb.StreamViewType.NEW_AND_OLD_IMAGES
        )
        # Customers, catalog, contracts, invoices, ledger, alert state, API keys.
        self.billing = self._table("billing", "Billing", deletion_protection)
        self.billing.add_global_secondary_index(
            index_name=BILLING_GSI1,
            partition_key=ddb.Attribute(name="gsi1pk", type=_S),
            sort_key=ddb.Attribute(name="gsi1sk", type=_S),
            projection_type=ddb.ProjectionType.ALL,
            **self._index_capacity("billing"),
        )
        # Keys only: a run needs the customer (in the sort key) and the document's key, nothing more.
        self.billing.add_global_secondary_index(
            index_name=BILLING_GSI2,
            partition_key=ddb.Attribute(name="gsi2pk", type=_S),
            sort_key=ddb.Attribute(name="gsi2sk", type=_S),
            projection_type=ddb.ProjectionType.KEYS_ONLY,
            **self._index_capacity("billing"),
        )
        for name, table, indexes in (("events", self.events, ()), ("counters", self.counters, ()),
                                     ("billing", self.billing, (BILLING_GSI1, BILLING_GSI2))):
            self._auto_scale(name, table, indexes)

    def _table(
        self, name: str, construct_id: str, deletion_protection: bool, point_in_time_recovery: bool = True, **props
    ) -> ddb.Table:
        return ddb.Table(
            self,
            construct_id,
            partition_key=ddb.Attribute(name="pk", type=_S),
            sort_key=ddb.Attribute(name="sk", type=_S),
            **self._capacity(name),
            encryption=ddb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=point_in_time_recovery
            ),
            # Every table holds records of account (usage or money): replacing or deleting the
            # stack must never drop one.
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=deletion_protection,
            **props,
        )

    def _capacity(self, name: str) -> dict:
        """On-demand (with optional ceilings) or provisioned units, from the scale settings."""
        table = self._scale.table(name)
        if table["mode"] == "provisioned":
            return {
                "billing_mode": ddb.BillingMode.PROVISIONED,
                "read_capacity": table["read"]["least"],
                "write_capacity": table["write"]["least"],
            }
        ceilings = {f"max_{kind}_request_units": table[f"max_{kind}_units"]
                    for kind in ("read", "write") if table[f"max_{kind}_units"]}
        return {"billing_mode": ddb.BillingMode.PAY_PER_REQUEST, **ceilings}

    def _index_capacity(self, name: str) -> dict:
        """A global secondary index has capacity of its own: provisioned, it starts at the table's
        least units; on-demand, it takes the table's ceilings (OnDemandThroughput is per index)."""
        table = self._scale.table(name)
        if table["mode"] == "provisioned":
            return {"read_capacity": table["read"]["least"], "write_capacity": table["write"]["least"]}
        return {f"max_{kind}_request_units": table[f"max_{kind}_units"]
                for kind in ("read", "write") if table[f"max_{kind}_units"]}

    def _auto_scale(self, name: str, table: ddb.Table, indexes: tuple[str, ...]) -> None:
        """Target tracking on the consumed share of each provisioned capacity, the table's and each
        index's: reads and writes between the least and the most units, at the target utilization.
        Application Auto Scaling acts through its DynamoDB service-linked role (no role of ours).
        Equal least and most units: fixed capacity, nothing to scale."""
        settings = self._scale.table(name)
        if settings["mode"] != "provisioned":
            return
        for kind in ("read", "write"):
            least, most = settings[kind]["least"], settings[kind]["most"]
            if most == least:
                continue
            bounds = {"min_capacity": least, "max_capacity": most}
            scalers = [table.auto_scale_read_capacity(**bounds) if kind == "read"
                       else table.auto_scale_write_capacity(**bounds)]
            for index in indexes:
                scale_index = (table.auto_scale_global_secondary_index_read_capacity if kind == "read"
                               else table.auto_scale_global_secondary_index_write_capacity)
                scalers.append(scale_index(index, **bounds))
            for scaler in scalers:
                scaler.scale_on_utilization(target_utilization_percent=settings["target_percent"])
