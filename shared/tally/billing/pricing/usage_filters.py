"""Usage filters: which of a customer's usage a contract bills, when it holds several contracts.

A contract with a usage filter bills only usage whose `group_key` property has one of its
`group_values`; a contract without one bills all the customer's usage. A filter may change over
time: the contract's filter takes effect at its `starting_at` (the contract's start when not
given) and each later update replaces it from its own `starting_at` (Metronome's
`usage_filter.updates`, set by `setUsageFilter`); before the first one the contract bills all
usage. So that no usage is billed twice, contracts in effect at the same time must either be a
single unfiltered contract, or all be filtered on the same key with disjoint values, at every
instant (`validate_concurrent_contracts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.pricing.validation import hour_aligned


@dataclass(frozen=True, slots=True)
class UsageFilter:
    group_key: str
    group_values: tuple[str, ...]
    starting_at: datetime | None = None  # None: from the contract's start


# A stretch of time and the filter in effect over it (None: all usage); None bounds are unbounded.
FilterWindow = tuple["datetime | None", "datetime | None", "UsageFilter | None"]


def validate_usage_filter(usage_filter: UsageFilter, field: str = "usage_filter") -> None:
    if not usage_filter.group_key:
        raise InvalidInput(f"{field}.group_key", "must not be empty")
    if not usage_filter.group_values:
        raise InvalidInput(f"{field}.group_values", "must name at least one value")
    if len(set(usage_filter.group_values)) != len(usage_filter.group_values):
        raise InvalidInput(f"{field}.group_values", "must not repeat a value")
    if usage_filter.starting_at is not None:
        # Counters split usage at hours only, so a filter can only change on an hour.
        hour_aligned(usage_filter.starting_at, f"{field}.starting_at")


def validate_usage_filters(
    initial: UsageFilter | None,
    updates: Sequence[UsageFilter],
    contract_start: datetime,
    contract_end: datetime | None,
) -> None:
    """The contract's filter and its updates: each valid, within the contract, in time order."""
    if initial is None:
        if updates:
            raise InvalidInput("usage_filter", "is required before it can be updated")
        return
    validate_usage_filter(initial)
    start = initial.starting_at or contract_start
    if start < contract_start or (contract_end is not None and start >= contract_end):
        raise InvalidInput("usage_filter.starting_at", "must fall within the contract")
    previous = start
    for index, update in enumerate(updates):
        field = f"usage_filter.updates[{index}]"
        validate_usage_filter(update, field)
        if update.starting_at is None or update.starting_at <= previous:
            raise InvalidInput(f"{field}.starting_at", "must be after the filter it replaces starts")
        if contract_end is not None and update.starting_at >= contract_end:
            raise InvalidInput(f"{field}.starting_at", "must fall within the contract")
        previous = update.starting_at


def filter_windows(initial: UsageFilter | None, updates: Sequence[UsageFilter], contract_start: datetime) -> list[FilterWindow]:
    """All time cut where the filter changes, in order: (start, end, filter), unbounded at both ends."""
    if initial is None:
        return [(None, None, None)]
    changes = [(initial.starting_at or contract_start, initial), *((u.starting_at, u) for u in updates)]
    windows: list[FilterWindow] = [(None, changes[0][0], None)]
    for index, (start, usage_filter) in enumerate(changes):
        end = changes[index + 1][0] if index + 1 < len(changes) else None
        windows.append((start, end, usage_filter))
    return windows


def _overlap(a_start, a_end, b_start, b_end) -> bool:
    return (b_end is None or a_start is None or a_start < b_end) and (a_end is None or b_start is None or b_start < a_end)


