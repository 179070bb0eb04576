"""Packages in the billing table (services/packages.py).

Keys: `package#<id>` / `#` holds the package (exact JSON) and a `version`; every package is listed
through gsi1 `packages`, sorted by `<created_at>#<id>` (packages are few and written rarely, so one
partition stays cool). An alias's schedule is one item, `package_alias#<name>` / `#`, rewritten
conditionally on its version in the transaction that creates the package taking it; a
`uniqueness_key` claims `package_uniq#<key>` in that transaction too. A contract made from a package
is linked by `package_contracts#<package_id>` / `<starting_at>#<contract_id>`, written in the
contract's create transaction (documents.DynamoContractStore).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import claim, dynamodb, error_code, translate
from tally.adapters.dynamo.documents import _document, _stored
from tally.adapters.dynamo.reads import ITEM, batch_get, get_item
from tally.billing import exact_json
from tally.billing.errors import Conflict
from tally.billing.time import format_sortable, parse_rfc3339

PACKAGES = "packages"
PART_KINDS = ("commits", "credits", "subscriptions", "scheduled_charges")  # parts custom fields can name


def _item(package: dict, version: int) -> dict:
    return {
        "pk": {"S": f"package#{package['id']}"},
        "sk": {"S": ITEM},
        "gsi1pk": {"S": PACKAGES},
        "gsi1sk": {"S": f"{format_sortable(parse_rfc3339(package['created_at']))}#{package['id']}"},
        "document": {"S": exact_json.dumps(_stored(package))},
        "version": {"N": str(version)},
    }


def _alias_pk(name: str) -> str:
    return f"package_alias#{name}"


class DynamoPackageStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def create(self, package: dict, aliases: dict[str, tuple[list[dict], int | None]], uniqueness_key: str | None) -> None:
        # Idempotent by key: the package id is new, each alias schedule is written only over the
        # version it was computed from, and the uniqueness claim only if nobody holds it.
        actions: list[dict] = [
            {"Put": {"TableName": self._table, "Item": _item(package, 1), "ConditionExpression": "attribute_not_exists(pk)"}}
        ]
        for name, (entries, version) in aliases.items():
            put: dict = {
                "TableName": self._table,
                "Item": {"pk": {"S": _alias_pk(name)}, "sk": {"S": ITEM}, "entries": {"S": exact_json.dumps(entries)},
                         "version": {"N": str((version or 0) + 1)}},
            }
            if version is None:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                put["ConditionExpression"] = "version = :v"
                put["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
            actions.append({"Put": put})
        if uniqueness_key is not None:
            actions.append(claim(self._table, f"package_uniq#{uniqueness_key}", package_id=package["id"]))
        self._index_parts(package)
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if uniqueness_key is not None and codes and codes[-1] == "ConditionalCheckFailed":
                raise Conflict(f"a package with uniqueness_key {uniqueness_key!r} already exists") from exc
            if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes):
                raise Conflict("an alias of the package was assigned meanwhile; retry") from exc
            raise translate(exc) from exc

    def _index_parts(self, package: dict) -> None:
        # `package_part#<part id>` / `#` names the package holding a commit, credit, subscription or
        # scheduled charge (custom field values name a part by its id alone). Written before the
        # package, as idempotent puts by key (a part id is a new uuid, in one package for ever): an
        # entry whose package write then failed names a package that is not there, or not with it.
        ids = sorted(p["id"] for kind in PART_KINDS for p in package.get(kind) or ())
        for start in range(0, len(ids), 25):  # BatchWriteItem's most
            pending = {self._table: [
                {"PutRequest": {"Item": {"pk": {"S": f"package_part#{i}"}, "sk": {"S": ITEM}, "package_id": {"S": package["id"]}}}}
                for i in ids[start:start + 25]
            ]}
            try:
                while pending:  # resending unprocessed puts is safe
                    pending = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            except ClientError as exc:
                raise translate(exc) from exc

    def part_owner(self, part_id: str) -> str | None:
        item = get_item(self._client, self._table, f"package_part#{part_id}")
        return None if item is None else item["package_id"]["S"]

    def get(self, package_id: str) -> dict | None:
        item = get_item(self._client, self._table, f"package#{package_id}")
        return None if item is None else _document(item)

    def replace(self, package: dict) -> None:
        version = package["_version"]
        try:
            self._client.put_item(
                TableName=self._table, Item=_item(package, version + 1),
                ConditionExpression="version = :v", ExpressionAttributeValues={":v": {"N": str(version)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict("the package changed while it was being updated; retry") from exc
            raise translate(exc) from exc

    def page(self, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        kwargs: dict = {
            "TableName": self._table, "IndexName": "gsi1", "Limit": limit,
            "KeyConditionExpression": "gsi1pk = :p" + (" AND gsi1sk > :a" if after else ""),
            "ExpressionAttributeValues": {":p": {"S": PACKAGES}, **({":a": {"S": after}} if after else {})},
        }
        try:
            answer = self._client.query(**kwargs)
        except ClientError as exc:
            raise translate(exc) from exc
        items = answer["Items"]
        cursor = items[-1]["gsi1sk"]["S"] if items and answer.get("LastEvaluatedKey") else None
        return [_document(item) for item in items], cursor

    def alias_schedules(self, names: list[str]) -> dict[str, tuple[list[dict], int]]:
        keys = [{"pk": {"S": _alias_pk(n)}, "sk": {"S": ITEM}} for n in names]
        return {item["pk"]["S"].removeprefix("package_alias#"): (exact_json.loads(item["entries"]["S"]), int(item["version"]["N"]))
                for item in batch_get(self._client, self._table, keys)}
