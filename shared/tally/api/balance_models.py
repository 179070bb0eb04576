"""Commits, credits, balances and ledgers: request models, the stored documents they become, and
the JSON of Metronome's `Commit` and `Credit` (metronome-sdk types/shared/commit.py, credit.py).

A request becomes a normalized *grant document*: canonical times, Decimals, ids for every access
segment and invoice item. The same document shape is stored inside a contract (contract-level
grants) or on its own (customer-level), and `grant_from_document` turns it into the domain Grant.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Mapping

from pydantic import ConfigDict, Field, StringConstraints

from tally.api.catalog_models import CREATED_BY
from tally.api.models import MAX_NAME_LENGTH, CustomFields, Request, parse_instant
from tally.billing.balances import BalanceFilter
from tally.billing.balances.grants import (
    AmountDistribution,
    CommitRateType,
    GrantKind,
    RecurringFrequency,
    RecurringSchedule,
    expand_recurring_schedule,
)
from tally.billing.errors import InvalidInput
from tally.billing.hierarchy import child_access_document
from tally.billing.limits import MAX_ID_LENGTH, MAX_IDS_PER_REQUEST
from tally.billing.pricing import USD_CENTS
from tally.billing.time import format_rfc3339, parse_rfc3339


def _new_id() -> str:
    return str(uuid.uuid4())


def _time(field: str, value: str | datetime) -> str:
    instant = parse_instant(field, value if isinstance(value, str) else format_rfc3339(value))
    if instant is None:
        raise InvalidInput(field, "is required")
    return format_rfc3339(instant)


class AccessItemIn(Request):
    amount: Decimal
    starting_at: str
    ending_before: str


class AccessScheduleIn(Request):
    schedule_items: list[AccessItemIn] = Field(min_length=1)
    credit_type_id: str | None = None
    access_type: Literal["SPEND", "QUANTITY"] | None = None  # QUANTITY: amounts are units of usage


class InvoiceItemIn(Request):
    timestamp: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


class RecurringScheduleIn(Request):
    amount_distribution: Literal["DIVIDED", "DIVIDED_ROUNDED", "EACH"]
    frequency: Literal["MONTHLY", "QUARTERLY", "SEMI_ANNUAL", "ANNUAL"]
    starting_at: str
    ending_before: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


class InvoiceScheduleIn(Request):
    credit_type_id: str | None = None
    schedule_items: list[InvoiceItemIn] | None = None
    recurring_schedule: RecurringScheduleIn | None = None
    do_not_invoice: bool | None = None


class SpecifierIn(Request):
    product_id: str | None = None
    product_tags: list[str] | None = None
    pricing_group_values: dict[str, str] | None = None
    presentation_group_values: dict[str, str] | None = None


class GrantIn(Request):
    """The fields contract-level and customer-level commits and credits share."""

    model_config = ConfigDict(extra="forbid")
    product_id: str = Field(min_length=1)
    access_schedule: AccessScheduleIn
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    description: str | None = None
    priority: Decimal | None = None
    applicable_product_ids: list[str] | None = None
    applicable_product_tags: list[str] | None = None
    specifiers: list[SpecifierIn] | None = None
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    custom_fields: CustomFields = Field(default_factory=dict)
    netsuite_sales_order_id: str | None = None
    salesforce_opportunity_id: str | None = None
    temporary_id: str | None = None
    # Refused when given: not implemented yet.
    hierarchy_configuration: Any = None
    payment_gate_config: Any = None
    subscription_config: Any = None

    def _document(self, kind: GrantKind, path: str) -> dict:
        if self.payment_gate_config is not None:
            raise InvalidInput(f"{path}payment_gate_config", "is not supported by Tally yet")
        if self.subscription_config is not None:  # not a create field in metronome-sdk; shown on made grants
            raise InvalidInput(
                f"{path}subscription_config",
                "is only on the commits and credits a recurring commit or credit linked to a subscription makes: "
                "give it on recurring_commits[].subscription_config or recurring_credits[].subscription_config",
            )
        credit_type_id = self.access_schedule.credit_type_id or USD_CENTS.id
        segments = [
            {
                "id": _new_id(),
                "amount": item.amount,
                "starting_at": _time(f"{path}access_schedule.schedule_items[{i}].starting_at", item.starting_at),
                "ending_before": _time(f"{path}access_schedule.schedule_items[{i}].ending_before", item.ending_before),
            }
            for i, item in enumerate(self.access_schedule.schedule_items)
        ]
        return {
            "id": _new_id(),
            "type": kind.value,
            "product_id": self.product_id,
            "name": self.name,
            "description": self.description,
            "priority": self.priority,
            "credit_type_id": credit_type_id,
            "access_schedule": segments,
            "invoice_schedule": [],
            "applicable_product_ids": self.applicable_product_ids or [],
            "applicable_product_tags": self.applicable_product_tags or [],
            "specifiers": [s.model_dump(exclude_none=True) for s in self.specifiers or ()],
            "rate_type": self.rate_type or CommitRateType.LIST_RATE.value,
            "custom_fields": self.custom_fields,
            "netsuite_sales_order_id": self.netsuite_sales_order_id,
            "salesforce_opportunity_id": self.salesforce_opportunity_id,
            **({} if self.hierarchy_configuration is None else {
                "hierarchy_configuration": child_access_document(self.hierarchy_configuration, f"{path}hierarchy_configuration")
            }),
            **_access_type_document(self.access_schedule.access_type, kind, path),
        }


def _access_type_document(access_type: str | None, kind: GrantKind, path: str) -> dict:
    """QUANTITY: a balance of units of usage (billing/balances/grants.py Grant.by_quantity)."""
    if access_type != "QUANTITY":
        return {}
    if kind is GrantKind.POSTPAID:
        raise InvalidInput(f"{path}access_schedule.access_type", "QUANTITY is for prepaid commits and credits (a true-up is money)")
    return {"access_type": "QUANTITY"}


class CommitIn(GrantIn):
    type: Literal["PREPAID", "POSTPAID"]
    invoice_schedule: InvoiceScheduleIn | None = None
    rollover_fraction: Decimal | None = None
    amount: Decimal | None = None  # deprecated by Metronome; refused

    def to_document(self, path: str = "") -> dict:
        if self.amount is not None:
            raise InvalidInput(f"{path}amount", "is deprecated; use access_schedule and invoice_schedule")
        document = self._document(GrantKind(self.type), path)
        document["rollover_fraction"] = self.rollover_fraction
        document["invoice_schedule"] = self._invoice_items(document["credit_type_id"], path)
        return document

    def _invoice_items(self, credit_type_id: str, path: str) -> list[dict]:
        schedule = self.invoice_schedule
        if schedule is None or schedule.do_not_invoice:
            return []
        if schedule.credit_type_id not in (None, credit_type_id):
            raise InvalidInput(f"{path}invoice_schedule.credit_type_id", "must be the access schedule's credit type")
        if (schedule.schedule_items is None) == (schedule.recurring_schedule is None):
            raise InvalidInput(f"{path}invoice_schedule", "give exactly one of schedule_items or recurring_schedule")
        if schedule.recurring_schedule is not None:
            r = schedule.recurring_schedule
            field = f"{path}invoice_schedule.recurring_schedule"
            items = expand_recurring_schedule(
                RecurringSchedule(
                    AmountDistribution(r.amount_distribution),
                    RecurringFrequency(r.frequency),
                    parse_rfc3339(_time(f"{field}.starting_at", r.starting_at)),
                    parse_rfc3339(_time(f"{field}.ending_before", r.ending_before)),
                    r.amount,
                    r.quantity,
                    r.unit_price,
                ),
                _new_id(),
                USD_CENTS,
                field,
            )
            return [
                {
                    "id": i.id,
                    "timestamp": format_rfc3339(i.timestamp),
                    "amount": i.amount,
                    "quantity": i.quantity,
                    "unit_price": i.unit_price,
                }
                for i in items
            ]
        result = []
        for i, item in enumerate(schedule.schedule_items or ()):
            field = f"{path}invoice_schedule.schedule_items[{i}]"
            if item.amount is None:
                if item.quantity is None or item.unit_price is None:
                    raise InvalidInput(f"{field}.amount", "give amount, or unit_price with quantity")
                amount = item.quantity * item.unit_price
            else:
                amount = item.amount
            result.append(
                {
                    "id": _new_id(),
                    "timestamp": _time(f"{field}.timestamp", item.timestamp),
                    "amount": amount,
                    "quantity": item.quantity if item.quantity is not None else Decimal(1),
                    "unit_price": item.unit_price if item.unit_price is not None else amount,
                }
            )
        return result


class CreditIn(GrantIn):
    def to_document(self, path: str = "") -> dict:
        return self._document(GrantKind.CREDIT, path)


class CustomerCommitCreate(CommitIn):
    customer_id: str
    priority: Decimal  # required at customer level
    applicable_contract_ids: list[str] | None = None
    invoice_contract_id: str | None = None
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)


class CustomerCreditCreate(CreditIn):
    customer_id: str
    priority: Decimal
    applicable_contract_ids: list[str] | None = None
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)


def customer_grant_document(request: CustomerCommitCreate | CustomerCreditCreate, now: datetime) -> dict:
    document = request.to_document()
    contracts = request.applicable_contract_ids or []
    if len(contracts) > 1:
        raise InvalidInput("applicable_contract_ids", "at most one contract is supported yet")
    document.update(
        customer_id=request.customer_id,
        contract_id=contracts[0] if contracts else None,
        invoice_contract_id=getattr(request, "invoice_contract_id", None),
        created_at=format_rfc3339(now),
    )
    if request.uniqueness_key is not None:
        document["uniqueness_key"] = request.uniqueness_key
    return document


# == responses ==================================================================================

class CustomerBalancesList(Request):
    model_config = ConfigDict(extra="ignore")
    customer_id: str
    id: str | None = None
    covering_date: str | None = None
    effective_before: str | None = None
    starting_at: str | None = None
    exclude_zero_balances: bool = False
    include_archived: bool = False
    include_balance: bool = True
    include_contract_balances: bool = True
    include_ledgers: bool = False
    limit: int = Field(default=25, ge=1, le=100)
    next_page: str | None = None


class CustomerGrantsList(Request):
    model_config = ConfigDict(extra="ignore")
    customer_id: str
    commit_id: str | None = None
    credit_id: str | None = None
    covering_date: str | None = None
    effective_before: str | None = None
    starting_at: str | None = None
    include_archived: bool = False
    include_balance: bool = False
    include_contract_commits: bool = False
    include_contract_credits: bool = False
    include_ledgers: bool = False
    limit: int = Field(default=25, ge=1, le=100)
    next_page: str | None = None


class GrantEndDateUpdate(Request):
    customer_id: str
    commit_id: str | None = None
    credit_id: str | None = None
    access_ending_before: str | None = None
    invoices_ending_before: str | None = None


BalanceType = Literal["PREPAID_COMMIT", "POSTPAID_COMMIT", "CREDIT"]
_KIND_OF = {"PREPAID_COMMIT": GrantKind.PREPAID, "POSTPAID_COMMIT": GrantKind.POSTPAID, "CREDIT": GrantKind.CREDIT}


class BalanceFilterIn(Request):
    """metronome-sdk types/shared_params/balance_filter.py: every condition given must hold."""

    balance_types: list[BalanceType] | None = Field(default=None, max_length=len(_KIND_OF))
    custom_fields: CustomFields | None = None
    ids: list[Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)]] | None = Field(
        default=None, max_length=MAX_IDS_PER_REQUEST
    )

    def to_filter(self) -> BalanceFilter:
        return BalanceFilter(
            kinds=None if self.balance_types is None else frozenset(_KIND_OF[t] for t in self.balance_types),
            ids=None if self.ids is None else frozenset(self.ids),
            custom_fields=self.custom_fields,
        )


class NetBalanceRequest(Request):
    model_config = ConfigDict(extra="ignore")
    customer_id: str
    credit_type_id: str | None = None
    invoice_inclusion_mode: Literal["FINALIZED", "FINALIZED_AND_DRAFT"] = "FINALIZED_AND_DRAFT"
    access_type: Literal["SPEND"] | None = None
    # OR'd together; none (or an empty list) covers every commit and credit, postpaid ones too.
    filters: list[BalanceFilterIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)

    def balance_filters(self) -> list[BalanceFilter]:
        return [f.to_filter() for f in self.filters or ()]


class ManualEntryRequest(Request):
    id: str
    customer_id: str
    segment_id: str
    amount: Decimal
    reason: str = Field(min_length=1)
    contract_id: str | None = None
    timestamp: str | None = None
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)
    # The amount split by seat (group value); it must add up to `amount`.
    per_group_amounts: Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)], Decimal],
        Field(max_length=MAX_IDS_PER_REQUEST),
    ] | None = None


def credit_type_ref(credit_type_id: str, names: Mapping[str, str]) -> dict:
    """Metronome's CreditTypeData; `names` from CatalogService.credit_type_names."""
    return {"id": credit_type_id, "name": names.get(credit_type_id, credit_type_id)}


