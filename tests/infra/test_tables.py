"""The three tables: keys, streams, TTL, encryption, recovery and retention."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

KEYS = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]

TABLES = {
    "events table streams new images and expires receipts by TTL": (
        "TablesEvents",
        {"StreamViewType": "NEW_IMAGE"},
        {"AttributeName": "expires_at", "Enabled": True},
    ),
    "counters table streams both images for the alerts consumer": (
        "TablesCounters",
        {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        None,
    ),
    "billing table has no stream and no TTL": ("TablesBilling", None, None),
}


@pytest.mark.parametrize(("prefix", "stream", "ttl"), TABLES.values(), ids=TABLES.keys())
def test_table_shape(synth, prefix, stream, ttl):
    _, table = synth.one("AWS::DynamoDB::Table", prefix)
    props = table["Properties"]

    assert props["KeySchema"] == KEYS
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props.get("StreamSpecification") == stream
    assert props.get("TimeToLiveSpecification") == ttl
    assert "TableName" not in props, "names are generated so stacks can coexist"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert props["DeletionProtectionEnabled"] is False


def test_billing_table_has_gsi1_projecting_everything_and_the_wake_index_gsi2_keys_only(template):
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "gsi2",
                    "KeySchema": [
                        {"AttributeName": "gsi2pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi2sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
            ],
            "AttributeDefinitions": Match.array_with(
                [
                    {"AttributeName": "gsi1pk", "AttributeType": "S"},
                    {"AttributeName": "gsi1sk", "AttributeType": "S"},
                    {"AttributeName": "gsi2pk", "AttributeType": "S"},
                    {"AttributeName": "gsi2sk", "AttributeType": "S"},
                ]
            ),
        },
    )


def test_exactly_three_tables(template):
    template.resource_count_is("AWS::DynamoDB::Table", 3)
