"""cdk-nag AwsSolutions: nothing unacknowledged, and every acknowledgement is deliberate and reasoned.

cdk-nag 3 runs as a CDK policy-validation plugin: its findings land in the cloud assembly's
validation-report.json (an unacknowledged error already fails synthesis), not in stack annotations.
"""

from __future__ import annotations

from aws_cdk.assertions import Annotations, Match

# (finding, construct it is acknowledged on): adding one here should be a reviewed decision.
EXPECTED_ACKNOWLEDGEMENTS = {
    ("AwsSolutions-SMG4", "Tally/PageSigning/Key"),  # rotated by put-secret-value; the previous key verifies
    ("AwsSolutions-IAM5[Resource::*]", "Tally/Ingest/Role"),
    ("AwsSolutions-IAM5[Resource::*]", "Tally/Api/Role"),
    ("AwsSolutions-IAM5[Resource::*]", "Tally/Aggregator/Role"),
    ("AwsSolutions-L1", "Tally/Ingest/Function"),
    ("AwsSolutions-L1", "Tally/Api/Function"),
    ("AwsSolutions-L1", "Tally/Aggregator/Function"),
    ("AwsSolutions-SQS3", "Tally/Aggregator/Dlq"),
    ("AwsSolutions-APIG4", "Tally/HttpApi/Api"),
    ("AwsSolutions-IAM5[Resource::*]", "Tally/Alerts/Role"),
    ("AwsSolutions-L1", "Tally/Alerts/Function"),
    ("AwsSolutions-SQS3", "Tally/Alerts/Dlq"),
    *(
        (rule, f"Tally/CycleClose/{function}/{part}")
        for function in ("FindDuePeriods", "FinalizePeriod", "PublishInvoices", "DeliverNotifications")
        for rule, part in (("AwsSolutions-IAM5[Resource::*]", "Role"), ("AwsSolutions-L1", "Function"))
    ),
    ("AwsSolutions-SQS3", "Tally/CycleClose/Dlq"),
    ("AwsSolutions-IAM5[Resource::*]", "Tally/InvoiceDelivery/Role"),
    ("AwsSolutions-L1", "Tally/InvoiceDelivery/Function"),
    ("AwsSolutions-IAM5[Resource::*]", "Tally/Backfill/Role"),
    ("AwsSolutions-L1", "Tally/Backfill/Function"),
    # (Tally/InvoiceDelivery/Dlq raises no SQS3: it is the delivery queue's redrive target.)
    # Billing provider secrets: read by the delivery function, created and updated by the API.
    *(
        ("AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>"
         ":secret:tally/Tally/billing-providers/*]", f"Tally/{role}/Role")
        for role in ("InvoiceDelivery", "Api")
    ),
    # Logs delivery and X-Ray, and each task function's ARN + ':*' (versions and aliases).
    ("AwsSolutions-IAM5[Resource::*]", "Tally/CycleClose/StateMachine"),
    *(
        (f"AwsSolutions-IAM5[Resource::<CycleClose{function}Function{suffix}.Arn>:*]", "Tally/CycleClose/StateMachine")
        for function, suffix in (
            ("FindDuePeriods", "5851E2F6"),
            ("FinalizePeriod", "20F44B60"),
            ("PublishInvoices", "D36879EA"),
            ("DeliverNotifications", "C61402C3"),
        )
    ),
}


def _aws_solutions(synth):
    reports = synth.validation_report()["pluginReports"]
    (report,) = [p for p in reports if p["pluginName"] == "AwsSolutions"]
    return report


def test_no_unacknowledged_errors_or_warnings(synth):
    report = _aws_solutions(synth)
    open_findings = [
        (v["ruleName"], v["severity"], [c["constructPath"] for c in v["violatingConstructs"]])
        for v in report["violations"]
    ]
    assert open_findings == []
    assert report["conclusion"] == "success"


def test_no_aws_solutions_annotations_on_the_stack(synth):
    annotations = Annotations.from_stack(synth.stack)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    assert annotations.find_error("*", pattern) == []
    assert annotations.find_warning("*", pattern) == []


def test_every_acknowledgement_is_expected_and_has_a_reason(synth):
    suppressed = _aws_solutions(synth).get("suppressedViolations", [])
    assert {(s["ruleName"], s["acknowledgedAt"]) for s in suppressed} == EXPECTED_ACKNOWLEDGEMENTS
    for s in suppressed:
        assert len(s["reason"]) > 40, s


def test_provisioned_tables_with_auto_scaling_leave_no_finding_open(synth_overridden):
    """The overridden synthesis has provisioned, auto-scaled events and billing tables (and the
    events table's point-in-time recovery turned off, acknowledged where it is)."""
    report = _aws_solutions(synth_overridden)
    assert [(v["ruleName"], [c["constructPath"] for c in v["violatingConstructs"]]) for v in report["violations"]] == []
