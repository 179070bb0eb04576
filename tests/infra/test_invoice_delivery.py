"""Invoice delivery: the invoices topic feeds its queue (invoice.finalized only), the queue parks
what keeps failing in an alarmed DLQ, and only this function may read billing provider secrets."""

from __future__ import annotations

import json

DELIVERY = "functions.deliver_invoices.handler.handler"
API = "functions.api.handler.handler"
SECRET_ARN = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":secretsmanager:", {"Ref": "AWS::Region"}, ":",
                                {"Ref": "AWS::AccountId"}, ":secret:tally/Tally/billing-providers/*"]]}


def _secret_statements(synth, role: str) -> list[dict]:
    return [s for s in synth.statements_of(role) if any(a.startswith("secretsmanager:") for a in s["Action"])]


def test_the_queue_gets_finalized_and_voided_invoices_raw_from_the_invoices_topic(synth):
    queue_id, _ = synth.one("AWS::SQS::Queue", "InvoiceDeliveryQueue")
    topic_id, _ = synth.one("AWS::SNS::Topic", "TopicsInvoices")
    (subscription,) = [s["Properties"] for s in synth.of_type("AWS::SNS::Subscription").values()
                       if s["Properties"]["Endpoint"] == {"Fn::GetAtt": [queue_id, "Arn"]}
                       and s["Properties"]["TopicArn"] == {"Ref": topic_id}]
    assert subscription["RawMessageDelivery"] is True
    assert subscription["FilterPolicy"] == {"type": ["invoice.finalized", "invoice.voided"]}


def test_the_queue_gets_the_threshold_crossings_of_stripe_payment_gates_from_the_alerts_topic(synth):
    queue_id, _ = synth.one("AWS::SQS::Queue", "InvoiceDeliveryQueue")
    topic_id, _ = synth.one("AWS::SNS::Topic", "TopicsAlerts")
    (subscription,) = [s["Properties"] for s in synth.of_type("AWS::SNS::Subscription").values()
                       if s["Properties"]["Endpoint"] == {"Fn::GetAtt": [queue_id, "Arn"]}
                       and s["Properties"]["TopicArn"] == {"Ref": topic_id}]
    assert subscription["RawMessageDelivery"] is True
    assert subscription["FilterPolicy"] == {"type": ["payment_gate.threshold_reached"], "payment_gate_type": ["STRIPE"]}
    role = synth.role_of(DELIVERY)
    assert "sns:Publish" in synth.actions_on(role, topic_id)  # payment_gate.payment_status


def test_a_delivery_failing_five_times_is_parked_in_an_alarmed_dlq(synth):
    _, queue = synth.one("AWS::SQS::Queue", "InvoiceDeliveryQueue")
    dlq_id, dlq = synth.one("AWS::SQS::Queue", "InvoiceDeliveryDlq")
    assert queue["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                                                    "maxReceiveCount": 5}
    assert queue["Properties"]["VisibilityTimeout"] == 360  # six times the function's 60 s
    assert queue["Properties"]["SqsManagedSseEnabled"] is True and dlq["Properties"]["SqsManagedSseEnabled"] is True
    _, alarm = synth.one("AWS::CloudWatch::Alarm", "InvoiceDeliveryDlqAlarm")
    assert alarm["Properties"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    assert (alarm["Properties"]["Threshold"], alarm["Properties"]["ComparisonOperator"]) == (
        1, "GreaterThanOrEqualToThreshold")
    function_id, function = synth.function(DELIVERY)
    assert function["Properties"]["Environment"]["Variables"]["DELIVERY_MAX_RECEIVES"] == "5"
    _, mapping = synth.one("AWS::Lambda::EventSourceMapping", "InvoiceDelivery")
    assert mapping["Properties"]["FunctionName"] == {"Ref": function_id}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_only_the_delivery_function_reads_secrets_and_only_the_api_writes_them(synth):
    delivery, api = synth.role_of(DELIVERY), synth.role_of(API)
    assert [(s["Action"], s["Resource"]) for s in _secret_statements(synth, delivery)] == [
        (["secretsmanager:GetSecretValue"], SECRET_ARN)]
    page_key, _ = synth.one("AWS::SecretsManager::Secret", "PageSigning")  # the API's one read: tests/infra/test_page_signing.py
    assert [(s["Action"], s["Resource"]) for s in _secret_statements(synth, api)] == [
        (["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue"], SECRET_ARN),
        (["secretsmanager:GetSecretValue"], {"Ref": page_key})]
    others = {r for r in synth.of_type("AWS::IAM::Role")} - {delivery, api}
    assert [r for r in others if _secret_statements(synth, r)] == []


def test_the_delivery_role_reads_the_billing_table_writes_only_updates_and_publishes_to_the_invoices_topic(synth):
    role = synth.role_of(DELIVERY)
    billing, _ = synth.one("AWS::DynamoDB::Table", "TablesBilling")
    # PutItem: a declined STRIPE payment gate turns the contract's threshold configuration off.
    assert synth.actions_on(role, billing) == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem",
                                               "dynamodb:PutItem"}
    topic_id, _ = synth.one("AWS::SNS::Topic", "TopicsInvoices")
    assert "sns:Publish" in synth.actions_on(role, topic_id)
    assert all("*" != s["Resource"] or s["Action"][0].startswith("xray:") for s in synth.statements_of(role)
               if s["Resource"] == "*"), json.dumps(synth.statements_of(role))[:500]
