"""Billing table: the catalog (products, pricing units, rate cards and their rates).

Keys (sk `#` for the entity items):
- `product#<id>`: one item per product, its versions in a JSON `document`; gsi1pk `products`.
- `creditType#<id>`: custom pricing units; gsi1pk `creditTypes`.
- `ratecard#<id>`: the card's item (sk `#`, gsi1pk `ratecards`) and one item per rate under the
  same partition, sk `rate#<product_id>#<starting_at sortable>#<uuid>`, so a card and all its
  rates are one Query.
Entity items carry a `revision`; every replace is conditional on the revision read (optimistic
concurrency), so two concurrent updates cannot silently overwrite each other.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from tally.adapters.dynamo.client import dynamodb, error_code, translate
from tally.adapters.dynamo.reads import ITEM, PARSED_KEPT, all_gsi1, get_item
from tally.billing import exact_json
from tally.billing.errors import Conflict
from tally.billing.pricing import (
    USD_CENTS,
    ConversionOperation,
    CreditType,
    Product,
    ProductType,
    ProductVersion,
    QuantityConversion,
    QuantityRounding,
    Rate,
    RateType,
    RoundingMethod,
    Tier,
)
from tally.billing.pricing.periods import Frequency
from tally.billing.time import format_sortable, parse_rfc3339
from tally.services.catalog import (
    CreditTypeConversion,
    CreditTypeRecord,
    ProductRecord,
    RateCardAlias,
    RateCardRecord,
    StoredRate,
)



# -- JSON documents ------------------------------------------------------------------------------
def _t(value: datetime | None) -> str | None:
    return None if value is None else format_sortable(value)


def _pt(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _version_doc(v: ProductVersion, created_at: datetime | None) -> dict:
    return {
        "starting_at": _t(v.starting_at),
        "created_at": _t(created_at),
        "name": v.name,
        "billable_metric_id": v.billable_metric_id,
        "composite_product_ids": list(v.composite_product_ids),
        "composite_tags": list(v.composite_tags),
        "quantity_conversion": None
        if v.quantity_conversion is None
        else {
            "conversion_factor": Decimal(v.quantity_conversion.conversion_factor),
            "operation": v.quantity_conversion.operation.value,
            "name": v.quantity_conversion.name,
        },
        "quantity_rounding": None
        if v.quantity_rounding is None
        else {
            "decimal_places": v.quantity_rounding.decimal_places,
            "rounding_method": v.quantity_rounding.rounding_method.value,
        },
        "pricing_group_key": list(v.pricing_group_key),
        "presentation_group_key": list(v.presentation_group_key),
        "tags": list(v.tags),
    }


def _version(d: dict) -> ProductVersion:
    qc, qr = d.get("quantity_conversion"), d.get("quantity_rounding")
    return ProductVersion(
        starting_at=_pt(d["starting_at"]),
        name=d["name"],
        billable_metric_id=d.get("billable_metric_id"),
        composite_product_ids=tuple(d.get("composite_product_ids") or ()),
        composite_tags=tuple(d.get("composite_tags") or ()),
        quantity_conversion=None
        if qc is None
        else QuantityConversion(Decimal(qc["conversion_factor"]), ConversionOperation(qc["operation"]), qc.get("name")),
        quantity_rounding=None
        if qr is None
        else QuantityRounding(int(qr["decimal_places"]), RoundingMethod(qr["rounding_method"])),
        pricing_group_key=tuple(d.get("pricing_group_key") or ()),
        presentation_group_key=tuple(d.get("presentation_group_key") or ()),
        tags=tuple(d.get("tags") or ()),
    )


def _credit_type_doc(c: CreditType) -> dict:
    return {"id": c.id, "name": c.name, "precision": c.precision}


def _credit_type(d: dict) -> CreditType:
    if d["id"] == USD_CENTS.id:
        return USD_CENTS
    return CreditType(id=d["id"], name=d["name"], precision=int(d.get("precision", 2)))


def rate_doc(r: Rate) -> dict:
    return {
        "product_id": r.product_id,
        "starting_at": _t(r.starting_at),
        "ending_before": _t(r.ending_before),
        "rate_type": r.rate_type.value,
        "entitled": r.entitled,
        "price": r.price,
        "tiers": [{"price": t.price, "size": t.size} for t in r.tiers],
        "pricing_group_values": dict(r.pricing_group_values) if r.pricing_group_values else None,
        "quantity": r.quantity,
        "is_prorated": r.is_prorated,
        "billing_frequency": None if r.billing_frequency is None else r.billing_frequency.value,
        "credit_type": _credit_type_doc(r.credit_type),
        "commit_price": r.commit_price,
    }


def rate_from_doc(d: dict) -> Rate:
    return Rate(
        product_id=d["product_id"],
        starting_at=_pt(d["starting_at"]),
        rate_type=RateType(d["rate_type"]),
        entitled=bool(d["entitled"]),
        ending_before=_pt(d.get("ending_before")),
        price=_d(d.get("price")),
        tiers=tuple(Tier(Decimal(t["price"]), _d(t.get("size"))) for t in d.get("tiers") or ()),
        pricing_group_values=d.get("pricing_group_values"),
        quantity=_d(d.get("quantity")),
        is_prorated=d.get("is_prorated"),
        billing_frequency=None if d.get("billing_frequency") is None else Frequency(d["billing_frequency"]),
        credit_type=_credit_type(d["credit_type"]),
        commit_price=_d(d.get("commit_price")),
    )


def _product_item(record: ProductRecord) -> dict:
    p = record.product
    doc = {
        "type": p.type.value,
        "custom_fields": record.custom_fields,
        "versions": [_version_doc(v, record.version_created_at.get(v.starting_at)) for v in p.versions],
    }
    item = {
        "pk": {"S": f"product#{p.id}"},
        "sk": {"S": ITEM},
        "gsi1pk": {"S": "products"},
        "gsi1sk": {"S": f"{format_sortable(record.created_at)}#{p.id}"},
        "id": {"S": p.id},
        "document": {"S": exact_json.dumps(doc)},
        "created_at": {"S": format_sortable(record.created_at)},
        "revision": {"N": str(record.revision)},
    }
    if p.archived_at is not None:
        item["archived_at"] = {"S": format_sortable(p.archived_at)}
    return item


def _product(item: dict) -> ProductRecord:
    archived = item.get("archived_at", {}).get("S")
    return _parsed_product(item["id"]["S"], item["document"]["S"], archived, item["created_at"]["S"], item["revision"]["N"])


@lru_cache(maxsize=PARSED_KEPT)  # see PARSED_KEPT: the record is immutable by convention, shared
def _parsed_product(product_id: str, document: str, archived: str | None, created_at: str, revision: str) -> ProductRecord:
    doc = exact_json.loads(document)
    versions = tuple(_version(v) for v in doc["versions"])
    return ProductRecord(
        product=Product(product_id, ProductType(doc["type"]), versions, _pt(archived)),
        created_at=parse_rfc3339(created_at),
        version_created_at={
            v.starting_at: _pt(d.get("created_at")) for v, d in zip(versions, doc["versions"]) if d.get("created_at")
        },
        custom_fields=doc.get("custom_fields") or {},
        revision=int(revision),
    )


@lru_cache(maxsize=PARSED_KEPT)  # see PARSED_KEPT
def _parsed_rate(document: str) -> Rate:
    return rate_from_doc(exact_json.loads(document))


def _rate_card_item(c: RateCardRecord) -> dict:
    doc = {
        "name": c.name,
        "description": c.description,
        "aliases": [
            {"name": a.name, "starting_at": _t(a.starting_at), "ending_before": _t(a.ending_before)} for a in c.aliases
        ],
        "fiat_credit_type": _credit_type_doc(c.fiat_credit_type),
        "credit_type_conversions": [
            {"credit_type": _credit_type_doc(x.credit_type), "fiat_per_custom_credit": x.fiat_per_custom_credit}
            for x in c.credit_type_conversions
        ],
        "custom_fields": c.custom_fields,
        "product_order": list(c.product_order),
    }
    item = {
        "pk": {"S": f"ratecard#{c.id}"},
        "sk": {"S": ITEM},
        "gsi1pk": {"S": "ratecards"},
        "gsi1sk": {"S": f"{format_sortable(c.created_at)}#{c.id}"},
        "id": {"S": c.id},
        "document": {"S": exact_json.dumps(doc)},
        "created_at": {"S": format_sortable(c.created_at)},
        "revision": {"N": str(c.revision)},
    }
    if c.archived_at is not None:
        item["archived_at"] = {"S": format_sortable(c.archived_at)}
    return item


def _rate_card(item: dict) -> RateCardRecord:
    doc = exact_json.loads(item["document"]["S"])
    return RateCardRecord(
        id=item["id"]["S"],
        name=doc["name"],
        description=doc.get("description"),
        aliases=tuple(
            RateCardAlias(a["name"], _pt(a.get("starting_at")), _pt(a.get("ending_before"))) for a in doc["aliases"]
        ),
        fiat_credit_type=_credit_type(doc["fiat_credit_type"]),
        credit_type_conversions=tuple(
            CreditTypeConversion(_credit_type(x["credit_type"]), Decimal(x["fiat_per_custom_credit"]))
            for x in doc["credit_type_conversions"]
        ),
        custom_fields=doc.get("custom_fields") or {},
        created_at=parse_rfc3339(item["created_at"]["S"]),
        archived_at=_pt(item.get("archived_at", {}).get("S")),
        revision=int(item["revision"]["N"]),
        product_order=tuple(doc.get("product_order") or ()),
    )


def _rate_item(rate_card_id: str, stored: StoredRate) -> dict:
    return {
        "pk": {"S": f"ratecard#{rate_card_id}"},
        "sk": {"S": stored.key},
        "document": {"S": exact_json.dumps(rate_doc(stored.rate))},
    }


def _credit_type_item(r: CreditTypeRecord) -> dict:
    item = {
        "pk": {"S": f"creditType#{r.credit_type.id}"},
        "sk": {"S": ITEM},
        "gsi1pk": {"S": "creditTypes"},
        "gsi1sk": {"S": f"{format_sortable(r.created_at)}#{r.credit_type.id}"},
        "id": {"S": r.credit_type.id},
        "name": {"S": r.credit_type.name},
        "created_at": {"S": format_sortable(r.created_at)},
    }
    if r.archived_at is not None:
        item["archived_at"] = {"S": format_sortable(r.archived_at)}
    return item


def _credit_type_record(item: dict) -> CreditTypeRecord:
    return CreditTypeRecord(
        CreditType(item["id"]["S"], item["name"]["S"]),
        parse_rfc3339(item["created_at"]["S"]),
        _pt(item.get("archived_at", {}).get("S")),
    )


class DynamoCatalogStore:
    """Implements CatalogStore over the billing table."""

    def __init__(self, table: str, client=None) -> None:
        self._table = table
        self._client = client or dynamodb()

    # -- products ------------------------------------------------------------------------------
    def put_product(self, record: ProductRecord, expected_revision: int | None) -> None:
        self._put(_product_item(record), expected_revision, f"product {record.product.id}")

    def get_product(self, product_id: str) -> ProductRecord | None:
        item = self._get(f"product#{product_id}")
        return None if item is None else _product(item)

    def all_products(self) -> list[ProductRecord]:
        return [_product(i) for i in self._all_gsi("products")]

    # -- credit types --------------------------------------------------------------------------
    def put_credit_type(self, record: CreditTypeRecord) -> None:
        self._client.put_item(TableName=self._table, Item=_credit_type_item(record))

    def get_credit_type(self, credit_type_id: str) -> CreditTypeRecord | None:
        item = self._get(f"creditType#{credit_type_id}")
        return None if item is None else _credit_type_record(item)

    def all_credit_types(self) -> list[CreditTypeRecord]:
        return [_credit_type_record(i) for i in self._all_gsi("creditTypes")]

    # -- rate cards ----------------------------------------------------------------------------
    def put_rate_card(self, record: RateCardRecord, expected_revision: int | None) -> None:
        self._put(_rate_card_item(record), expected_revision, f"rate card {record.id}")

    def get_rate_card(self, rate_card_id: str) -> tuple[RateCardRecord, list[StoredRate]] | None:
        """The card and all its rates, in one strongly consistent Query of its partition."""
        card, rates = None, []
        paginator = self._client.get_paginator("query")
        try:
            for page in paginator.paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"ratecard#{rate_card_id}"}},
                ConsistentRead=True,
            ):
                for item in page["Items"]:
                    if item["sk"]["S"] == ITEM:
                        card = _rate_card(item)
                    else:
                        rates.append(StoredRate(item["sk"]["S"], _parsed_rate(item["document"]["S"])))
        except ClientError as exc:
            raise translate(exc) from exc
        return None if card is None else (card, rates)

    def all_rate_cards(self) -> list[RateCardRecord]:
        return [_rate_card(i) for i in self._all_gsi("ratecards")]

    def put_rates(self, rate_card_id: str, revision: int, rates: list[StoredRate]) -> None:
        """New and truncated rates in one transaction, only if the card is unchanged and active.

        The card's revision is bumped in the same transaction: two concurrent addRate calls cannot
        both pass the overlap check against the same set of rates."""
        key = {"pk": {"S": f"ratecard#{rate_card_id}"}, "sk": {"S": ITEM}}
        actions: list[dict] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": key,
                    "UpdateExpression": "SET revision = :next",
                    "ConditionExpression": "revision = :rev AND attribute_not_exists(archived_at)",
                    "ExpressionAttributeValues": {":rev": {"N": str(revision)}, ":next": {"N": str(revision + 1)}},
                }
            }
        ]
        actions += [{"Put": {"TableName": self._table, "Item": _rate_item(rate_card_id, r)}} for r in rates]
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise Conflict(f"rate card {rate_card_id} changed or was archived meanwhile; retry") from exc
            raise translate(exc) from exc

    # -- shared --------------------------------------------------------------------------------
    def _put(self, item: dict, expected_revision: int | None, what: str) -> None:
        if expected_revision is None:
            condition, values = "attribute_not_exists(pk)", None
        else:
            condition, values = "revision = :rev", {":rev": {"N": str(expected_revision)}}
        kwargs = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._client.put_item(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"{what} changed meanwhile (or already exists); retry") from exc
            raise translate(exc) from exc

    def _get(self, pk: str) -> dict | None:
        return get_item(self._client, self._table, pk)

    def _all_gsi(self, partition: str) -> list[dict]:
        return all_gsi1(self._client, self._table, partition)