def ledger_entry_json(entry) -> dict:
    body: dict[str, Any] = {
        "type": entry.type.value,
        "amount": entry.amount,
        "timestamp": format_rfc3339(entry.timestamp),
        "segment_id": entry.segment_id,
    }
    if entry.invoice_id is not None:
        body["invoice_id"] = entry.invoice_id
    if entry.contract_id is not None:
        body["contract_id"] = entry.contract_id
    if entry.reason is not None:
        body["reason"] = entry.reason
    if "ROLLOVER" in entry.type.value:
        body["new_contract_id"] = entry.contract_id or ""
    return body


def grant_json(
    doc: dict,
    products: Mapping,
    names: Mapping[str, str],
    balance: Decimal | None = None,
    ledger: list | None = None,
    invoice_ids: Mapping[str, str] | None = None,
) -> dict:
    """Metronome's Commit (PREPAID / POSTPAID) or Credit. `invoice_ids`: the invoice billing each
    invoice schedule item, by item id (GrantFigures)."""
    product = products.get(doc["product_id"])
    credit_type = credit_type_ref(doc["credit_type_id"], names)
    body: dict[str, Any] = {
        "id": doc["id"],
        "type": doc["type"],
        "product": {"id": doc["product_id"], "name": product.versions[-1].name if product else doc["product_id"]},
        "access_schedule": {
            "credit_type": credit_type,
            "schedule_items": [
                {"id": s["id"], "amount": s["amount"], "starting_at": s["starting_at"], "ending_before": s["ending_before"]}
                for s in doc["access_schedule"]
            ],
        },
        "applicable_product_ids": doc.get("applicable_product_ids") or [],
        "applicable_product_tags": doc.get("applicable_product_tags") or [],
        "specifiers": doc.get("specifiers") or [],
        "rate_type": doc.get("rate_type") or "LIST_RATE",
        "custom_fields": doc.get("custom_fields") or {},
        "created_by": doc.get("created_by") or CREATED_BY,
    }
    for name in ("name", "description", "priority", "rollover_fraction", "created_at", "uniqueness_key",
                 "netsuite_sales_order_id", "salesforce_opportunity_id", "recurring_commit_id", "recurring_credit_id",
                 "spend_tracker_attributes", "archived_at", "hierarchy_configuration", "subscription_config"):
        if doc.get(name) is not None:
            body[name] = doc[name]
    if doc["type"] != "CREDIT":
        items = []
        for item in doc.get("invoice_schedule") or ():
            shown = {k: item[k] for k in ("id", "timestamp", "amount", "quantity", "unit_price") if item.get(k) is not None}
            if invoice_ids and item["id"] in invoice_ids:
                shown["invoice_id"] = invoice_ids[item["id"]]
            items.append(shown)
        body["invoice_schedule"] = {"credit_type": credit_type_ref(USD_CENTS.id, names), "schedule_items": items}
        if doc.get("invoice_contract_id"):
            body["invoice_contract"] = {"id": doc["invoice_contract_id"]}
    if doc.get("contract_id"):
        body["contract"] = {"id": doc["contract_id"]}
        body["applicable_contract_ids"] = [doc["contract_id"]]
    if balance is not None:
        body["balance"] = balance
    if ledger is not None:
        body["ledger"] = [ledger_entry_json(e) for e in ledger]
    return body
