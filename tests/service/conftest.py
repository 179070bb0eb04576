from __future__ import annotations

from datetime import datetime, timezone

import uuid

import boto3
import pytest
from moto import mock_aws

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock():
    return Clock()


def _table(client, name: str, gsi: bool = False, stream: str | None = None) -> str:
    # A unique name: when the session's local stack is up, moto is already mocked and is not reset
    # between these tests, so fixed names would collide.
    name = f"{name}-{uuid.uuid4().hex[:8]}"
    kwargs = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if gsi:
        kwargs["AttributeDefinitions"] += [
            {"AttributeName": "gsi1pk", "AttributeType": "S"},
            {"AttributeName": "gsi1sk", "AttributeType": "S"},
        ]
        kwargs["AttributeDefinitions"] += [
            {"AttributeName": "gsi2pk", "AttributeType": "S"},
            {"AttributeName": "gsi2sk", "AttributeType": "S"},
        ]
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {  # the cycle-close wake index (adapters/dynamo/close_index.py)
                "IndexName": "gsi2",
                "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}, {"AttributeName": "gsi2sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ]
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    client.create_table(**kwargs)
    return name


@pytest.fixture()
def dynamo():
    """A moto DynamoDB with the three tables shaped as the CDK app defines them, each operation
    atomic as on DynamoDB: tests race threads on conditional writes."""
    from infra.local.moto_patches import install_atomic_writes

    install_atomic_writes(reads=True)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield {
            "client": client,
            "events": _table(client, "events", stream="NEW_IMAGE"),
            "counters": _table(client, "counters", stream="NEW_AND_OLD_IMAGES"),
            "billing": _table(client, "billing", gsi=True),
        }
