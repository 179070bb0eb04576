"""The invoices and alerts topics: encrypted with a rotated customer-managed key, TLS only, exported."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["Invoices", "Alerts"])
def test_topic_is_encrypted_with_the_rotated_topics_key(synth, name):
    key_id, key = synth.one("AWS::KMS::Key", "TopicsKey")
    assert key["Properties"]["EnableKeyRotation"] is True
    _, topic = synth.one("AWS::SNS::Topic", f"Topics{name}")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


@pytest.mark.parametrize("name", ["Invoices", "Alerts"])
def test_topic_refuses_plain_http(synth, name):
    topic_id, _ = synth.one("AWS::SNS::Topic", f"Topics{name}")
    policies = [
        p
        for p in synth.of_type("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in p["Properties"]["Topics"]
    ]
    (policy,) = policies
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


@pytest.mark.parametrize("output, name", [("InvoicesTopicArn", "Invoices"), ("AlertsTopicArn", "Alerts")])
def test_topic_arns_are_stack_outputs(synth, output, name):
    topic_id, _ = synth.one("AWS::SNS::Topic", f"Topics{name}")
    assert synth.template["Outputs"][output]["Value"] == {"Ref": topic_id}
