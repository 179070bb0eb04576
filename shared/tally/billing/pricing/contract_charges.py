"""Discounts and professional services: charges a contract schedules outside its rate card.

Shapes follow metronome-sdk's `Discount` and `ProService` (shared/discount.py, pro_service.py;
v1 contract_create_params.py, contract_schedule_pro_services_invoice_params.py).

* A discount is a scheduled *negative* charge under a FIXED product: each schedule item takes
  quantity × unit_price off the SCHEDULED invoice issued at its timestamp (the same invoice as a
  scheduled charge at that instant). Amounts are given positive, as Metronome's schedule items are.
* A professional service is a term: a FIXED product, a quantity and unit price, and the most it
  may bill (`max_amount`). It bills nothing by itself; `POST /v1/contracts/scheduleProServicesInvoice`
  schedules its charges, each on the SCHEDULED invoice issued at the request's `issued_at`.

Each line is quantity × unit price, rounded once by its credit type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Mapping

from tally.billing.errors import InvalidInput
from tally.billing.pricing.catalog import Product, ProductType
from tally.billing.pricing.lines import LineItem, LineType, line_from_charge
from tally.billing.pricing.money import PRICING_CONTEXT, USD_CENTS, CreditType
from tally.billing.pricing.periods import Period
from tally.billing.pricing.pricers import Charge, price_flat
from tally.billing.pricing.subscriptions import ScheduleItem
from tally.billing.pricing.validation import aware, non_negative


@dataclass(frozen=True, slots=True)
class Discount:
    id: str
    product_id: str  # a FIXED product
    schedule_items: tuple[ScheduleItem, ...]  # each item's quantity × unit_price comes off
    name: str | None = None
    credit_type: CreditType = USD_CENTS


@dataclass(frozen=True, slots=True)
class ProfessionalService:
    id: str
    product_id: str  # a FIXED product
    quantity: Decimal
    unit_price: Decimal
    max_amount: Decimal  # the most its scheduled charges may add up to
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ProServiceCharge:
    """One line scheduled for a professional service on the invoice issued at `issued_at`."""

    id: str
    professional_service_id: str
    issued_at: datetime
    quantity: Decimal
    unit_price: Decimal
    metadata: str | None = None

    @property
    def amount(self) -> Decimal:
        return PRICING_CONTEXT.multiply(self.quantity, self.unit_price)


@dataclass(frozen=True, slots=True)
class ProServices:
    """A contract's professional services and the charges scheduled for them so far."""

    terms: tuple[ProfessionalService, ...] = ()
    charges: tuple[ProServiceCharge, ...] = ()

    def term(self, service_id: str) -> ProfessionalService | None:
        return next((t for t in self.terms if t.id == service_id), None)


def validate_discount(discount: Discount, products: Mapping[str, Product], field: str) -> None:
    product = products.get(discount.product_id)
    if product is None or product.type is not ProductType.FIXED:
        raise InvalidInput(f"{field}.product_id", "must be a FIXED product")
    if not discount.schedule_items:
        raise InvalidInput(f"{field}.schedule.schedule_items", "must hold at least one item")
    for index, item in enumerate(discount.schedule_items):
        prefix = f"{field}.schedule.schedule_items[{index}]"
        aware(item.timestamp, f"{prefix}.timestamp")
        non_negative(item.unit_price, f"{prefix}.unit_price")
        non_negative(item.quantity, f"{prefix}.quantity")


def validate_professional_services(services: ProServices, products: Mapping[str, Product], field: str) -> None:
    """Each term under a FIXED product, and what is scheduled for it within its max_amount."""
    for index, term in enumerate(services.terms):
        prefix = f"{field}[{index}]"
        product = products.get(term.product_id)
        if product is None or product.type is not ProductType.FIXED:
            raise InvalidInput(f"{prefix}.product_id", "must be a FIXED product")
        non_negative(term.quantity, f"{prefix}.quantity")
        non_negative(term.unit_price, f"{prefix}.unit_price")
        non_negative(term.max_amount, f"{prefix}.max_amount")
    billed: dict[str, Decimal] = {}
    for charge in services.charges:
        term = services.term(charge.professional_service_id)
        if term is None:
            raise InvalidInput("line_items.professional_service_id", f"{charge.professional_service_id} is not a professional service of the contract")
        total = PRICING_CONTEXT.add(billed.get(term.id, Decimal(0)), charge.amount)
        if total > term.max_amount:
            raise InvalidInput(
                "line_items.amount",
                f"would bill {total} for professional service {term.id}, more than its max_amount {term.max_amount}",
            )
        billed[term.id] = total


def discount_lines(discount: Discount, product: Product, period: Period) -> list[LineItem]:
    """Items whose timestamp falls in the period, each a line of -(quantity × unit_price)."""
    lines = []
    for item in discount.schedule_items:
        if not period.contains(item.timestamp):
            continue
        positive = price_flat(item.unit_price, item.quantity)
        negative = Charge(positive.quantity, _negated(positive.precise_total), _negated(item.unit_price))
        lines.append(
            line_from_charge(
                negative,
                type=LineType.SCHEDULED,
                name=discount.name or product.at(item.timestamp).name,
                product_id=product.id,
                product_type=ProductType.FIXED,
                credit_type=discount.credit_type,
                starting_at=item.timestamp,
                ending_before=None,
                discount_id=discount.id,
            )
        )
    return lines


def pro_service_lines(
    services: ProServices, products: Mapping[str, Product], period: Period, credit_type: CreditType
) -> list[LineItem]:
    """The scheduled charges issued within the period, each quantity × unit_price."""
    lines = []
    for charge in services.charges:
        if not period.contains(charge.issued_at):
            continue
        term = services.term(charge.professional_service_id)
        assert term is not None, "validated: a charge names a term of the contract"
        product = products[term.product_id]
        lines.append(
            line_from_charge(
                price_flat(charge.unit_price, charge.quantity),
                type=LineType.SCHEDULED,
                name=term.description or product.at(charge.issued_at).name,
                product_id=product.id,
                product_type=ProductType.FIXED,
                credit_type=credit_type,
                starting_at=charge.issued_at,
                ending_before=None,
                professional_service_id=term.id,
                metadata=charge.metadata,
            )
        )
    return lines


def _negated(amount: Decimal) -> Decimal:
    # subtract from zero, not minus: a discount of 0 shows as 0, never -0
    return PRICING_CONTEXT.subtract(Decimal(0), amount)
