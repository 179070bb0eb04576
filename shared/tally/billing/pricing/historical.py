"""Historical invoices (migrations from another billing system): usage quantities given per product
and window, priced once by the contract as it stood, never re-priced afterwards.

The quantities come without events, so each is placed at the start of the window it is given for
(a subtotal's window when subtotals are given): rating then splits nothing it cannot place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.pricing.catalog import Product, ProductType
from tally.billing.pricing.contract_charges import ProServices
from tally.billing.pricing.contracts import Contract
from tally.billing.pricing.invoices import Invoice, InvoiceType, build_draft_invoices
from tally.billing.pricing.periods import Period


@dataclass(frozen=True)
class HistoricalQuantity:
    product_id: str
    at: datetime  # the start of the window the quantity is given for
    quantity: Decimal
    group_values: Mapping[str, str]  # pricing and presentation group values, as given


class HistoricalUsage:
    """A UsageSource answering the given quantities, by the metric each product meters."""

    def __init__(self, quantities: Sequence[HistoricalQuantity], products: Mapping[str, Product]) -> None:
        self._by_metric: dict[str, list[HistoricalQuantity]] = {}
        for q in quantities:
            metric_id = products[q.product_id].at(q.at).billable_metric_id
            self._by_metric.setdefault(metric_id, []).append(q)

    def quantity(self, metric_id, group_values, start, end) -> Decimal:
        return sum(
            (q.quantity for q in self._by_metric.get(metric_id, ())
             if start <= q.at < end and all(q.group_values.get(k) == v for k, v in (group_values or {}).items())),
            Decimal(0),
        )

    def group_values(self, metric_id, group_keys, start, end) -> list:
        seen: list[dict] = []
        for q in self._by_metric.get(metric_id, ()):
            values = {k: q.group_values.get(k) for k in group_keys}
            if start <= q.at < end and values not in seen:
                seen.append(values)
        return seen


def price_historical_invoice(
    contract: Contract, products: Mapping[str, Product], period: Period, quantities: Sequence[HistoricalQuantity],
    field: str,
) -> Invoice:
    """The period's USAGE invoice holding the given usage alone (no subscription, scheduled or
    commit lines), priced by the contract's rates and overrides at each quantity's instant; each line
    rounded once, as rating rounds it."""
    on_card = contract.price_book().timeline.product_ids()
    for i, q in enumerate(quantities):
        product = products.get(q.product_id)
        if product is None or product.type is not ProductType.USAGE or product.at(q.at).billable_metric_id is None:
            raise InvalidInput(f"{field}.usage_line_items[{i}].product_id", "must be a USAGE product with a billable metric")
        if q.product_id not in on_card:
            raise InvalidInput(f"{field}.usage_line_items[{i}].product_id", "is not on the contract's rate card")
    usage_only = replace(contract, subscriptions=(), scheduled_charges=(), discounts=(), professional_services=ProServices())
    invoice = build_draft_invoices(usage_only, products, period, HistoricalUsage(quantities, products))[0]
    assert invoice.type is InvoiceType.USAGE
    given = {q.product_id for q in quantities}
    lines = tuple(line for line in invoice.line_items if line.product_id in given)
    subtotal = sum((line.total for line in lines), Decimal(0))
    return replace(invoice, line_items=lines, subtotal=subtotal, total=subtotal)
