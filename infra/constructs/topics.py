"""The SNS topics Tally publishes to: finalized invoices and alert crossings.

Both are encrypted with one customer-managed key (rotated yearly). Not the AWS managed
`alias/aws/sns` key: its key policy cannot be edited, so EventBridge, CloudWatch alarms or another
account could never publish or subscribe; ours can be granted when one needs to. Publishers get
`sns:Publish` plus the key's GenerateDataKey and Decrypt through `Topics.grant_publish`.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

# Env vars that carry the topic ARNs to a function (read lazily by tally.settings).
INVOICES_TOPIC_ENV = "INVOICES_TOPIC_ARN"
ALERTS_TOPIC_ENV = "ALERTS_TOPIC_ARN"


class Topics(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        # Messages are notifications, not records (the invoice and alert state live in DynamoDB),
        # but the key also decrypts messages still in flight: keep it if the stack goes.
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts Tally's SNS topics (invoices, alerts)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.invoices = self._topic("Invoices", "Tally finalized invoices")
        self.alerts = self._topic("Alerts", "Tally alert crossings")

    def _topic(self, construct_id: str, display_name: str) -> sns.Topic:
        # enforce_ssl adds a topic policy that denies any publish or subscribe not over TLS.
        return sns.Topic(
            self, construct_id, display_name=display_name, master_key=self.key, enforce_ssl=True
        )

    def grant_publish(self, grantee: iam.IGrantable, *topics: sns.ITopic) -> None:
        """sns:Publish on exactly `topics`, and the two key actions SNS needs from a publisher of an
        encrypted topic. Named here rather than through `Topic.grant_publish`, whose
        `kms:GenerateDataKey*` wildcard cdk-nag (IAM5) rightly refuses."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[t.topic_arn for t in topics])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn])
        )
