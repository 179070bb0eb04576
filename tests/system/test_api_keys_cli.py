"""`tally keys` manages the keys of a deployment through any AWS endpoint; here, the local stack's."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.system


def tally(local_stack, *args: str) -> str:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
    run = subprocess.run(
        [sys.executable, "-m", "infra.cli", "keys", *args, "--stack", "Tally", "--endpoint-url", local_stack.aws_endpoint],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def customers(local_stack, key: str) -> httpx.Response:
    return httpx.get(f"{local_stack.base_url}/v1/customers", headers={"Authorization": f"Bearer {key}"})


def test_a_key_created_with_the_cli_authenticates_and_a_revoked_one_does_not(local_stack):
    created = tally(local_stack, "create", "backend").strip().splitlines()
    key_id, token = created[0].split()[-1], created[-1]
    assert token.startswith("tally_")
    assert customers(local_stack, token).status_code == 200

    second = tally(local_stack, "create", "leaked").strip().splitlines()
    second_id, second_token = second[0].split()[-1], second[-1]
    tally(local_stack, "revoke", second_id)
    refused = customers(local_stack, second_token)
    assert refused.status_code == 401
    assert refused.json()["message"]

    listing = tally(local_stack, "list")
    assert key_id in listing and second_id in listing
    assert token not in listing and second_token not in listing  # secrets are never shown again


def test_keys_are_stored_only_as_hashes(local_stack):
    import boto3

    token = tally(local_stack, "create", "hash-check").strip().splitlines()[-1]
    dump = str(boto3.client("dynamodb").scan(TableName=local_stack.table("BillingTableName"))["Items"])
    assert token not in dump
