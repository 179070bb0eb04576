"""The body of `POST /v1/contracts/createHistoricalInvoices` (services/historical_invoices.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field

from tally.api.models import MAX_NAME_LENGTH, CustomFields, Request, parse_instant
from tally.billing.errors import InvalidInput
from tally.billing.pricing.historical import HistoricalQuantity
from tally.services.historical_invoices import HistoricalInvoiceIn

MAX_HISTORICAL_INVOICES = 100
MAX_LINE_ITEMS = 1000


class SubtotalIn(Request):
    inclusive_start_date: str
    exclusive_end_date: str
    quantity: Decimal = Field(ge=0)


class UsageLineItemIn(Request):
    product_id: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    inclusive_start_date: str
    exclusive_end_date: str
    quantity: Decimal | None = Field(default=None, ge=0)
    pricing_group_values: dict[str, str] = Field(default_factory=dict)
    presentation_group_values: dict[str, str] = Field(default_factory=dict)
    subtotals_with_quantity: list[SubtotalIn] | None = Field(default=None, max_length=MAX_LINE_ITEMS)

    def quantities(self, field: str) -> list[HistoricalQuantity]:
        """The line's quantity at its start, or each subtotal's at the subtotal's start."""
        start = parse_instant(f"{field}.inclusive_start_date", self.inclusive_start_date)
        end = parse_instant(f"{field}.exclusive_end_date", self.exclusive_end_date)
        if start >= end:
            raise InvalidInput(f"{field}.exclusive_end_date", "must be after inclusive_start_date")
        values = {**self.presentation_group_values, **self.pricing_group_values}
        if self.subtotals_with_quantity:
            found = []
            for j, sub in enumerate(self.subtotals_with_quantity):
                where = f"{field}.subtotals_with_quantity[{j}]"
                at = parse_instant(f"{where}.inclusive_start_date", sub.inclusive_start_date)
                sub_end = parse_instant(f"{where}.exclusive_end_date", sub.exclusive_end_date)
                if not start <= at < sub_end <= end:
                    raise InvalidInput(where, "must be a window within the line's")
                found.append(HistoricalQuantity(self.product_id, at, sub.quantity, values))
            if self.quantity is not None and self.quantity != sum(s.quantity for s in self.subtotals_with_quantity):
                raise InvalidInput(f"{field}.quantity", "must be the sum of subtotals_with_quantity")
            return found
        if self.quantity is None:
            raise InvalidInput(f"{field}.quantity", "is required without subtotals_with_quantity")
        return [HistoricalQuantity(self.product_id, start, self.quantity, values)]


class HistoricalInvoiceRequestIn(Request):
    customer_id: str = Field(min_length=1)
    contract_id: str = Field(min_length=1)
    credit_type_id: str = Field(min_length=1)
    inclusive_start_date: str
    exclusive_end_date: str
    issue_date: str
    usage_line_items: list[UsageLineItemIn] = Field(max_length=MAX_LINE_ITEMS)
    # Accepted and not kept: Tally has no unbillable invoices or breakdown settings per invoice.
    billable_status: Literal["billable", "unbillable"] | None = None
    breakdown_granularity: Literal["HOUR", "DAY"] | None = None
    custom_fields: CustomFields = Field(default_factory=dict)  # kept on the invoice, shown on its reads

    def to_input(self, field: str) -> HistoricalInvoiceIn:
        start = parse_instant(f"{field}.inclusive_start_date", self.inclusive_start_date)
        end = parse_instant(f"{field}.exclusive_end_date", self.exclusive_end_date)
        issued = parse_instant(f"{field}.issue_date", self.issue_date)
        if issued < end:
            raise InvalidInput(f"{field}.issue_date", "must not be before exclusive_end_date")
        quantities = [q for i, line in enumerate(self.usage_line_items)
                      for q in line.quantities(f"{field}.usage_line_items[{i}]")]
        return HistoricalInvoiceIn(
            self.customer_id, self.contract_id, self.credit_type_id, start, end, tuple(quantities), dict(self.custom_fields)
        )


class CreateHistoricalInvoices(Request):
    model_config = ConfigDict(extra="forbid")

    invoices: list[HistoricalInvoiceRequestIn] = Field(min_length=1, max_length=MAX_HISTORICAL_INVOICES)
    preview: bool

    def inputs(self) -> list[HistoricalInvoiceIn]:
        return [invoice.to_input(f"invoices[{i}]") for i, invoice in enumerate(self.invoices)]
