"""Billable metrics: which events count, and what number each one contributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from tally.billing import exact_json
from tally.billing.errors import InvalidInput
from tally.billing.limits import storable_number
from tally.billing.events import UsageEvent


class Aggregation(str, Enum):
    COUNT = "COUNT"
    SUM = "SUM"
    MAX = "MAX"
    UNIQUE = "UNIQUE"
    LATEST = "LATEST"

    @property
    def is_additive(self) -> bool:
        return self in (Aggregation.COUNT, Aggregation.SUM)


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    name: str
    exists: bool | None = None
    in_values: tuple[str, ...] | None = None
    not_in_values: tuple[str, ...] | None = None

    def passes(self, properties: dict[str, Any]) -> bool:
        present = self.name in properties and properties[self.name] is not None
        if self.exists is True and not present:
            return False
        if self.exists is False and present:
            return False
        if self.in_values is not None:
            if not present or property_text(properties[self.name]) not in self.in_values:
                return False
        if self.not_in_values is not None and present:
            if property_text(properties[self.name]) in self.not_in_values:
                return False
        return True


@dataclass(frozen=True, slots=True)
class EventTypeFilter:
    in_values: tuple[str, ...] | None = None
    not_in_values: tuple[str, ...] | None = None

    def passes(self, event_type: str) -> bool:
        if self.in_values is not None and event_type not in self.in_values:
            return False
        if self.not_in_values is not None and event_type in self.not_in_values:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one event adds to one metric: its group values and its value."""

    group: tuple[str | None, ...]
    value: Decimal | str  # str only for UNIQUE


@dataclass(frozen=True, slots=True)
class BillableMetric:
    id: str
    name: str
    aggregation_type: Aggregation
    aggregation_key: str | None
    event_type_filter: EventTypeFilter | None
    property_filters: tuple[PropertyFilter, ...]
    group_keys: tuple[tuple[str, ...], ...]
    custom_fields: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    # Events ingested at or after this instant are counted live by the aggregator; those ingested
    # before it are counted once by the backfill. The two sets are disjoint by construction.
    activated_at: datetime | None = None
    archived_at: datetime | None = None

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every property named by any group key; counters keep the full tuple so any key can be read."""
        return tuple(sorted({key for compound in self.group_keys for key in compound}))

    def counts_ingested_at(self, ingested_at: datetime) -> bool:
        if self.activated_at is None or ingested_at < self.activated_at:
            return False
        return self.archived_at is None or ingested_at < self.archived_at

    def contribution(self, event: UsageEvent) -> Contribution | None:
        """The event's contribution, or None if the metric does not match it."""
        if self.event_type_filter is not None and not self.event_type_filter.passes(event.event_type):
            return None
        props = event.properties
        for prop_filter in self.property_filters:
            if not prop_filter.passes(props):
                return None
        group = tuple(
            property_text(props[key]) if props.get(key) is not None else None for key in self.dimensions
        )
        if self.aggregation_type is Aggregation.COUNT:
            return Contribution(group, Decimal(1))
        raw = props.get(self.aggregation_key) if self.aggregation_key else None
        if raw is None:
            return None
        if self.aggregation_type is Aggregation.UNIQUE:
            return Contribution(group, property_text(raw))
        number = numeric_value(raw)
        return None if number is None else Contribution(group, number)


def property_text(value: Any) -> str:
    """How a property value compares with filter values and group values, which are strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return exact_json.dumps(value, sort_keys=True)


def numeric_value(raw: Any) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, str):
        try:
            number = Decimal(raw.strip())
        except InvalidOperation:
            return None
        # A numeric string counts only if a DynamoDB number can hold it: '1e400', 'NaN' or
        # 'Infinity' once poisoned a counter and made every usage read fail.
        return number if storable_number(number) else None
    return None



def validate_metric_definition(
    aggregation_type: Aggregation, aggregation_key: str | None, group_keys: tuple[tuple[str, ...], ...]
) -> None:
    if aggregation_type is Aggregation.COUNT:
        if aggregation_key:
            raise InvalidInput("aggregation_key", "must be omitted when aggregation_type is COUNT")
    elif not aggregation_key:
        raise InvalidInput("aggregation_key", f"is required when aggregation_type is {aggregation_type.value}")
    for index, compound in enumerate(group_keys):
        if not compound:
            raise InvalidInput(f"group_keys[{index}]", "must name at least one property")
        if len(set(compound)) != len(compound):
            raise InvalidInput(f"group_keys[{index}]", "must not repeat a property")
