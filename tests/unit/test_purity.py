"""The domain stays pure: no AWS SDK, no Powertools, no environment, no wall clock."""

import ast
import pathlib

DOMAIN = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tally" / "billing"
FORBIDDEN_MODULES = {"boto3", "botocore", "aws_lambda_powertools", "os", "moto"}


def test_the_domain_imports_no_aws_sdk_and_reads_no_environment_or_clock():
    offenders = []
    for path in DOMAIN.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            offenders += [f"{path.name}: import {n}" for n in names if n in FORBIDDEN_MODULES]
            if isinstance(node, ast.Attribute) and node.attr in {"now", "utcnow", "today"}:
                offenders.append(f"{path.name}: .{node.attr}()")
    assert offenders == []
