"""Synthesize the app once per session; every infra test reads that one cloud assembly."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.app import STACK_ID, build_app  # noqa: E402


@dataclass(frozen=True)
class Synth:
    app: App
    stack: Stack
    outdir: Path
    template: dict[str, Any]

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == resource_type}

    def one(self, resource_type: str, prefix: str) -> tuple[str, dict[str, Any]]:
        """The single resource of `resource_type` whose logical id starts with `prefix`."""
        found = [(k, r) for k, r in self.of_type(resource_type).items() if k.startswith(prefix)]
        ids = [k for k, _ in found]
        assert len(found) == 1, f"expected one {resource_type} {prefix}*, found {ids}"
        return found[0]

    def function(self, handler: str) -> tuple[str, dict[str, Any]]:
        found = [
            (k, r)
            for k, r in self.of_type("AWS::Lambda::Function").items()
            if r["Properties"].get("Handler") == handler
        ]
        assert len(found) == 1, f"expected one function with handler {handler}"
        return found[0]

    def role_of(self, handler: str) -> str:
        _, function = self.function(handler)
        return function["Properties"]["Role"]["Fn::GetAtt"][0]

    def statements_of(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of every IAM policy attached to `role_id`, actions as lists."""
        statements = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    actions = statement["Action"]
                    statements.append(
                        {**statement, "Action": [actions] if isinstance(actions, str) else actions}
                    )
        return statements

    def actions_on(self, role_id: str, logical_id: str) -> set[str]:
        """Actions the role is allowed on anything derived from `logical_id` (table, index, stream)."""
        return {
            action
            for statement in self.statements_of(role_id)
            if logical_id in referenced_ids(statement["Resource"])
            for action in statement["Action"]
        }

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


def referenced_ids(value: Any) -> set[str]:
    """Logical ids referenced (Ref or Fn::GetAtt) anywhere inside a template value."""
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(referenced_ids(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(referenced_ids(v) for v in value)) if value else set()
    return set()


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(str(outdir))
    assembly = app.synth()  # raises if cdk-nag reports an unacknowledged error
    stack = app.node.find_child(STACK_ID)
    assert isinstance(stack, Stack)
    template = assembly.get_stack_by_name(STACK_ID).template
    _share_with_the_local_stack(template, outdir)
    return Synth(app, stack, outdir, template)


def _share_with_the_local_stack(template: dict[str, Any], outdir: Path) -> None:
    """The system tests' local stack synthesizes the same app (infra.app.synth_template): this
    process's synth serves both (some 6 s saved per test process). A copy, so that no infra test
    can change what the local stack deploys."""
    from infra.local import runtime

    if runtime._synthesized is None:
        runtime._synthesized = (copy.deepcopy(template), outdir)


@pytest.fixture(scope="session")
def template(synth: Synth) -> Template:
    return synth.assertions


# Context as `cdk -c key=value` passes it (strings), changing every setting the tests of context
# read (test_stack.py, test_settings.py): one more synthesis serves them all.
CONTEXT_OVERRIDES = {
    "deletion_protection": "true",
    "powertools_layer_version": "27",
    "ingest_memory_mb": "1769",
    "api_memory_mb": "2048",
    "aggregate_memory_mb": "1536",
    "alerts_memory_mb": "768",
    "delivery_memory_mb": "256",
    "backfill_memory_mb": "2048",
    "find_due_memory_mb": "640",
    "finalize_memory_mb": "3008",
    "publish_memory_mb": "256",
    "notify_memory_mb": "384",
    "events_point_in_time_recovery": "false",
    "ingest_reserved_concurrency": "200",
    "api_reserved_concurrency": "50",
    "aggregate_batch_size": "1000",
    "aggregate_batching_window_s": "5",
    "alerts_batch_size": "500",
    "alerts_batching_window_s": "2",
    "alerts_parallelization_factor": "4",
    "delivery_max_concurrency": "3",
    "api_rate_limit": "5000",
    "api_burst_limit": "5000",
    "events_billing_mode": "provisioned",
    "events_read_units": "20",
    "events_write_units": "3000",
    "billing_billing_mode": "provisioned",
    "counters_max_write_units": "12000",
    "counters_max_read_units": "8000",
    "events_max_write_units": "30000",
    "billing_max_read_units": "50",
    "table_target_utilization_percent": "60",
}


@pytest.fixture(scope="session")
def synth_overridden(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out.overridden")
    app = build_app(str(outdir), context=CONTEXT_OVERRIDES)
    assembly = app.synth()
    stack = app.node.find_child(STACK_ID)
    assert isinstance(stack, Stack)
    return Synth(app, stack, outdir, assembly.get_stack_by_name(STACK_ID).template)
