"""The CDK app. `python -m infra.app` and `npx aws-cdk@2 synth` both synthesize it offline."""

from __future__ import annotations

import os
from typing import Any

# jsii prints a banner on every start under Node 20 (the Node on these machines); set before the
# first aws_cdk import so importers such as the local runtime stay quiet.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402

from infra.assets import REPO_ROOT  # noqa: E402
from infra.nag import add_checks  # noqa: E402
from infra.stack import TallyStack  # noqa: E402

STACK_ID = "Tally"


def build_app(outdir: str | None = None, *, context: dict[str, Any] | None = None) -> App:
    """The app with the Tally stack and the cdk-nag AwsSolutions checks (run at synthesis)."""
    app = App(outdir=outdir, context=context)
    TallyStack(app, STACK_ID, description="Tally usage-based billing engine")
    add_checks(app)
    return app


def synth_template(outdir: str | None = None) -> dict[str, Any]:
    """The synthesized CloudFormation template of the Tally stack, as a dict."""
    assembly = build_app(outdir).synth()
    return assembly.get_stack_by_name(STACK_ID).template


if __name__ == "__main__":
    # Under the CDK CLI, App reads CDK_OUTDIR itself; run directly, write to <repo>/cdk.out.
    build_app(None if "CDK_OUTDIR" in os.environ else str(REPO_ROOT / "cdk.out")).synth()
