"""The reads every billing-table adapter does: one item by key, a whole partition, and a gsi1 partition."""

from __future__ import annotations

from typing import Iterator

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import translate

ITEM = "#"  # the sort key of single-item entities (customers, products, contracts, ...)
# Catalog documents (metrics, products, rates) a warm function keeps parsed, by their stored text:
# every draft invoice reads the card's rates, the products and the metrics, and the same text
# always parses to the same immutable value, so an edit is a new text and is parsed anew.
PARSED_KEPT = 4096


def get_item(client, table: str, pk: str, sk: str = ITEM) -> dict | None:
    """One item, read consistently."""
    try:
        return client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get("Item")
    except ClientError as exc:
        raise translate(exc) from exc


BATCH_GET_KEYS = 100  # DynamoDB's most keys per BatchGetItem


def batch_get(client, table: str, keys: list[dict], projection: str | None = None, consistent: bool = True) -> list[dict]:
    """The items of `keys` that exist (in no particular order): one BatchGetItem per 100 keys,
    sending the unprocessed keys again until none are left."""
    items: list[dict] = []
    unique = list({(k["pk"]["S"], k["sk"]["S"]): k for k in keys}.values())  # DynamoDB refuses a key twice
    for start in range(0, len(unique), BATCH_GET_KEYS):
        request: dict | None = {table: {"Keys": unique[start : start + BATCH_GET_KEYS], "ConsistentRead": consistent,
                                        **({"ProjectionExpression": projection} if projection else {})}}
        while request:
            try:
                answer = client.batch_get_item(RequestItems=request)
            except ClientError as exc:
                raise translate(exc) from exc
            items.extend(answer.get("Responses", {}).get(table, []))
            request = answer.get("UnprocessedKeys") or None
    return items


def query_pages(client, **request) -> Iterator[dict]:
    """The items of one Query, page after page (ClientErrors translated), read as they come."""
    while True:
        try:
            page = client.query(**request)
        except ClientError as exc:
            raise translate(exc) from exc
        yield from page["Items"]
        if not page.get("LastEvaluatedKey"):
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def all_items(client, table: str, pk: str) -> list[dict]:
    """Every item of a partition of the table, all pages, read consistently, in sort-key order."""
    return list(query_pages(
        client,
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": pk}},
        ConsistentRead=True,
    ))


def query_gsi1(client, table: str, partition: str, limit: int | None = None, start_key: dict | None = None) -> tuple[list[dict], dict | None]:
    """One page of a gsi1 partition (eventually consistent), and the key to continue from."""
    kwargs = {
        "TableName": table,
        "IndexName": "gsi1",
        "KeyConditionExpression": "gsi1pk = :p",
        "ExpressionAttributeValues": {":p": {"S": partition}},
    }
    if limit is not None:
        kwargs["Limit"] = limit
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    try:
        response = client.query(**kwargs)
    except ClientError as exc:
        raise translate(exc) from exc
    return response["Items"], response.get("LastEvaluatedKey")


def all_gsi1(client, table: str, partition: str) -> list[dict]:
    """Every item of a gsi1 partition, all pages."""
    items: list[dict] = []
    start_key = None
    while True:
        page, start_key = query_gsi1(client, table, partition, start_key=start_key)
        items.extend(page)
        if not start_key:
            return items
