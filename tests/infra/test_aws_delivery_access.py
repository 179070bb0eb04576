"""The delivery role reaches AWS Marketplace, customer topics and queues only as the deployment's
context says (infra/constructs/aws_delivery_access.py): nothing by default, exactly the listed ARNs."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from infra.constructs.aws_delivery_access import grant_aws_deliveries

TOPIC = "arn:aws:sns:us-east-1:111122223333:billing"
QUEUE = "arn:aws:sqs:us-east-1:111122223333:billing.fifo"
ROLE = "arn:aws:iam::444455556666:role/tally-metering"


def _statements(context: dict) -> list[dict]:
    stack = Stack(App(context=context), "S")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    grant_aws_deliveries(stack, role)
    policies = Template.from_stack(stack).find_resources("AWS::IAM::Policy")
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_nothing_is_granted_without_context(synth):
    assert _statements({}) == []
    role = synth.role_of("functions.deliver_invoices.handler.handler")
    actions = {a for s in synth.statements_of(role) for a in s["Action"]}
    assert not actions & {"aws-marketplace:BatchMeterUsage", "sqs:SendMessage", "sts:AssumeRole"}


def test_exactly_the_listed_topics_queues_and_roles_and_metering():
    statements = _statements({"invoice_delivery_aws_marketplace": "true", "invoice_delivery_topics": f'["{TOPIC}"]',
                              "invoice_delivery_queues": [QUEUE], "invoice_delivery_role_arns": ROLE})
    assert sorted((s["Action"], s["Resource"]) for s in statements) == [
        ("aws-marketplace:BatchMeterUsage", "*"), ("sns:Publish", TOPIC), ("sqs:SendMessage", QUEUE),
        ("sts:AssumeRole", ROLE)]


@pytest.mark.parametrize("context", [{"invoice_delivery_topics": ["arn:aws:sns:us-east-1:111122223333:*"]},
                                     {"invoice_delivery_queues": [TOPIC]}])
def test_a_wildcard_or_a_wrong_kind_of_arn_is_refused(context):
    with pytest.raises(ValueError, match="not an ARN of that kind"):
        _statements(context)
