"""Usage filters: which of a customer's usage a contract bills, when it holds several contracts.

A contract with a usage filter bills only usage whose `group_key` property has one of its
`group_values`; a contract without one bills all the customer's usage. So that no usage is billed
twice, contracts in effect at the same time must either be a single unfiltered contract, or all be
filtered on the same key with disjoint values (`validate_concurrent_contracts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Sequence

from tally.billing.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class UsageFilter:
    group_key: str
    group_values: tuple[str, ...]


def validate_usage_filter(usage_filter: UsageFilter, field: str = "usage_filter") -> None:
    if not usage_filter.group_key:
        raise InvalidInput(f"{field}.group_key", "must not be empty")
    if not usage_filter.group_values:
        raise InvalidInput(f"{field}.group_values", "must name at least one value")
    if len(set(usage_filter.group_values)) != len(usage_filter.group_values):
        raise InvalidInput(f"{field}.group_values", "must not repeat a value")


@dataclass(frozen=True, slots=True)
class ContractWindow:
    """What the concurrency rule needs to know of a contract."""

    id: str
    starting_at: datetime
    ending_before: datetime | None
    usage_filter: UsageFilter | None

    def overlaps(self, other: ContractWindow) -> bool:
        return (other.ending_before is None or self.starting_at < other.ending_before) and (
            self.ending_before is None or other.starting_at < self.ending_before
        )


def validate_concurrent_contracts(new: ContractWindow, existing: Sequence[ContractWindow]) -> None:
    """Refuse a contract that would bill usage another contract of the customer already bills."""
    for other in existing:
        if other.id == new.id or not new.overlaps(other):
            continue
        if new.usage_filter is None or other.usage_filter is None:
            raise InvalidInput(
                "usage_filter",
                f"contract {other.id} is in effect at the same time; concurrent contracts need usage filters",
            )
        if new.usage_filter.group_key != other.usage_filter.group_key:
            raise InvalidInput(
                "usage_filter.group_key",
                f"must be {other.usage_filter.group_key!r}, the key of concurrent contract {other.id}",
            )
        shared = set(new.usage_filter.group_values) & set(other.usage_filter.group_values)
        if shared:
            raise InvalidInput(
                "usage_filter.group_values",
                f"{sorted(shared)} are already billed by concurrent contract {other.id}",
            )


GroupValues = Mapping[str, "str | None"]


class FilteredUsage:
    """A UsageSource seen through a usage filter (same protocol as pricing.invoices.UsageSource)."""

    def __init__(self, base, usage_filter: UsageFilter) -> None:
        self._base = base
        self._key = usage_filter.group_key
        self._values = usage_filter.group_values

    def quantity(self, metric_id: str, group_values: GroupValues | None, start: datetime, end: datetime) -> Decimal:
        values = dict(group_values or {})
        if self._key in values:
            if values[self._key] not in self._values:
                return Decimal(0)
            return self._base.quantity(metric_id, values, start, end)
        # Summing per value is exact for COUNT and SUM, the aggregations a filter is allowed on.
        return sum(
            (self._base.quantity(metric_id, {**values, self._key: v}, start, end) for v in self._values), Decimal(0)
        )

    def group_values(self, metric_id: str, group_keys: Sequence[str], start: datetime, end: datetime) -> list[dict]:
        keys = list(group_keys)
        wider = keys if self._key in keys else [*keys, self._key]
        seen: dict[tuple, dict] = {}
        for combo in self._base.group_values(metric_id, wider, start, end):
            if combo.get(self._key) in self._values:
                projected = {k: combo.get(k) for k in keys}
                seen.setdefault(tuple(projected.values()), projected)
        return list(seen.values())
