"""cdk-nag (3.x) wiring. Findings go to the cloud assembly's validation-report.json; an unacknowledged
error fails synthesis. Acknowledgements live beside the resource they excuse, each with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one AwsSolutions finding (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and
    everything below it. cdk-nag 3 matches finding ids exactly, so each finding is named."""
    if not rule_id.startswith(f"{PACK}-"):
        raise ValueError(f"not an {PACK} rule id: {rule_id}")
    if not reason.strip():
        raise ValueError(f"{rule_id} needs a written reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason))
