"""infra/local/moto_speed.py's memos change how often moto parses, never what it answers."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.parsing.expressions import UpdateExpressionParser

from infra.local import moto_speed

ADD = "ADD v :v, #h :v SET #m = :m"
ONLY_NEWER = "attribute_not_exists(#m) OR #m < :m"


@pytest.fixture()
def table():
    moto_speed.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _add(client, key: str, hour: str, mark: int, value: str = "3") -> None:
    client.update_item(
        TableName="t", Key={"pk": {"S": key}, "sk": {"S": "D1"}},
        UpdateExpression=ADD, ConditionExpression=ONLY_NEWER,
        ExpressionAttributeNames={"#h": hour, "#m": "mark"},
        ExpressionAttributeValues={":v": {"N": value}, ":m": {"N": str(mark)}},
    )


def test_the_same_expressions_with_other_names_values_and_items_apply_as_written(table):
    parsed_before = UpdateExpressionParser.make_memo.cache_info().hits
    _add(table, "a", "h01", 1)
    _add(table, "a", "h02", 2, "4.5")
    _add(table, "b", "h01", 1, "-1")
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        _add(table, "a", "h03", 2)  # not newer than the mark: refused, nothing changes
    items = {i["pk"]["S"]: i for i in table.scan(TableName="t")["Items"]}
    assert items["a"]["v"] == {"N": "7.5"} and items["a"]["h01"] == {"N": "3"} and items["a"]["h02"] == {"N": "4.5"}
    assert "h03" not in items["a"] and items["a"]["mark"] == {"N": "2"}
    assert items["b"]["v"] == {"N": "-1"} and "h02" not in items["b"]
    # the memos were used: the same update text was parsed once, however many times it was sent
    assert UpdateExpressionParser.make_memo.cache_info().hits > parsed_before
    assert ONLY_NEWER in ConditionExpressionParser.lex_memo


def test_a_malformed_expression_is_refused_every_time(table):
    for _ in range(2):
        with pytest.raises(ClientError, match="ValidationException"):
            table.update_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "D1"}}, UpdateExpression="ADD v")
        with pytest.raises(Exception):  # noqa: B017 - moto's own error for it (a ValueError), memo or not
            table.put_item(TableName="t", Item={"pk": {"S": "a"}, "sk": {"S": "D1"}}, ConditionExpression="attribute_not_exists(pk) AND")
    assert table.scan(TableName="t")["Items"] == []


def test_only_dynamodb_requests_of_the_default_session_go_unsigned(table):
    import boto3

    sent: dict[str, object] = {}

    def seen(request, **_):
        sent[request.url.split("//")[1].split(".")[0]] = request.headers.get("Authorization")

    for service in ("dynamodb", "sqs"):
        client = boto3.client(service, region_name="us-east-1")
        client.meta.events.register("before-send", seen)
        client.list_tables() if service == "dynamodb" else client.list_queues()
    assert sent["dynamodb"] is None
    assert sent["sqs"] is not None and b"Signature=" in sent["sqs"]  # other services keep their accounts


def test_requests_to_an_endpoint_url_keep_their_signature(table):
    import boto3

    sent = []
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://localhost:1")
    client.meta.events.register("before-send", lambda request, **_: sent.append(request.headers.get("Authorization")) or _Answered())
    client.list_tables()
    assert sent and sent[0] is not None and b"Signature=" in sent[0]


class _Answered:
    """What a before-send handler returns to stand in for the network: an empty DynamoDB answer."""

    status_code = 200
    headers: dict = {}
    content = b"{}"
    text = "{}"
    raw = None


def test_a_refused_transaction_leaves_every_item_and_the_stream_as_they_were(dynamo):
    client, counters = dynamo["client"], dynamo["counters"]  # a table with a stream
    key = {"pk": {"S": "c#1"}, "sk": {"S": "D1"}}
    client.put_item(TableName=counters, Item={**key, "v": {"N": "5"}})
    shard = _stream_length(client, counters)
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[
            {"Update": {"TableName": counters, "Key": key, "UpdateExpression": "ADD v :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Put": {"TableName": counters, "Item": {"pk": {"S": "c#2"}, "sk": {"S": "D1"}, "v": {"N": "1"}}}},
            {"Put": {"TableName": counters, "Item": {"pk": {"S": "c#1"}, "sk": {"S": "D2"}, "v": {"N": "1"}}}},
            {"ConditionCheck": {"TableName": counters, "Key": {"pk": {"S": "c#3"}, "sk": {"S": "D1"}}, "ConditionExpression": "attribute_exists(pk)"}},
        ])
    assert client.scan(TableName=counters)["Items"] == [{**key, "v": {"N": "5"}}]
    assert _stream_length(client, counters) == shard
    client.transact_write_items(TransactItems=[  # and one that passes is applied whole
        {"Update": {"TableName": counters, "Key": key, "UpdateExpression": "ADD v :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Put": {"TableName": counters, "Item": {"pk": {"S": "c#2"}, "sk": {"S": "D1"}, "v": {"N": "1"}}}},
    ])
    assert sorted((i["pk"]["S"], i["v"]["N"]) for i in client.scan(TableName=counters)["Items"]) == [("c#1", "6"), ("c#2", "1")]


def _stream_length(client, table: str) -> int:
    from moto.dynamodb.models import dynamodb_backends

    return len(dynamodb_backends["123456789012"]["us-east-1"].tables[table].stream_shard.items)


RICH = {
    "pk": {"S": "c#1"}, "sk": {"S": "D1"},
    "n": {"N": "-12.500"}, "big": {"N": "123456789012345678901234567890.12345678"},
    "yes": {"BOOL": True}, "none": {"NULL": True}, "tags": {"SS": ["a", "é", "日本"]}, "nums": {"NS": ["1", "2.5"]},
    "blob": {"B": b"\x00\xffbin"}, "blobs": {"BS": [b"x", b"y"]},
    "map": {"M": {"inner": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"B": b"\x01"}}}, {"NULL": True}]}, "s": {"S": ""}}},
    "list": {"L": [{"M": {"k": {"S": "v"}}}, {"L": []}, {"BOOL": False}]},
}


def test_answers_written_without_the_generic_walk_equal_the_walks(table, monkeypatch):
    from moto.core.serialize import JSONSerializer

    table.put_item(TableName="t", Item=RICH)
    table.put_item(TableName="t", Item={"pk": {"S": "c#1"}, "sk": {"S": "D2"}, "v": {"N": "1"}})
    table.put_item(TableName="t", Item={"pk": {"S": "c#2"}, "sk": {"S": "D1"}, "v": {"N": "1"}})

    def answers():
        return [
            table.get_item(TableName="t", Key={"pk": {"S": "c#1"}, "sk": {"S": "D1"}})["Item"],
            table.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "c#1"}})["Items"],
            table.scan(TableName="t", FilterExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "c#1"}})["Items"],
            table.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "c#1"}, "sk": {"S": "D1"}}]}})["Responses"]["t"],
            table.update_item(TableName="t", Key={"pk": {"S": "c#2"}, "sk": {"S": "D1"}}, UpdateExpression="ADD v :one",
                              ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="ALL_OLD")["Attributes"],
        ]

    fast = answers()
    monkeypatch.setattr(JSONSerializer, "_serialize", JSONSerializer.generic_serialize)
    walked = answers()
    assert fast[0] == RICH and fast[1][0] == RICH  # every type as it was written, binary included
    assert fast[:4] == walked[:4]
    assert fast[4] == {"pk": {"S": "c#2"}, "sk": {"S": "D1"}, "v": {"N": "1"}}
    assert walked[4] == {"pk": {"S": "c#2"}, "sk": {"S": "D1"}, "v": {"N": "2"}}
