"""Invoice line items, and the single place a line's total is rounded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Mapping

from tally.billing.pricing.catalog import ProductType
from tally.billing.pricing.money import CreditType
from tally.billing.pricing.pricers import Charge, TierCharge
from tally.billing.pricing.rates import Rate
from tally.billing.values import hot_value


class LineType(str, Enum):
    USAGE = "usage"  # usage and composite products
    SUBSCRIPTION = "subscription"
    SCHEDULED = "scheduled"
    CPU_CONVERSION = "cpu_conversion"  # custom pricing unit spend converted to the fiat credit type
    COMMIT_PURCHASE = "commit_purchase"  # an invoice schedule item of a prepaid commit
    POSTPAID_TRUEUP = "postpaid_trueup"  # what a postpaid commit's usage did not consume
    APPLIED_COMMIT_OR_CREDIT = "applied_commit_or_credit"  # a drawdown, negative


@hot_value
class SubLineItem:
    name: str
    quantity: Decimal
    subtotal: Decimal  # exact
    tiers: tuple[TierCharge, ...] = ()


@hot_value
class LineItem:
    type: LineType
    name: str
    product_id: str
    product_type: ProductType
    credit_type: CreditType
    quantity: Decimal
    unit_price: Decimal | None  # None when the quantity spans several tier prices
    total: Decimal  # precise_total rounded once, to the credit type's precision
    precise_total: Decimal
    starting_at: datetime
    ending_before: datetime | None  # None for a charge at one instant (scheduled charges)
    pricing_group_values: Mapping[str, str | None] | None = None
    presentation_group_values: Mapping[str, str | None] | None = None
    sub_line_items: tuple[SubLineItem, ...] = ()
    is_prorated: bool = False
    list_price: Rate | None = None  # the rate card rate, when an override changed the price
    commit_total: Decimal | None = None  # usage lines: the same quantity at the rate's commit price
    subscription_id: str | None = None
    scheduled_charge_id: str | None = None
    converted_credit_type: CreditType | None = None  # CPU_CONVERSION: the unit converted from
    commit_id: str | None = None  # the commit or credit applied, bought or trued up
    commit_segment_id: str | None = None
    commit_type: str | None = None  # PREPAID, POSTPAID or CREDIT
    # Postpaid drawdowns are shown but paid in arrears (by the true-up), so they are not in the total.
    counts_in_total: bool = True
    scheduled_at: datetime | None = None  # on the SCHEDULED invoice issued at this instant


def line_from_charge(
    charge: Charge,
    type: LineType,
    name: str,
    product_id: str,
    product_type: ProductType,
    credit_type: CreditType,
    starting_at: datetime,
    ending_before: datetime | None,
    pricing_group_values: Mapping[str, str | None] | None = None,
    presentation_group_values: Mapping[str, str | None] | None = None,
    list_price: Rate | None = None,
    is_prorated: bool = False,
    commit_total: Decimal | None = None,
    **extra: object,
) -> LineItem:
    """The line of a charge, its total rounded once. Positional arguments are allowed: usage lines
    are built by the thousand per invoice."""
    sub_lines = (SubLineItem(name, charge.quantity, charge.precise_total, charge.tiers),) if charge.tiers else ()
    return LineItem(
        type,
        name,
        product_id,
        product_type,
        credit_type,
        charge.quantity,
        charge.unit_price,
        credit_type.round(charge.precise_total),
        charge.precise_total,
        starting_at,
        ending_before,
        pricing_group_values,
        presentation_group_values,
        sub_lines,
        is_prorated,
        list_price,
        commit_total,  # positional: a keyword costs a search through the 26 parameters, per line
        **extra,  # type: ignore[arg-type]
    )
