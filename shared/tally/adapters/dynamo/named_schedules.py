"""Billing table: named schedules (services/named_schedules.py).

Keys: `named_schedule#<owner>` (owner: `rate_card#<id>`, `contract#<id>`, `customer#<id>`) / sk the
SHA-256 of the schedule's name and properties, so any name fits the 1,024-byte sort key; the name
and properties are kept beside it. An owner's schedules are one Query. Each item holds the
segments as exact JSON (values keep their Decimals) and a `version`; a put is conditional on the
version read, so concurrent updates never overwrite each other.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import all_items, get_item
from tally.billing import exact_json
from tally.billing.errors import Conflict
from tally.billing.named_schedules import Segment
from tally.billing.time import parse_rfc3339
from tally.services.named_schedules import StoredSchedule, segment_document


def _pk(owner: str) -> str:
    return f"named_schedule#{owner}"


def _sk(name: str, properties: Mapping[str, str]) -> str:
    identity = exact_json.dumps([name, sorted(properties.items())])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _schedule(owner: str, item: dict) -> StoredSchedule:
    segments = tuple(
        Segment(
            parse_rfc3339(s["starting_at"]),
            None if s.get("ending_before") is None else parse_rfc3339(s["ending_before"]),
            s["value"],
        )
        for s in exact_json.loads(item["document"]["S"])
    )
    return StoredSchedule(
        owner,
        item["name"]["S"],
        exact_json.loads(item["properties"]["S"]),
        segments,
        int(item["version"]["N"]),
    )


class DynamoNamedScheduleStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def get(self, owner: str, name: str, properties: Mapping[str, str]) -> StoredSchedule | None:
        item = get_item(self._client, self._table, _pk(owner), _sk(name, properties))
        return None if item is None else _schedule(owner, item)

    def put(self, schedule: StoredSchedule) -> None:
        item = {
            "pk": {"S": _pk(schedule.owner)},
            "sk": {"S": _sk(schedule.name, schedule.properties)},
            "name": {"S": schedule.name},
            "properties": {"S": exact_json.dumps(dict(sorted(schedule.properties.items())))},
            "document": {"S": exact_json.dumps([segment_document(s) for s in schedule.segments])},
            "version": {"N": str(schedule.version + 1)},
        }
        if schedule.version:
            condition = {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(schedule.version)}}}
        else:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict("the named schedule changed while it was being updated; retry") from exc
            raise translate(exc) from exc

    def of_owner(self, owner: str) -> list[StoredSchedule]:
        return [_schedule(owner, item) for item in all_items(self._client, self._table, _pk(owner))]
