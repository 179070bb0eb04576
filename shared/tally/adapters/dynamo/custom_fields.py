"""Custom field keys and uniqueness claims in the billing table (services/custom_fields.py).

Keys: `cfkey#<entity>#<key>` / sk `#` registers a key (gsi1pk `customFieldKeys`, gsi1sk
`<entity>#<key>`). `cfval#<entity>#<key>#<value>` / sk `#` holds the entity id that has this value
of a key registered with enforce_uniqueness. A customer's custom fields are written here too, with
an UpdateItem conditional on the fields read (the customer item has no version), and a billable
metric's in its definition, conditional on the definition read.
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import ITEM, all_gsi1, get_item
from tally.billing import exact_json
from tally.billing.errors import Conflict, NotFound
from tally.services.custom_fields import KeyDefinition

KEYS = "customFieldKeys"


def _key_pk(entity: str, key: str) -> str:
    return f"cfkey#{entity}#{key}"


def _value_pk(entity: str, key: str, value: str) -> str:
    return f"cfval#{entity}#{key}#{value}"


def _definition(item: dict) -> KeyDefinition:
    return KeyDefinition(item["entity"]["S"], item["key"]["S"], item["enforce_uniqueness"]["BOOL"])


class DynamoCustomFieldStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def add_key(self, definition: KeyDefinition) -> None:
        item = {
            "pk": {"S": _key_pk(definition.entity, definition.key)},
            "sk": {"S": ITEM},
            "gsi1pk": {"S": KEYS},
            "gsi1sk": {"S": f"{definition.entity}#{definition.key}"},
            "entity": {"S": definition.entity},
            "key": {"S": definition.key},
            "enforce_uniqueness": {"BOOL": definition.enforce_uniqueness},
        }
        try:  # the same key again is the same key; another enforce_uniqueness is a conflict
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR enforce_uniqueness = :u",
                ExpressionAttributeValues={":u": {"BOOL": definition.enforce_uniqueness}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(
                    f"custom field key {definition.key!r} of {definition.entity} exists with another enforce_uniqueness"
                ) from exc
            raise translate(exc) from exc

    def get_key(self, entity: str, key: str) -> KeyDefinition | None:
        item = get_item(self._client, self._table, _key_pk(entity, key))
        return None if item is None else _definition(item)

    def keys(self) -> list[KeyDefinition]:
        return [_definition(item) for item in all_gsi1(self._client, self._table, KEYS)]

    def remove_key(self, entity: str, key: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": _key_pk(entity, key)}, "sk": {"S": ITEM}},
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFound(f"custom field key {key!r} of {entity} not found") from exc
            raise translate(exc) from exc

    def claim_value(self, entity: str, key: str, value: str, entity_id: str) -> bool:
        """Take a unique value for this entity; False if another entity holds it. True if taken now
        or already this entity's."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": _value_pk(entity, key, value)}, "sk": {"S": ITEM}, "entity_id": {"S": entity_id}},
                ConditionExpression="attribute_not_exists(pk) OR entity_id = :me",
                ExpressionAttributeValues={":me": {"S": entity_id}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc

    def release_value(self, entity: str, key: str, value: str, entity_id: str) -> None:
        """Give up a unique value this entity holds (nothing if it holds it no longer)."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": _value_pk(entity, key, value)}, "sk": {"S": ITEM}},
                ConditionExpression="entity_id = :me",
                ExpressionAttributeValues={":me": {"S": entity_id}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    def replace_customer_fields(self, customer_id: str, before: dict[str, str], after: dict[str, str], at: str) -> None:
        """Write a customer's custom fields, if they are still the ones read (Conflict otherwise)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"customer#{customer_id}"}, "sk": {"S": ITEM}},
                UpdateExpression="SET custom_fields = :after, updated_at = :at",
                ConditionExpression="custom_fields = :before",
                ExpressionAttributeValues={
                    ":before": {"S": json.dumps(before)},
                    ":after": {"S": json.dumps(after)},
                    ":at": {"S": at},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"customer {customer_id} changed while its custom fields were being set; retry") from exc
            raise translate(exc) from exc

    def metric_fields(self, metric_id: str) -> dict[str, str] | None:
        item = get_item(self._client, self._table, "metrics", metric_id)
        return None if item is None else dict(exact_json.loads(item["definition"]["S"]).get("custom_fields") or {})

    def replace_metric_fields(self, metric_id: str, before: dict[str, str], after: dict[str, str]) -> None:
        """Write a billable metric's custom fields, if its definition is still the one read with them."""
        item = get_item(self._client, self._table, "metrics", metric_id)
        definition = None if item is None else exact_json.loads(item["definition"]["S"])
        if definition is None or (definition.get("custom_fields") or {}) != before:
            raise Conflict(f"billable metric {metric_id} changed while its custom fields were being set; retry")
        definition["custom_fields"] = after
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": "metrics"}, "sk": {"S": metric_id}},
                UpdateExpression="SET #d = :after",
                ConditionExpression="#d = :before",
                ExpressionAttributeNames={"#d": "definition"},  # a reserved word
                ExpressionAttributeValues={
                    ":before": item["definition"],
                    ":after": {"S": exact_json.dumps(definition)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"billable metric {metric_id} changed while its custom fields were being set; retry") from exc
            raise translate(exc) from exc
