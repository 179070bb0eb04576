"""The local stack's moto serializes each DynamoDB request whole, answer included.

moto builds a read's answer after its backend call returns, from the live item objects: BatchGetItem
sums `item.size()` over their attributes, and every read serializes them. An UpdateItem in another
thread that added an attribute meanwhile made the read fail with "dictionary changed size during
iteration", a 500 from the local API (seen in CI: a metric list while the backfill job wrote its
progress). Each check watches the item while the answer is built and asks whether the reading thread
holds the lock every DynamoDB write takes (`RLock._is_owned`)."""

from __future__ import annotations

import pytest
from moto.dynamodb.models.dynamo_type import Item

from infra.local import moto_patches

KEY = {"pk": {"S": "c#1"}, "sk": {"S": "m#1"}}


def _reads(client, table):
    return {
        "batch_get_item": lambda: client.batch_get_item(RequestItems={table: {"Keys": [KEY]}})["Responses"][table],
        "get_item": lambda: [client.get_item(TableName=table, Key=KEY)["Item"]],
        "query": lambda: client.query(
            TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": KEY["pk"]}
        )["Items"],
    }


@pytest.mark.parametrize("read", ["batch_get_item", "get_item", "query"])
def test_a_read_builds_its_answer_while_holding_the_lock_writes_take(dynamo, monkeypatch, read):
    client, table = dynamo["client"], dynamo["billing"]
    client.put_item(TableName=table, Item={**KEY, "n": {"S": "x"}})
    held: list[bool] = []

    def observed(method):
        def watched(self, *args, **kwargs):
            held.append(moto_patches.writes_paused()._is_owned())
            return method(self, *args, **kwargs)

        return watched

    for name in ("size", "to_json", "describe_attrs"):  # what moto's answers read the item with
        monkeypatch.setattr(Item, name, observed(getattr(Item, name)))
    assert len(_reads(client, table)[read]()) == 1
    assert held and all(held), held
