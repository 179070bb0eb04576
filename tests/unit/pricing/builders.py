"""Small builders and an in-memory UsageSource for the rating tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Mapping, Sequence

from tally.billing.pricing import (
    Contract,
    Invoice,
    Period,
    Product,
    ProductType,
    ProductVersion,
    Rate,
    RateCard,
    RateType,
    Tier,
    build_draft_invoices,
)

UTC = timezone.utc
D = Decimal


def at(month: int, day: int, hour: int = 0, year: int = 2026, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


JAN = Period(at(1, 1), at(2, 1))
FEB = Period(at(2, 1), at(3, 1))


@dataclass
class FakeUsage:
    """Events as (timestamp, metric, value, properties); SUM over the matching ones."""

    events: list[tuple[datetime, str, Decimal, dict[str, str]]] = field(default_factory=list)

    def add(self, when: datetime, value, metric: str = "calls", **properties: str) -> FakeUsage:
        self.events.append((when, metric, D(value), properties))
        return self

    def quantity(self, metric_id, group_values, start, end) -> Decimal:
        total = D(0)
        for when, metric, value, props in self.events:
            if metric == metric_id and start <= when < end:
                if all(props.get(k) == v for k, v in (group_values or {}).items()):
                    total += value
        return total

    def group_values(self, metric_id, group_keys: Sequence[str], start, end) -> list[Mapping[str, str | None]]:
        seen = {
            tuple(props.get(k) for k in group_keys)
            for when, metric, _, props in self.events
            if metric == metric_id and start <= when < end
        }
        return [dict(zip(group_keys, combo)) for combo in sorted(seen, key=lambda c: [v or "" for v in c])]


def product(id: str, type: ProductType = ProductType.USAGE, name: str | None = None, **version) -> Product:
    if type is ProductType.USAGE:
        version.setdefault("billable_metric_id", "calls")
    return Product(id, type, (ProductVersion(starting_at=at(1, 1, year=2025), name=name or id, **version),))


def flat(product_id: str, price, start: datetime = at(1, 1, year=2025), end: datetime | None = None, **kw) -> Rate:
    return Rate(product_id, start, RateType.FLAT, price=D(price), ending_before=end, **kw)


def tiered(product_id: str, tiers, start: datetime = at(1, 1, year=2025), end: datetime | None = None, **kw) -> Rate:
    """tiers: [(price, size), ..., (price,)]"""
    return Rate(
        product_id,
        start,
        RateType.TIERED,
        tiers=tuple(Tier(D(t[0]), D(t[1]) if len(t) > 1 else None) for t in tiers),
        ending_before=end,
        **kw,
    )


def contract(*rates: Rate, start: datetime = at(1, 1), **kw) -> Contract:
    return Contract("c1", "acme", start, RateCard("rc1", "Standard", tuple(rates)), **kw)


def catalog(*products: Product) -> dict[str, Product]:
    return {p.id: p for p in products}


def invoice(contract_: Contract, products: Mapping[str, Product], usage=None, period: Period = JAN) -> Invoice:
    return build_draft_invoices(contract_, products, period, usage or FakeUsage())[0]


def all_invoices(contract_: Contract, products: Mapping[str, Product], usage=None, period: Period = JAN) -> tuple[Invoice, ...]:
    return build_draft_invoices(contract_, products, period, usage or FakeUsage())


def all_lines(contract_: Contract, products: Mapping[str, Product], usage=None, period: Period = JAN) -> list:
    """Every line of the period, whichever of its invoices (usage or scheduled) it lands on."""
    return [line for inv in all_invoices(contract_, products, usage, period) for line in inv.line_items]


def summary(inv: Invoice) -> list[tuple]:
    """(product, start day/hour, quantity, total) per line: what a reader checks on an invoice."""
    return [(l.product_id, l.starting_at.strftime("%m-%dT%H"), l.quantity, l.total) for l in inv.line_items]
