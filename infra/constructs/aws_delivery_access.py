"""What the delivery function may reach through AWS (issue 17), from deploy-time context, nothing by
default: customer configurations are made at run time through the API, so the role names the
topics, queues and roles a deployment allows, and only those.

    cdk deploy -c invoice_delivery_aws_marketplace=true \\
        -c invoice_delivery_topics='["arn:aws:sns:us-east-1:111122223333:billing"]' \\
        -c invoice_delivery_queues='["arn:aws:sqs:us-east-1:111122223333:billing.fifo"]' \\
        -c invoice_delivery_role_arns='["arn:aws:iam::444455556666:role/tally-metering"]'

- aws_marketplace: aws-marketplace:BatchMeterUsage, which takes no resource (IAM has none for it).
- aws_sns / aws_sqs: sns:Publish / sqs:SendMessage on exactly the listed ARNs. A topic or queue in
  another account must also allow the delivery role in its resource policy (README).
- setUpBillingProvider's aws_iam_role_arn: sts:AssumeRole on exactly the listed roles.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk import aws_iam as iam
from constructs import Construct

_ARN = {
    "invoice_delivery_topics": re.compile(r"^arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$"),
    "invoice_delivery_queues": re.compile(r"^arn:aws(?:-[a-z]+)*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$"),
    "invoice_delivery_role_arns": re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+$"),
}


def _arns(scope: Construct, key: str) -> list[str]:
    value: Any = scope.node.try_get_context(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):  # `cdk -c key='[...]'` passes a string
        value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v.strip()]
    arns = [str(v).strip() for v in value]
    for arn in arns:
        if not _ARN[key].match(arn):  # no wildcards: exactly the resources the deployment names
            raise ValueError(f"context {key}: {arn!r} is not an ARN of that kind")
    return arns


def _flag(scope: Construct, key: str) -> bool:
    value = scope.node.try_get_context(key)
    return value is True or str(value).strip().lower() in {"true", "1", "yes"}


def grant_aws_deliveries(scope: Construct, role: iam.IRole) -> None:
    """Add to `role` (the delivery function's) what the context allows, and nothing else."""
    if _flag(scope, "invoice_delivery_aws_marketplace"):
        # BatchMeterUsage has no resource-level permission: "*" is the only resource IAM takes
        # (acknowledged with the role's other Resource::* finding, infra/constructs/invoice_delivery.py).
        role.add_to_principal_policy(iam.PolicyStatement(actions=["aws-marketplace:BatchMeterUsage"], resources=["*"]))
    for key, action in (("invoice_delivery_topics", "sns:Publish"), ("invoice_delivery_queues", "sqs:SendMessage"),
                        ("invoice_delivery_role_arns", "sts:AssumeRole")):
        arns = _arns(scope, key)
        if arns:
            role.add_to_principal_policy(iam.PolicyStatement(actions=[action], resources=arns))
