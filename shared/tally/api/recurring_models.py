"""Recurring commits and credits on the Metronome-compatible API: the request models of contract
creation and edits (metronome-sdk types/v1/contract_create_params.py `RecurringCommit`,
`RecurringCredit`; types/v2/contract_edit_params.py `AddRecurringCommit`, `UpdateRecurringCommit`),
the documents they become (services/recurring_grants.py), and their JSON
(types/shared/contract_without_amendments.py `RecurringCommit`, `RecurringCredit`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, Mapping

from pydantic import Field

from tally.api.balance_models import SpecifierIn
from tally.api.models import MAX_NAME_LENGTH, ProrationRoundingIn, Request, parse_instant
from tally.billing.balances.grants import NO_CREDIT_TYPE
from tally.billing.errors import InvalidInput
from tally.billing.hierarchy import child_access_document
from tally.billing.pricing import USD_CENTS, Product
from tally.billing.time import format_rfc3339
from tally.services.recurring_grants import anchor_date, definitions


def _time(field: str, value: str | None) -> str | None:
    instant = parse_instant(field, value)
    return None if instant is None else format_rfc3339(instant)


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


class AccessAmountIn(Request):
    unit_price: Decimal
    quantity: Decimal | None = None
    credit_type_id: str | None = None
    access_type: Literal["SPEND", "QUANTITY"] | None = None

    def to_document(self, path: str, linked: bool = False) -> dict:
        """`linked`: a subscription is attached, whose quantity (seats) stands for `quantity`."""
        if linked and self.quantity is not None:
            raise InvalidInput(f"{path}.quantity", "must not be given with subscription_config: the access is per seat of the subscription")
        if not linked and self.quantity is None:
            raise InvalidInput(f"{path}.quantity", "is required unless a subscription is attached via subscription_config")
        for name in ("unit_price", "quantity"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidInput(f"{path}.{name}", "must not be negative")
        document = {"unit_price": self.unit_price, "quantity": self.quantity, "credit_type_id": self.credit_type_id or USD_CENTS.id}
        if self.access_type == "QUANTITY":  # units of usage: access unit_price × quantity units each period
            document["access_type"] = "QUANTITY"
        return _drop_none(document)


class SeatIncreaseConfigIn(Request):
    is_prorated: bool


class SubscriptionConfigIn(Request):
    """A recurring grant's link to a subscription (billing/balances/recurring.py, SeatLink)."""

    apply_seat_increase_config: SeatIncreaseConfigIn
    subscription_id: str = Field(min_length=1)
    allocation: Literal["INDIVIDUAL", "POOLED"] | None = None

    def to_document(self, path: str) -> dict:
        return {
            "subscription_id": self.subscription_id,
            "allocation": self.allocation or "POOLED",
            "apply_seat_increase_config": {"is_prorated": self.apply_seat_increase_config.is_prorated},
        }