@dataclass(frozen=True, slots=True)
class ContractWindow:
    """What the concurrency rule needs to know of a contract."""

    id: str
    starting_at: datetime
    ending_before: datetime | None
    usage_filter: UsageFilter | None
    usage_filter_updates: tuple[UsageFilter, ...] = ()

    def overlaps(self, other: ContractWindow) -> bool:
        return _overlap(self.starting_at, self.ending_before, other.starting_at, other.ending_before)

    def pieces(self) -> list[FilterWindow]:
        """The contract's time cut where its filter changes (clipped to the contract)."""
        found = []
        for start, end, usage_filter in filter_windows(self.usage_filter, self.usage_filter_updates, self.starting_at):
            start = self.starting_at if start is None or start < self.starting_at else start
            if self.ending_before is not None and (end is None or end > self.ending_before):
                end = self.ending_before
            if end is None or start < end:
                found.append((start, end, usage_filter))
        return found


def validate_concurrent_contracts(new: ContractWindow, existing: Sequence[ContractWindow]) -> None:
    """Refuse a contract that would bill usage another contract of the customer already bills."""
    for other in existing:
        if other.id == new.id or not new.overlaps(other):
            continue
        for start, end, usage_filter in new.pieces():
            for other_start, other_end, other_filter in other.pieces():
                if _overlap(start, end, other_start, other_end):
                    _check_disjoint(usage_filter, other_filter, other.id)


def _check_disjoint(usage_filter: UsageFilter | None, other: UsageFilter | None, other_id: str) -> None:
    if usage_filter is None or other is None:
        raise InvalidInput(
            "usage_filter",
            f"contract {other_id} is in effect at the same time; concurrent contracts need usage filters",
        )
    if usage_filter.group_key != other.group_key:
        raise InvalidInput(
            "usage_filter.group_key",
            f"must be {other.group_key!r}, the key of concurrent contract {other_id}",
        )
    shared = set(usage_filter.group_values) & set(other.group_values)
    if shared:
        raise InvalidInput(
            "usage_filter.group_values",
            f"{sorted(shared)} are already billed by concurrent contract {other_id}",
        )


GroupValues = Mapping[str, "str | None"]


class FilteredUsage:
    """A UsageSource seen through a contract's usage filters (same protocol as
    pricing.invoices.UsageSource): a quantity over a range is the sum of its quantities over the
    stretches of one filter, exact for COUNT and SUM, the aggregations a filter is allowed on."""

    def __init__(self, base, windows: Sequence[FilterWindow] | UsageFilter) -> None:
        self._base = base
        self._windows = [(None, None, windows)] if isinstance(windows, UsageFilter) else list(windows)

    def _parts(self, start: datetime, end: datetime):
        for window_start, window_end, usage_filter in self._windows:
            a = start if window_start is None or window_start < start else window_start
            b = end if window_end is None or window_end > end else window_end
            if a < b:
                yield a, b, usage_filter

    def quantity(self, metric_id: str, group_values: GroupValues | None, start: datetime, end: datetime) -> Decimal:
        return sum(
            (self._filtered_quantity(metric_id, group_values, a, b, f) for a, b, f in self._parts(start, end)), Decimal(0)
        )

    def _filtered_quantity(self, metric_id, group_values, start, end, usage_filter: UsageFilter | None) -> Decimal:
        if usage_filter is None:
            return self._base.quantity(metric_id, group_values, start, end)
        key, allowed = usage_filter.group_key, usage_filter.group_values
        values = dict(group_values or {})
        if key in values:
            if values[key] not in allowed:
                return Decimal(0)
            return self._base.quantity(metric_id, values, start, end)
        return sum((self._base.quantity(metric_id, {**values, key: v}, start, end) for v in allowed), Decimal(0))

    def group_values(self, metric_id: str, group_keys: Sequence[str], start: datetime, end: datetime) -> list[dict]:
        keys = list(group_keys)
        seen: dict[tuple, dict] = {}
        for a, b, usage_filter in self._parts(start, end):
            if usage_filter is None:
                combos = self._base.group_values(metric_id, keys, a, b)
            else:
                wider = keys if usage_filter.group_key in keys else [*keys, usage_filter.group_key]
                combos = [
                    c for c in self._base.group_values(metric_id, wider, a, b) if c.get(usage_filter.group_key) in usage_filter.group_values
                ]
            for combo in combos:
                projected = {k: combo.get(k) for k in keys}
                seen.setdefault(tuple(projected.values()), projected)
        return list(seen.values())
