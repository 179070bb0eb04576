"""Delivery records of the AWS delivery methods (services/aws_invoice_delivery.py), in the billing
table, beside the invoice's record:

- `invoice#<id>` / `delivery#<method>`: one per invoice and method (aws_marketplace, aws_sns,
  aws_sqs): exact JSON of what was (or is being) sent and its state. Created with
  attribute_not_exists(pk): the first claim wins and a retry reads it back, so a retry sends the
  record the first attempt chose.
- `aws_meter_slot#<product>#<aws customer>#<dimension>` / `<hour>`: which invoice holds an hour's
  metering record of an AWS customer (AWS keeps one per customer, dimension and timestamp).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import get_item
from tally.billing import exact_json


def _key(invoice_id: str, method: str) -> dict:
    return {"pk": {"S": f"invoice#{invoice_id}"}, "sk": {"S": f"delivery#{method}"}}


class DynamoAwsDeliveryStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def get(self, invoice_id: str, method: str) -> dict | None:
        item = get_item(self._client, self._table, f"invoice#{invoice_id}", f"delivery#{method}")
        return None if item is None else exact_json.loads(item["record"]["S"])

    def claim(self, invoice_id: str, method: str, record: dict) -> dict:
        """Store `record` unless the invoice already has one for this method: answers the one kept."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_key(invoice_id, method) | {"record": {"S": exact_json.dumps(record)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate(exc) from exc
            kept = self.get(invoice_id, method)
            if kept is None:  # never: a record is not deleted
                raise translate(exc) from exc
            return kept
        return record

    def save(self, invoice_id: str, method: str, record: dict) -> None:
        """Set the invoice's record for this method (once delivered: the record only moves forward)."""
        try:
            self._client.put_item(
                TableName=self._table, Item=_key(invoice_id, method) | {"record": {"S": exact_json.dumps(record)}},
            )
        except ClientError as exc:
            raise translate(exc) from exc

    def claim_slot(self, slot: str, hour: str, invoice_id: str) -> bool:
        """True if the invoice holds the slot's hour (now, or from an earlier attempt)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": f"aws_meter_slot#{slot}"}, "sk": {"S": hour}, "invoice_id": {"S": invoice_id}},
                ConditionExpression="attribute_not_exists(pk) OR invoice_id = :me",
                ExpressionAttributeValues={":me": {"S": invoice_id}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        return True