class InvoiceAmountIn(Request):
    credit_type_id: str
    quantity: Decimal
    unit_price: Decimal

    def to_document(self, path: str, access_credit_type_id: str) -> dict:
        if self.credit_type_id != access_credit_type_id:
            raise InvalidInput(f"{path}.credit_type_id", "must be the access amount's credit type")
        for name in ("unit_price", "quantity"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{path}.{name}", "must not be negative")
        return {"unit_price": self.unit_price, "quantity": self.quantity, "credit_type_id": self.credit_type_id}


class CommitDurationIn(Request):
    value: Decimal
    unit: Literal["PERIODS"] = "PERIODS"

    def to_document(self, path: str) -> dict:
        if not self.value.is_finite() or self.value != self.value.to_integral_value() or self.value < 1:
            raise InvalidInput(f"{path}.value", "must be a whole number of periods, at least 1")
        return {"value": Decimal(int(self.value)), "unit": self.unit}


class CommitRoundingIn(Request):
    access: ProrationRoundingIn | None = None
    invoice: ProrationRoundingIn | None = None


class CreditRoundingIn(Request):
    access: ProrationRoundingIn | None = None


class RecurringGrantIn(Request):
    """What recurring commits and credits share."""

    access_amount: AccessAmountIn
    commit_duration: CommitDurationIn
    priority: Decimal
    product_id: str = Field(min_length=1)
    starting_at: str
    applicable_product_ids: list[str] | None = None
    applicable_product_tags: list[str] | None = None
    description: str | None = None
    ending_before: str | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    netsuite_sales_order_id: str | None = None
    proration: Literal["NONE", "FIRST", "LAST", "FIRST_AND_LAST"] = "FIRST_AND_LAST"
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] = "LIST_RATE"
    recurrence_frequency: Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY", "DAILY"] | None = None
    rollover_fraction: Decimal | None = None
    specifiers: list[SpecifierIn] | None = None
    temporary_id: str | None = None
    hierarchy_configuration: Any = None  # child access, passed down (billing/hierarchy.py)
    subscription_config: SubscriptionConfigIn | None = None  # access per seat of that subscription

    def _document(self, kind: str, path: str) -> dict:
        linked = self.subscription_config is not None
        access = self.access_amount.to_document(f"{path}.access_amount", linked)
        return _drop_none(
            {
                "type": kind,
                "product_id": self.product_id,
                "access_amount": access,
                "commit_duration": self.commit_duration.to_document(f"{path}.commit_duration"),
                "priority": self.priority,
                "starting_at": _time(f"{path}.starting_at", self.starting_at),
                "ending_before": _time(f"{path}.ending_before", self.ending_before),
                "applicable_product_ids": self.applicable_product_ids or [],
                "applicable_product_tags": self.applicable_product_tags or [],
                "specifiers": [s.model_dump(exclude_none=True) for s in self.specifiers or ()],
                "description": self.description,
                "name": self.name,
                "netsuite_sales_order_id": self.netsuite_sales_order_id,
                "proration": self.proration,
                "rate_type": self.rate_type,
                "recurrence_frequency": self.recurrence_frequency,
                "rollover_fraction": self.rollover_fraction,
                "temporary_id": self.temporary_id,
                # Passed down to the commits or credits it makes (billing/hierarchy.py).
                "hierarchy_configuration": child_access_document(self.hierarchy_configuration, f"{path}.hierarchy_configuration"),
                "subscription_config": None
                if self.subscription_config is None
                else self.subscription_config.to_document(f"{path}.subscription_config"),
            }
        )


class RecurringCommitIn(RecurringGrantIn):
    invoice_amount: InvoiceAmountIn | None = None
    proration_rounding: CommitRoundingIn | None = None

    def to_document(self, path: str) -> dict:
        document = self._document("PREPAID", path)
        if self.invoice_amount is not None and self.subscription_config is not None:
            raise InvalidInput(f"{path}.invoice_amount", "is not supported with subscription_config yet")
        if self.invoice_amount is not None:
            document["invoice_amount"] = self.invoice_amount.to_document(
                f"{path}.invoice_amount", document["access_amount"]["credit_type_id"]
            )
        document |= _rounding_document(self.proration_rounding, f"{path}.proration_rounding")
        return document


class RecurringCreditIn(RecurringGrantIn):
    proration_rounding: CreditRoundingIn | None = None

    def to_document(self, path: str) -> dict:
        document = self._document("CREDIT", path)
        document |= _rounding_document(self.proration_rounding, f"{path}.proration_rounding")
        return document


def _rounding_document(rounding: CommitRoundingIn | CreditRoundingIn | None, path: str) -> dict:
    if rounding is None:
        return {}
    found = {}
    for part in ("access", "invoice"):
        value = getattr(rounding, part, None)
        if value is not None:
            found[part] = value.to_document(f"{path}.{part}")
    return {"proration_rounding": found} if found else {}


# -- edits ---------------------------------------------------------------------------------------
class AmountUpdateIn(Request):
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


