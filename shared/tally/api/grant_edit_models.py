"""Updates of a contract's commits and credits: the edit's `update_commits` / `update_credits`
(metronome-sdk types/v2/contract_edit_params.py UpdateCommit, UpdateCredit) and the bodies of
`POST /v2/contracts/commits/edit` and `/credits/edit` (contract_edit_commit_params.py,
contract_edit_credit_params.py). Each becomes the normalized update services/grant_edits.py applies.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from tally.api.balance_models import SpecifierIn
from tally.api.models import MAX_NAME_LENGTH, Request, parse_instant
from tally.billing.errors import InvalidInput
from tally.billing.hierarchy import child_access_document
from tally.billing.limits import MAX_ID_LENGTH, MAX_IDS_PER_REQUEST
from tally.billing.time import format_rfc3339

MAX_PARTS = MAX_IDS_PER_REQUEST
Id = Field(min_length=1, max_length=MAX_ID_LENGTH)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _instant(field: str, value: str) -> str:
    instant = parse_instant(field, value)
    if instant is None:
        raise InvalidInput(field, "is required")
    return format_rfc3339(instant)


def _non_negative(field: str, value: Decimal | None) -> None:
    if value is not None and value < 0:
        raise InvalidInput(field, "must not be negative")


class ItemRef(Request):
    id: str = Id


class AccessItemAddIn(Request):
    amount: Decimal
    starting_at: str
    ending_before: str

    def to_item(self, path: str) -> dict:
        _non_negative(_join(path, "amount"), self.amount)
        return {"amount": self.amount, "starting_at": _instant(_join(path, "starting_at"), self.starting_at),
                "ending_before": _instant(_join(path, "ending_before"), self.ending_before)}


class AccessItemUpdateIn(Request):
    id: str = Id
    amount: Decimal | None = None
    starting_at: str | None = None
    ending_before: str | None = None

    def to_change(self, path: str) -> dict:
        _non_negative(_join(path, "amount"), self.amount)
        change: dict[str, Any] = {"id": self.id}
        if self.amount is not None:
            change["amount"] = self.amount
        for name in ("starting_at", "ending_before"):
            value = getattr(self, name)
            if value is not None:
                change[name] = _instant(_join(path, f"{name}"), value)
        return change


class _ScheduleUpdate(Request):
    """Items added, removed and updated in one schedule (access or invoice): the subclasses type them."""

    def to_changes(self, path: str) -> dict:
        changes: dict[str, Any] = {}
        if self.add_schedule_items:
            changes["add_schedule_items"] = [i.to_item(_join(path, f"add_schedule_items[{j}]")) for j, i in enumerate(self.add_schedule_items)]
        if self.remove_schedule_items:
            changes["remove_schedule_items"] = [{"id": r.id} for r in self.remove_schedule_items]
        if self.update_schedule_items:
            changes["update_schedule_items"] = [
                i.to_change(_join(path, f"update_schedule_items[{j}]")) for j, i in enumerate(self.update_schedule_items)
            ]
        return changes


class AccessScheduleUpdateIn(_ScheduleUpdate):
    add_schedule_items: list[AccessItemAddIn] | None = Field(default=None, max_length=MAX_PARTS)
    remove_schedule_items: list[ItemRef] | None = Field(default=None, max_length=MAX_PARTS)
    update_schedule_items: list[AccessItemUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)


class InvoiceItemAddIn(Request):
    timestamp: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None

    def to_item(self, path: str) -> dict:
        price = _price(path, self.amount, self.quantity, self.unit_price)
        if "amount" not in price and len(price) < 2:
            raise InvalidInput(_join(path, "amount"), "give amount, or quantity with unit_price")
        return {"timestamp": _instant(_join(path, "timestamp"), self.timestamp)} | price


class InvoiceItemUpdateIn(Request):
    id: str = Id
    timestamp: str | None = None
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None

    def to_change(self, path: str) -> dict:
        change: dict[str, Any] = {"id": self.id} | _price(path, self.amount, self.quantity, self.unit_price)
        if self.timestamp is not None:
            change["timestamp"] = _instant(_join(path, "timestamp"), self.timestamp)
        return change


def _price(path: str, amount: Decimal | None, quantity: Decimal | None, unit_price: Decimal | None) -> dict:
    if amount is not None and (quantity is not None or unit_price is not None):
        raise InvalidInput(_join(path, "amount"), "give either amount or quantity and unit_price")
    price = {}
    for name, value in (("amount", amount), ("quantity", quantity), ("unit_price", unit_price)):
        _non_negative(_join(path, f"{name}"), value)
        if value is not None:
            price[name] = value
    return price


class InvoiceScheduleUpdateIn(_ScheduleUpdate):
    add_schedule_items: list[InvoiceItemAddIn] | None = Field(default=None, max_length=MAX_PARTS)
    remove_schedule_items: list[ItemRef] | None = Field(default=None, max_length=MAX_PARTS)
    update_schedule_items: list[InvoiceItemUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)


class GrantUpdateIn(Request):
    """What UpdateCommit and UpdateCredit share."""

    access_schedule: AccessScheduleUpdateIn | None = None
    applicable_product_ids: list[str] | None = Field(default=None, max_length=MAX_PARTS)
    applicable_product_tags: list[str] | None = Field(default=None, max_length=MAX_PARTS)
    specifiers: list[SpecifierIn] | None = Field(default=None, max_length=MAX_PARTS)
    description: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    netsuite_sales_order_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    priority: Decimal | None = None
    product_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    hierarchy_configuration: Any = None  # child access of a parent contract's grant (billing/hierarchy.py)

    def _update(self, grant_id: str, path: str) -> dict:
        update: dict[str, Any] = {"id": grant_id}
        if self.hierarchy_configuration is not None:
            update["hierarchy_configuration"] = child_access_document(
                self.hierarchy_configuration, _join(path, "hierarchy_configuration")
            )
        if self.access_schedule is not None:
            access = self.access_schedule.to_changes(_join(path, "access_schedule"))
            if access:
                update["access_schedule"] = access
        fields = self.model_fields_set
        for name in ("applicable_product_ids", "applicable_product_tags", "priority", "netsuite_sales_order_id"):
            if name in fields:
                update[name] = getattr(self, name)
        if "specifiers" in fields:
            update["specifiers"] = [s.model_dump(exclude_none=True) for s in self.specifiers or ()]
        for name in ("description", "name", "product_id", "rate_type"):
            if getattr(self, name) is not None:
                update[name] = getattr(self, name)
        return update


class CommitUpdateIn(GrantUpdateIn):
    commit_id: str = Id
    invoice_schedule: InvoiceScheduleUpdateIn | None = None
    rollover_fraction: Decimal | None = None

    def to_update(self, path: str) -> dict:
        update = self._update(self.commit_id, path)
        if self.invoice_schedule is not None:
            invoices = self.invoice_schedule.to_changes(_join(path, "invoice_schedule"))
            if invoices:
                update["invoice_schedule"] = invoices
        if "rollover_fraction" in self.model_fields_set:
            if self.rollover_fraction is not None and not Decimal(0) <= self.rollover_fraction <= Decimal(1):
                raise InvalidInput(_join(path, "rollover_fraction"), "must be between 0 and 1")
            update["rollover_fraction"] = self.rollover_fraction
        if len(update) == 1:
            raise InvalidInput(path or "commit_id", "names no change")
        return update


class CreditUpdateIn(GrantUpdateIn):
    credit_id: str = Id

    def to_update(self, path: str) -> dict:
        update = self._update(self.credit_id, path)
        if len(update) == 1:
            raise InvalidInput(path or "credit_id", "names no change")
        return update


class CommitEdit(CommitUpdateIn):
    """POST /v2/contracts/commits/edit: one commit of the customer's, found by id."""

    customer_id: str = Id
    applicable_contract_ids: list[str] | None = Field(default=None, max_length=MAX_PARTS)
    invoice_contract_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)

    def to_update(self, path: str = "") -> dict:
        if "applicable_contract_ids" in self.model_fields_set:
            raise InvalidInput("applicable_contract_ids", "cannot be edited for a contract-level commit")
        return super().to_update(path)


class CreditEdit(CreditUpdateIn):
    """POST /v2/contracts/credits/edit: one credit of the customer's, found by id."""

    customer_id: str = Id
    applicable_contract_ids: list[str] | None = Field(default=None, max_length=MAX_PARTS)

    def to_update(self, path: str = "") -> dict:
        if "applicable_contract_ids" in self.model_fields_set:
            raise InvalidInput("applicable_contract_ids", "cannot be edited for a contract-level credit")
        return super().to_update(path)
