"""cfn-lint over the synthesized template: no errors, and no warnings beyond CDK's own noise."""

from __future__ import annotations

import json

from cfnlint.api import ManualArgs, lint_file

# W3005 "dependency already enforced by a GetAtt": lambda.Function adds DependsOn on a role passed
# to it, although the Role property's GetAtt already orders them. CDK emits it, and it is harmless.
IGNORED = ["W3005"]


def test_template_passes_cfn_lint(synth, tmp_path):
    path = tmp_path / "Tally.template.json"
    path.write_text(json.dumps(synth.template))

    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"], ignore_checks=IGNORED))

    assert [f"{m.rule.id} {m.message} ({m.path})" for m in matches] == []


def test_the_provisioned_auto_scaled_template_passes_cfn_lint(synth_overridden, tmp_path):
    path = tmp_path / "Tally.overridden.template.json"
    path.write_text(json.dumps(synth_overridden.template))

    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"], ignore_checks=IGNORED))

    assert [f"{m.rule.id} {m.message} ({m.path})" for m in matches] == []
