"""Threshold charges (crossings of spend and prepaid balance thresholds) in the billing table.

Keys:
- `threshold#<contract id>` / `<kind>#<crossing, 10 digits>`: the charge. Claimed with a conditional
  put (attribute_not_exists), so a crossing of a contract's configuration is claimed once, however
  many evaluators decide it at once. Its `document` (exact JSON) never changes; `status` moves
  PENDING_PAYMENT → PAID or FAILED once; `pending` holds the envelopes to publish (with
  `lease_until`) until they are known to be published. A contract's charges are one strongly
  consistent Query, so an evaluator never misses a crossing claimed a moment ago.
- `threshold_workflow#<workflow id>` / `#`: where the charge of a workflow id is (the release route
  only has the workflow id). Written before the charge with the same content by every claimer.
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from tally.adapters.dynamo.audit import unaudited
from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import ITEM, get_item
from tally.billing import exact_json
from tally.billing.thresholds import ChargeStatus, ThresholdKind
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.thresholds import StoredCharge


def _pk(contract_id: str) -> str:
    return f"threshold#{contract_id}"


def _sk(kind: str, crossing: int) -> str:
    return f"{kind}#{crossing:010d}"


def _charge(item: dict) -> StoredCharge:
    return StoredCharge(
        document=exact_json.loads(item["document"]["S"]),
        status=ChargeStatus(item["status"]["S"]),
        pending=exact_json.loads(item["pending"]["S"]) if "pending" in item else None,
        lease_until=parse_rfc3339(item["lease_until"]["S"]) if "lease_until" in item else None,
        settled_at=parse_rfc3339(item["settled_at"]["S"]) if "settled_at" in item else None,
        payment=exact_json.loads(item["payment"]["S"]) if "payment" in item else None,
    )


def _key(charge: StoredCharge) -> dict:
    document = charge.document
    return {"pk": {"S": _pk(document["contract_id"])}, "sk": {"S": _sk(document["kind"], document["crossing"])}}


class DynamoThresholdStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def charges(self, contract_id: str, kind: ThresholdKind | None = None) -> list[StoredCharge]:
        """The contract's charges (of one kind), oldest crossing first, read consistently."""
        values = {":pk": {"S": _pk(contract_id)}}
        condition = "pk = :pk"
        if kind is not None:
            values[":kind"] = {"S": f"{kind.value}#"}
            condition += " AND begins_with(sk, :kind)"
        found: list[StoredCharge] = []
        try:
            for page in self._client.get_paginator("query").paginate(
                TableName=self._table, KeyConditionExpression=condition, ExpressionAttributeValues=values, ConsistentRead=True
            ):
                found += [_charge(item) for item in page["Items"]]
        except ClientError as exc:
            raise translate(exc) from exc
        return found

    def claim(self, document: dict, status: ChargeStatus, pending: list[dict], lease_until: datetime) -> StoredCharge | None:
        """Store crossing `document["crossing"]` unless someone claimed it first (then None)."""
        sort = _sk(document["kind"], document["crossing"])
        pointer = {
            "pk": {"S": f"threshold_workflow#{document['id']}"},
            "sk": {"S": ITEM},
            "contract_id": {"S": document["contract_id"]},
            "charge": {"S": sort},
        }
        item = {
            "pk": {"S": _pk(document["contract_id"])},
            "sk": {"S": sort},
            "document": {"S": exact_json.dumps(document)},
            "status": {"S": status.value},
            "pending": {"S": exact_json.dumps(pending)},
            "lease_until": {"S": format_rfc3339(lease_until)},
        }
        try:
            # The pointer's content follows from the workflow id, so writing it twice is harmless.
            self._client.put_item(TableName=self._table, Item=pointer)
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc) from exc
        return _charge(item)

    def by_workflow(self, workflow_id: str) -> StoredCharge | None:
        pointer = get_item(self._client, self._table, f"threshold_workflow#{workflow_id}")
        if pointer is None:
            return None
        item = get_item(self._client, self._table, _pk(pointer["contract_id"]["S"]), pointer["charge"]["S"])
        return None if item is None else _charge(item)

    def _update(self, charge: StoredCharge, expression: str, condition: str, values: dict) -> StoredCharge | None:
        try:
            item = unaudited(self._client).update_item(  # the charge's state: the system's, see unaudited
                TableName=self._table,
                Key=_key(charge),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ExpressionAttributeNames={"#s": "status"},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise translate(exc) from exc
        return _charge(item)

    def settle(self, charge: StoredCharge, status: ChargeStatus, pending: list[dict], lease_until: datetime,
               at: datetime) -> StoredCharge | None:
        """PENDING_PAYMENT → PAID or FAILED, once, with the payment_status message to publish; None
        if it is no longer pending payment (or its earlier messages are still unpublished)."""
        return self._update(
            charge,
            "SET #s = :new, settled_at = :at, pending = :pending, lease_until = :lease",
            "#s = :awaiting AND attribute_not_exists(pending)",
            {
                ":new": {"S": status.value},
                ":awaiting": {"S": ChargeStatus.PENDING_PAYMENT.value},
                ":at": {"S": format_rfc3339(at)},
                ":pending": {"S": exact_json.dumps(pending)},
                ":lease": {"S": format_rfc3339(lease_until)},
            },
        )

    def take_lease(self, charge: StoredCharge, lease_until: datetime) -> StoredCharge | None:
        """Take over publishing the charge's pending messages once their lease has been seen."""
        assert charge.lease_until is not None
        return self._update(
            charge,
            "SET lease_until = :lease",
            "lease_until = :seen AND attribute_exists(pending) AND #s = :status",
            {
                ":seen": {"S": format_rfc3339(charge.lease_until)},
                ":lease": {"S": format_rfc3339(lease_until)},
                ":status": {"S": charge.status.value},
            },
        )

    def clear_pending(self, charge: StoredCharge) -> None:
        """Those messages are published: forget them, unless another publisher took them over
        (a new lease): that one publishes them again, with the same ids, and clears them."""
        assert charge.lease_until is not None
        self._update(
            charge,
            "REMOVE pending, lease_until",
            "lease_until = :seen AND attribute_exists(pending) AND #s = :status",
            {":seen": {"S": format_rfc3339(charge.lease_until)}, ":status": {"S": charge.status.value}},
        )

    def record_payment(self, charge: StoredCharge, payment: dict) -> StoredCharge | None:
        """The Stripe object a STRIPE gate's crossing is charged with, noted while it still waits for
        its payment (None once settled). Racing chargers got the same object from Stripe (same
        idempotency key), so the last write stores what the first did."""
        return self._update(
            charge,
            "SET payment = :payment",
            "#s = :awaiting",
            {":payment": {"S": exact_json.dumps(payment)}, ":awaiting": {"S": ChargeStatus.PENDING_PAYMENT.value}},
        )
