"""AWS sessions and stack outputs for the commands that talk to a deployment (`tally keys`, `tally quarantine`,
`tally local tail`)."""

from __future__ import annotations

from typing import Any

from infra.cli.errors import USAGE, UserError

# What the local stack serves (infra/local/runtime.py deploys there), and what moto accepts as credentials.
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def checked_url(option: str, value: str) -> str:
    """`value` if it is an http(s) URL; otherwise a usage error naming `option`."""
    if not value.startswith(("http://", "https://")):
        raise UserError(f"{option} {value!r} is not a URL: write it like http://127.0.0.1:4566", USAGE)
    return value.rstrip("/")


def aws_session(endpoint_url: str | None) -> Any:
    """A boto3 session: the usual chain against AWS; against an emulated endpoint, whatever is configured,
    with us-east-1 and dummy credentials filling in only what is missing (so a newcomer needs no AWS set-up)."""
    import boto3

    session = boto3.Session()
    if endpoint_url is None:
        return session
    checked_url("--endpoint-url", endpoint_url)
    region = session.region_name or LOCAL_REGION
    if session.get_credentials() is None:
        return boto3.Session(region_name=region, **LOCAL_CREDENTIALS)
    if session.region_name is None:
        return boto3.Session(region_name=LOCAL_REGION)  # keeps the profile AWS_PROFILE names, if any
    return session


def where(session: Any, endpoint_url: str | None) -> str:
    """`in us-east-1 at http://...`, for messages that must say which deployment was asked."""
    return f"in {session.region_name} at {endpoint_url}" if endpoint_url else f"in {session.region_name}"


def stack_output(session: Any, stack: str, key: str, endpoint_url: str | None) -> str:
    """The value of output `key` of CloudFormation stack `stack`; a UserError if either is missing."""
    from botocore.exceptions import ClientError

    client = session.client("cloudformation", endpoint_url=endpoint_url)
    try:
        described = client.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as exc:
        # CloudFormation answers a missing stack with a ValidationError, not a NotFound code.
        if "does not exist" not in exc.response.get("Error", {}).get("Message", ""):
            raise
        local_elsewhere = endpoint_url and session.region_name != LOCAL_REGION
        hint = f" (the local stack runs in {LOCAL_REGION})" if local_elsewhere else ""
        raise UserError(
            f"stack {stack!r} not found {where(session, endpoint_url)}{hint}: check --stack and --endpoint-url"
        ) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if key not in outputs:
        raise UserError(f"stack {stack!r} has no {key} output: is it a Tally deployment? (check --stack)")
    return outputs[key]
