"""Billing provider configurations and invoices' delivery state in the billing table.

- Account-level delivery methods (setUpBillingProvider) and customer configurations are documents
  (documents.py): `delivery_method#<id>` listed under `delivery_methods#_account`, and
  `customer_billing_config#<id>` listed under `customer_billing_configs#<customer_id>`. Neither
  holds a secret: a delivery method names its secret in Secrets Manager and keeps a masked hint.
- An invoice's delivery state lives on its record's item (`invoice#<id>`, invoices.py), beside the
  publication state: `external_invoice` (exact JSON, Metronome's external_invoice fields) and
  `billing_provider_error_published_at`. Written only on an existing record (attribute_exists).
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.documents import DynamoDocumentStore
from tally.adapters.dynamo.reads import ITEM, batch_get, get_item
from tally.billing import exact_json
from tally.billing.time import format_sortable

ACCOUNT = "_account"  # the owner of account-level documents (no customer id starts with "_")


def delivery_method_documents(table: str, client=None) -> DynamoDocumentStore:
    return DynamoDocumentStore(table, "delivery_method", "created_at", client)


def customer_config_documents(table: str, client=None) -> DynamoDocumentStore:
    return DynamoDocumentStore(table, "customer_billing_config", "created_at", client)


def _key(invoice_id: str) -> dict:
    return {"pk": {"S": f"invoice#{invoice_id}"}, "sk": {"S": ITEM}}


class DynamoDeliveryStateStore:
    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    def get(self, invoice_id: str) -> dict | None:
        """The invoice's external_invoice, with `error_published` (bool); None if never delivered."""
        item = get_item(self._client, self._table, f"invoice#{invoice_id}")
        if item is None or "external_invoice" not in item:
            return None
        state = exact_json.loads(item["external_invoice"]["S"])
        state["error_published"] = "billing_provider_error_published_at" in item
        return state

    def external_invoices(self, invoice_ids: list[str]) -> dict[str, dict]:
        """{invoice id: external_invoice} of those ever delivered: one BatchGetItem per 100 ids,
        reading only the delivery state (not the invoice document)."""
        items = batch_get(self._client, self._table, [_key(i) for i in invoice_ids], "pk, external_invoice")
        return {item["pk"]["S"].removeprefix("invoice#"): exact_json.loads(item["external_invoice"]["S"])
                for item in items if "external_invoice" in item}

    def record(self, invoice_id: str, external: dict) -> None:
        """Set the delivery state. Only ever moves forward: a FINALIZED state is never replaced by
        an error a late, stale retry reports (the condition keeps it), only by VOID."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(invoice_id),
                UpdateExpression="SET external_invoice = :e, external_status = :s",
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(external_status) OR external_status <> :final"
                    " OR :s = :void)"
                ),
                ExpressionAttributeValues={
                    ":e": {"S": exact_json.dumps(external)},
                    ":s": {"S": external["external_status"]},
                    ":final": {"S": "FINALIZED"},
                    ":void": {"S": "VOID"},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return
            raise translate(exc) from exc

    def claim_error_publication(self, invoice_id: str, now: datetime) -> bool:
        """True once per invoice: the caller publishes invoice.billing_provider_error."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(invoice_id),
                UpdateExpression="SET billing_provider_error_published_at = :now",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(billing_provider_error_published_at)",
                ExpressionAttributeValues={":now": {"S": format_sortable(now)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc) from exc
        return True

    def release_error_publication(self, invoice_id: str) -> None:
        """The publish failed after the claim: give it back, so the next attempt publishes."""
        try:
            self._client.update_item(
                TableName=self._table, Key=_key(invoice_id),
                UpdateExpression="REMOVE billing_provider_error_published_at",
            )
        except ClientError as exc:
            raise translate(exc) from exc
