"""Finalized and voided invoices in the billing table (InvoiceStore in services/invoice_records.py).

Keys:
- `invoice#<id>` / sk `#`: `document` (the immutable record, exact JSON), and beside it what may
  change: `status` (FINALIZED -> VOID), `voided_at`, `regenerated_invoice_id`, and the publication
  claim (`publish_token`, `publish_claimed_at`, `published_at`, `sns_message_id`). A customer's
  records are listed through gsi1 (`invoices#<customer_id>`, by period start then id).
- `invoice_records#<customer_id>` / sk `#`: `written`, how many records the customer has. Every
  create is one transaction that puts the new records (attribute_not_exists) and moves `written`
  from the value the writer read: so a record is written once, and a finalization computed from a
  view that another writer changed meanwhile is refused (FinalizationRaced) and recomputed. A
  finalization is also conditional on its contract's `version` (documents.py), read before pricing.
  The same item holds the customer's balance checkpoint (`checkpoint`, exact JSON; services/
  invoice_records.BalanceCheckpoint), set by the finalization that made it in that same write and
  removed by any other create (a regenerate, historical invoices), and `voids`, how many records
  were voided: a void adds 1 in one transaction with the record's status, so a checkpoint made
  before it (with fewer voids) is never used again.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Sequence

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.close_index import woken_update
from tally.adapters.dynamo.reads import ITEM, all_gsi1, get_item, query_pages
from tally.billing import exact_json
from tally.billing.errors import Conflict
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.invoice_records import (
    FINALIZED,
    VOID,
    BalanceCheckpoint,
    FinalizationRaced,
    StoredInvoice,
    checkpoint_document,
    checkpoint_from_document,
    record_document,
    record_from_document,
)

# A transaction holds at most 100 items: the counter, a voided record, the contract check, the
# customer-level grant edits check, the new records.
MAX_RECORDS_PER_WRITE = 96


def _key(invoice_id: str) -> dict:
    return {"pk": {"S": f"invoice#{invoice_id}"}, "sk": {"S": ITEM}}


def records_unchanged(table: str, customer_id: str, written: int) -> dict:
    """A transaction ConditionCheck: the customer still has `written` records (nothing was
    finalized, voided into a regenerate or regenerated since they were counted)."""
    check: dict = {"TableName": table, "Key": {"pk": {"S": f"invoice_records#{customer_id}"}, "sk": {"S": ITEM}}}
    if written == 0:
        check["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        check["ConditionExpression"] = "written = :w"
        check["ExpressionAttributeValues"] = {":w": {"N": str(written)}}
    return {"ConditionCheck": check}


def _time(item: dict, name: str) -> datetime | None:
    return parse_rfc3339(item[name]["S"]) if name in item else None


# Records a warm function keeps parsed, by their stored attributes: a finalized invoice's document
# never changes (its status, publication and custom fields are attributes of the key too), and every
# read of a customer's invoices lists all of its records. A record keeps its lines and drawdowns as
# stored until asked (invoice_records.ParsedOnUse), some 100-200 KB for 60 lines: 256 of them bound
# what a function keeps to a few tens of MB.
RECORDS_KEPT = 256
_parsed: dict[tuple, StoredInvoice] = {}
_ATTRIBUTES = ("document", "status", "voided_at", "regenerated_invoice_id", "published_at", "publish_claimed_at", "custom_fields")


_checkpoints: dict[str, BalanceCheckpoint] = {}  # a warm function's parsed checkpoints, by their stored text


def _parsed_checkpoint(text: str) -> BalanceCheckpoint:
    found = _checkpoints.get(text)
    if found is None:
        if len(_checkpoints) >= RECORDS_KEPT:
            _checkpoints.clear()
        found = _checkpoints[text] = checkpoint_from_document(exact_json.loads(text))
    return found


def _record(item: dict) -> StoredInvoice:
    key = tuple(item[name]["S"] if name in item else None for name in _ATTRIBUTES)
    found = _parsed.get(key)
    if found is None:
        if len(_parsed) >= RECORDS_KEPT:
            _parsed.clear()
        found = _parsed[key] = _parse_record(item)
    return found


def _parse_record(item: dict) -> StoredInvoice:
    return record_from_document(
        exact_json.loads(item["document"]["S"]),
        status=item["status"]["S"],
        voided_at=_time(item, "voided_at"),
        regenerated_invoice_id=item["regenerated_invoice_id"]["S"] if "regenerated_invoice_id" in item else None,
        published_at=_time(item, "published_at"),
        publish_claimed_at=_time(item, "publish_claimed_at"),
        custom_fields=json.loads(item["custom_fields"]["S"]) if "custom_fields" in item else None,
    )


class DynamoInvoiceStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def get(self, invoice_id: str) -> StoredInvoice | None:
        item = get_item(self._client, self._table, f"invoice#{invoice_id}")
        return None if item is None else _record(item)

    def list_for_customer(self, customer_id: str) -> list[StoredInvoice]:
        return [_record(item) for item in all_gsi1(self._client, self._table, f"invoices#{customer_id}")]

    def list_since(self, customer_id: str, period_start: datetime) -> list[StoredInvoice]:
        return [_record(item) for item in query_pages(
            self._client,
            TableName=self._table,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk >= :from",
            ExpressionAttributeValues={":p": {"S": f"invoices#{customer_id}"}, ":from": {"S": format_sortable(period_start)}},
        )]

    def checkpoint(self, customer_id: str) -> BalanceCheckpoint | None:
        return self.checkpoint_item(customer_id)[0]

    def checkpoint_item(self, customer_id: str) -> tuple[BalanceCheckpoint | None, int, int]:
        item = get_item(self._client, self._table, f"invoice_records#{customer_id}")
        if item is None:
            return None, 0, 0
        written, voids = int(item["written"]["N"]), int(item["voids"]["N"]) if "voids" in item else 0
        if "checkpoint" not in item:
            return None, written, voids
        checkpoint = _parsed_checkpoint(item["checkpoint"]["S"])
        return (checkpoint if checkpoint.voids == voids else None), written, voids

    def put_checkpoint(self, customer_id: str, written: int, voids: int, checkpoint: BalanceCheckpoint) -> bool:
        # Conditional on the count of records and of voids it was made with: a finalization, a
        # regenerate or a void since then refuses it (it may summarize what changed).
        condition = "written = :w AND " + ("(attribute_not_exists(voids) OR voids = :v)" if voids == 0 else "voids = :v")
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"invoice_records#{customer_id}"}, "sk": {"S": ITEM}},
                UpdateExpression="SET #c = :checkpoint",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#c": "checkpoint"},
                ExpressionAttributeValues={
                    ":checkpoint": {"S": exact_json.dumps(checkpoint_document(checkpoint))},
                    ":w": {"N": str(written)},
                    ":v": {"N": str(voids)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        return True

    def records_written(self, customer_id: str) -> int:
        item = get_item(self._client, self._table, f"invoice_records#{customer_id}")
        return 0 if item is None else int(item["written"]["N"])

    def grant_edits_made(self, customer_id: str) -> int:
        """How many edits of the customer's customer-level commits and credits were ever written
        (adapters/dynamo/documents.py counts them), read consistently."""
        item = get_item(self._client, self._table, f"grant_edits#{customer_id}")
        return 0 if item is None else int(item["edits"]["N"])

    def create(
        self, customer_id: str, written: int, records: list[StoredInvoice], regenerated_from: str | None = None,
        contract_version: tuple[str, int] | None = None, others_written: Sequence[tuple[str, int]] = (),
        parent_versions: Sequence[tuple[str, int]] = (), grant_edits: int | None = None,
        checkpoint: BalanceCheckpoint | None = None,
    ) -> None:
        if not records or len(records) + len(others_written) + len(parent_versions) > MAX_RECORDS_PER_WRITE:
            raise ValueError(f"a write holds 1 to {MAX_RECORDS_PER_WRITE} records")
        actions: list[dict] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **_key(record.id),
                        "gsi1pk": {"S": f"invoices#{customer_id}"},
                        "gsi1sk": {"S": f"{format_sortable(record.period_start)}#{record.id}"},
                        "document": {"S": exact_json.dumps(record_document(record))},
                        "status": {"S": FINALIZED},
                    },
                    # Idempotent by id: a record is written once.
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for record in records
        ]
        counter = {"pk": {"S": f"invoice_records#{customer_id}"}, "sk": {"S": ITEM}}
        # The checkpoint made with these records, written with them (the counter's condition makes
        # it idempotent: a second write of the same records fails); any other create removes it.
        values = {":after": {"N": str(written + len(records))}} | ({} if written == 0 else {":before": {"N": str(written)}})
        if checkpoint is not None:
            values[":checkpoint"] = {"S": exact_json.dumps(checkpoint_document(checkpoint))}
        actions.append(
            {
                "Update": {
                    "TableName": self._table,
                    "Key": counter,
                    "UpdateExpression": "SET written = :after"
                    + (", #c = :checkpoint" if checkpoint is not None else " REMOVE #c"),
                    # Optimistic concurrency on the customer's records: the view finalized from is current.
                    "ConditionExpression": "attribute_not_exists(pk)" if written == 0 else "written = :before",
                    "ExpressionAttributeNames": {"#c": "checkpoint"},
                    "ExpressionAttributeValues": values,
                }
            }
        )
        if regenerated_from is not None:
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _key(regenerated_from),
                        "UpdateExpression": "SET regenerated_invoice_id = :new",
                        "ConditionExpression": "#s = :void AND attribute_not_exists(regenerated_invoice_id)",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":new": {"S": records[0].id}, ":void": {"S": VOID}},
                    }
                }
            )
        # The contract priced is the contract stored: an edit since the pricing read it cancels this;
        # so does an edit of a hierarchy's parent contract whose grants the pricing drew from.
        for n, (contract_id, version) in enumerate([*([contract_version] if contract_version is not None else []), *parent_versions]):
            check = {
                "TableName": self._table,
                "Key": {"pk": {"S": f"contract#{contract_id}"}, "sk": {"S": ITEM}},
                "ConditionExpression": "version = :cv",
                "ExpressionAttributeValues": {":cv": {"N": str(version)}},
            }
            if n == 0 and contract_version is not None and regenerated_from is not None:
                # A regenerated invoice is announced by the regenerate; if that fails, the next cycle
                # close run must read this customer: its contract's wake entry is due at once.
                woken = woken_update(customer_id)
                check |= {"UpdateExpression": woken["UpdateExpression"],
                          "ExpressionAttributeValues": check["ExpressionAttributeValues"] | woken["ExpressionAttributeValues"]}
                actions.append({"Update": check})
                continue
            actions.append({"ConditionCheck": check})
        if grant_edits is not None:
            # The customer-level commits and credits priced are the ones stored: an edit of one since
            # the pricing read the count cancels this.
            check: dict = {"TableName": self._table, "Key": {"pk": {"S": f"grant_edits#{customer_id}"}, "sk": {"S": ITEM}}}
            if grant_edits == 0:
                check["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                check["ConditionExpression"] = "edits = :ge"
                check["ExpressionAttributeValues"] = {":ge": {"N": str(grant_edits)}}
            actions.append({"ConditionCheck": check})
        # A hierarchy's members share balances: nothing they finalized since it was counted.
        actions += [records_unchanged(self._table, other, count) for other, count in others_written]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if error_code(exc) == "TransactionCanceledException" and any(
                code in ("ConditionalCheckFailed", "TransactionConflict") for code in reasons
            ):
                raise FinalizationRaced("another writer changed this customer's invoices; recompute") from exc
            raise translate(exc) from exc

    def replace_custom_fields(self, record: StoredInvoice, after: dict[str, str]) -> None:
        """Set the record's custom field values (`custom_fields` beside the immutable document,
        which keeps those given at create), conditional on the values read with `record`."""
        item = get_item(self._client, self._table, f"invoice#{record.id}")
        given = {} if item is None else exact_json.loads(item["document"]["S"]).get("custom_fields") or {}
        condition = "custom_fields = :before"
        if dict(record.custom_fields) == given:  # never set since: what was read is the document's
            condition = "attribute_exists(pk) AND (attribute_not_exists(custom_fields) OR custom_fields = :before)"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(record.id),
                UpdateExpression="SET custom_fields = :after",
                ConditionExpression=condition,
                ExpressionAttributeValues={
                    ":before": {"S": json.dumps(dict(record.custom_fields))},
                    ":after": {"S": json.dumps(after)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"invoice {record.id} changed while its custom fields were being set; retry") from exc
            raise translate(exc) from exc

    def void(self, invoice_id: str, voided_at: datetime, customer_id: str | None = None) -> bool:
        if customer_id is None:
            record = self.get(invoice_id)
            if record is None:
                return False
            customer_id = record.customer_id
        try:
            self._client.transact_write_items(TransactItems=[
                {"Update": {
                    "TableName": self._table,
                    "Key": _key(invoice_id),
                    "UpdateExpression": "SET #s = :void, voided_at = :at",
                    "ConditionExpression": "#s = :finalized AND gsi1pk = :customer",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":void": {"S": VOID},
                        ":finalized": {"S": FINALIZED},
                        ":at": {"S": format_sortable(voided_at)},
                        ":customer": {"S": f"invoices#{customer_id}"},
                    },
                }},
                # The history before any checkpoint changed: counted with the void, in one write.
                {"Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": f"invoice_records#{customer_id}"}, "sk": {"S": ITEM}},
                    "UpdateExpression": "ADD voids :one REMOVE #c",
                    "ExpressionAttributeNames": {"#c": "checkpoint"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }},
            ])
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False
            raise translate(exc) from exc
        return True

    def claim_publication(self, invoice_id: str, token: str, now: datetime, lease_expired_before: datetime) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(invoice_id),
                UpdateExpression="SET publish_token = :token, publish_claimed_at = :now",
                # Never published, and nobody holds a live claim (a claim older than the lease is
                # taken to be a crashed publisher's).
                ConditionExpression=(
                    "attribute_exists(pk) AND attribute_not_exists(published_at) AND "
                    "(attribute_not_exists(publish_claimed_at) OR publish_claimed_at < :expired)"
                ),
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":now": {"S": format_sortable(now)},
                    ":expired": {"S": format_sortable(lease_expired_before)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        return True

    def release_publication(self, invoice_id: str, token: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(invoice_id),
                UpdateExpression="REMOVE publish_token, publish_claimed_at",
                ConditionExpression="publish_token = :token AND attribute_not_exists(published_at)",
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc

    def mark_published(self, invoice_id: str, token: str, now: datetime, message_id: str) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(invoice_id),
                UpdateExpression="SET published_at = :now, sns_message_id = :message",
                ConditionExpression="publish_token = :token AND attribute_not_exists(published_at)",
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":now": {"S": format_sortable(now)},
                    ":message": {"S": message_id},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        return True