class RecurringUpdateIn(Request):
    """update_recurring_commits / update_recurring_credits: changes to the recurrences whose access
    has not started (services/recurring_grants.update_recurring)."""

    access_amount: AmountUpdateIn | None = None
    ending_before: str | None = None
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None

    def _changes(self, path: str) -> dict:
        changes: dict[str, Any] = {}
        if self.access_amount is not None:
            changes["access_amount"] = _amount_update(self.access_amount, f"{path}.access_amount")
        if "ending_before" in self.model_fields_set:
            changes["ending_before"] = _time(f"{path}.ending_before", self.ending_before)
        if self.rate_type is not None:
            changes["rate_type"] = self.rate_type
        return changes


def _amount_update(update: AmountUpdateIn, path: str) -> dict:
    changes = {}
    for name in ("quantity", "unit_price"):
        value = getattr(update, name)
        if value is not None:
            if value < 0:
                raise InvalidInput(f"{path}.{name}", "must not be negative")
            changes[name] = value
    if not changes:
        raise InvalidInput(path, "names no change (quantity or unit_price)")
    return changes


class RecurringCommitUpdateIn(RecurringUpdateIn):
    recurring_commit_id: str = Field(min_length=1)
    invoice_amount: AmountUpdateIn | None = None
    proration_rounding: CommitRoundingIn | None = None

    def to_update(self, path: str) -> dict:
        changes = self._changes(path)
        if self.invoice_amount is not None:
            changes["invoice_amount"] = _amount_update(self.invoice_amount, f"{path}.invoice_amount")
        if "proration_rounding" in self.model_fields_set:
            changes["proration_rounding"] = _rounding_document(self.proration_rounding, f"{path}.proration_rounding").get("proration_rounding")
        if not changes:
            raise InvalidInput(path, "names no change")
        return {"id": self.recurring_commit_id, **changes}


class RecurringCreditUpdateIn(RecurringUpdateIn):
    recurring_credit_id: str = Field(min_length=1)
    proration_rounding: CreditRoundingIn | None = None

    def to_update(self, path: str) -> dict:
        changes = self._changes(path)
        if "proration_rounding" in self.model_fields_set:
            changes["proration_rounding"] = _rounding_document(self.proration_rounding, f"{path}.proration_rounding").get("proration_rounding")
        if not changes:
            raise InvalidInput(path, "names no change")
        return {"id": self.recurring_credit_id, **changes}


# -- responses -----------------------------------------------------------------------------------
def recurring_grant_json(doc: dict, contract: dict, products: Mapping[str, Product]) -> dict:
    """Metronome's RecurringCommit or RecurringCredit of a contract's stored recurring grant, as its
    updates have left it."""
    doc = definitions(doc)[-1]
    product = products.get(doc["product_id"])
    access = doc["access_amount"]
    body: dict[str, Any] = {
        "id": doc["id"],
        "access_amount": {
            # Metronome: quantity-based ones show the null credit type
            "credit_type_id": NO_CREDIT_TYPE if access.get("access_type") == "QUANTITY" else access["credit_type_id"],
            "unit_price": access["unit_price"],
            "access_type": access.get("access_type") or "SPEND",
        },
        "anchor_date": anchor_date(doc, contract),
        "commit_duration": dict(doc["commit_duration"]),
        "priority": doc["priority"],
        "product": {"id": doc["product_id"], "name": product.versions[-1].name if product else doc["product_id"]},
        "rate_type": doc["rate_type"],
        "starting_at": doc["starting_at"],
        "contract": {"id": contract["id"]},
        "applicable_product_ids": doc.get("applicable_product_ids") or [],
        "applicable_product_tags": doc.get("applicable_product_tags") or [],
        "specifiers": doc.get("specifiers") or [],
        "proration": doc.get("proration") or "FIRST_AND_LAST",
    }
    if access.get("quantity") is not None:  # none when linked to a subscription: per seat
        body["access_amount"]["quantity"] = access["quantity"]
    for name in ("description", "ending_before", "name", "netsuite_sales_order_id", "recurrence_frequency",
                 "rollover_fraction", "invoice_amount", "proration_rounding", "hierarchy_configuration",
                 "subscription_config"):
        if doc.get(name) is not None:
            body[name] = doc[name]
    return body
