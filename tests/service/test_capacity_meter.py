"""The bench's capacity meter (infra/bench/capacity.py) charges DynamoDB requests by AWS's unit rules."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.bench.capacity import (
    CapacityMeter,
    item_size,
    number_size,
    put_units,
    query_units,
    read_units,
    update_units,
    write_units,
)


def _item(pk: str, filler: int = 0, sk: str = "s") -> dict:
    item = {"pk": {"S": pk}, "sk": {"S": sk}}
    if filler:
        item["f"] = {"S": "x" * filler}
    return item


@pytest.mark.parametrize(
    "value, size",
    [
        pytest.param({"S": "héllo"}, 6, id="a string counts its UTF-8 bytes"),
        pytest.param({"N": "12345"}, 4, id="a number: 1 byte per two significant digits, plus 1"),
        pytest.param({"N": "-0.00120"}, 2, id="a number's leading and trailing zeros are trimmed"),
        pytest.param({"B": b"\x00\x01\x02"}, 3, id="a binary counts its raw bytes"),
        pytest.param({"BOOL": True}, 1, id="a boolean is one byte"),
        pytest.param({"SS": ["ab", "c"]}, 3, id="a string set sums its members"),
        pytest.param({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + (2 + 1) + (2 + 1), id="a list: 3 bytes plus 1 per element"),
        pytest.param({"M": {"k": {"S": "v"}}}, 3 + 1 + 1 + 1, id="a map counts its names too"),
    ],
)
def test_attribute_sizes_follow_aws(value, size):
    assert item_size({"a": value}) == 1 + size
    if "N" in value:
        assert number_size(value["N"]) == size


@pytest.mark.parametrize(
    "size, transactional, units",
    [
        pytest.param(0, False, 1, id="an empty write still costs one unit"),
        pytest.param(1024, False, 1, id="exactly 1 KB is one unit"),
        pytest.param(1025, False, 2, id="one byte more rounds up to two"),
        pytest.param(300, True, 2, id="a transactional write costs double"),
        pytest.param(2500, True, 6, id="a transactional 3 KB write costs six"),
    ],
)
def test_write_units_are_whole_kilobytes_per_item(size, transactional, units):
    assert write_units(size, transactional) == units


@pytest.mark.parametrize(
    "size, consistent, transactional, units",
    [
        pytest.param(100, True, False, 1.0, id="a strongly consistent read of a small item is one unit"),
        pytest.param(100, False, False, 0.5, id="an eventually consistent read costs half"),
        pytest.param(4097, True, False, 2.0, id="past 4 KB rounds up"),
        pytest.param(5000, False, True, 4.0, id="a transactional read costs double"),
    ],
)
def test_read_units_are_whole_4kb(size, consistent, transactional, units):
    assert read_units(size, consistent, transactional) == units


def test_an_update_costs_the_larger_of_before_and_after_and_a_failed_condition_the_item_as_it_is():
    small, big = _item("a", 100), _item("a", 3000)
    assert update_units(big, small) == 3
    assert update_units(small, big) == 3
    assert put_units(small, big) == 3  # the put replaces a 3 KB item
    assert put_units(big, small, succeeded=False) == 1  # the condition failed on the small item
    assert put_units(big, None, succeeded=False) == 1


def test_a_query_rounds_the_sum_once_not_per_item():
    items = [_item(str(i), 1000) for i in range(4)]  # ~4 KB together
    assert query_units(items, consistent=True) == 1.0 + (sum(map(item_size, items)) > 4096)
    assert query_units([], consistent=False) == 0.5


@pytest.fixture()
def metered(dynamo):
    client = boto3.client("dynamodb", region_name="us-east-1")  # the metered client; peek with another
    meter = CapacityMeter(peek=dynamo["client"], tables={dynamo["events"]: "ingest"})
    with meter.attached(client):
        yield meter, client, dynamo["events"]


def test_the_meter_charges_each_write_by_its_rule(metered):
    meter, client, table = metered
    client.put_item(TableName=table, Item=_item("a", 1500))  # 2 WRU
    with pytest.raises(ClientError):  # the condition fails on the 1.5 KB item: still 2 WRU
        client.put_item(TableName=table, Item=_item("a", 10), ConditionExpression="attribute_not_exists(pk)")
    client.update_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"S": "s"}},
                       UpdateExpression="SET f = :f", ExpressionAttributeValues={":f": {"S": "y"}})  # before 1.5 KB: 2
    client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": _item(f"b{i}", 10)}} for i in range(3)]})  # 3
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": _item("t1", 10)}},
        {"Put": {"TableName": table, "Item": _item("t2", 1100)}},
    ])  # 2 + 4
    usage = meter.usage("ingest")
    assert usage.wru == 2 + 2 + 2 + 3 + 6
    assert usage.requests == {"PutItem": 2, "UpdateItem": 1, "BatchWriteItem": 1, "TransactWriteItems": 1}
    assert usage.items_written == 1 + 1 + 1 + 3 + 2
    assert max(usage.write_sizes) > 1500


def test_the_meter_charges_reads_and_paths(metered):
    meter, client, table = metered
    client.put_item(TableName=table, Item=_item("q", 3000, sk="1"))
    client.put_item(TableName=table, Item=_item("q", 3000, sk="2"))
    meter.reset()
    with meter.path("alerts"):
        client.get_item(TableName=table, Key={"pk": {"S": "q"}, "sk": {"S": "1"}})  # eventual: 0.5
        client.get_item(TableName=table, Key={"pk": {"S": "none"}, "sk": {"S": "1"}}, ConsistentRead=True)  # 1
        # ~6 KB evaluated, though the projection returns only keys and the filter keeps none: 2
        client.query(TableName=table, KeyConditionExpression="pk = :p", FilterExpression="sk = :none",
                     ProjectionExpression="sk", ConsistentRead=True,
                     ExpressionAttributeValues={":p": {"S": "q"}, ":none": {"S": "0"}})
        client.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "q"}, "sk": {"S": s}} for s in "12"]}})  # 0.5 + 0.5
    meter.add_stream_records("alerts", 7)
    alerts = meter.usage("alerts")
    assert alerts.rru == 0.5 + 1 + 2 + 1
    assert alerts.wru == 0
    assert alerts.stream_records == 7
    assert alerts.items_read == 1 + 0 + 2 + 2
    assert meter.usage("ingest").rru == 0
