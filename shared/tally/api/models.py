"""Request bodies of the Metronome-compatible API, and the mapping of domain objects to responses.
Field names follow `metronome-sdk`'s types/ modules."""

from __future__ import annotations

import base64
import gzip
import io
import zlib
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from tally.billing import exact_json
from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput
from tally.billing.limits import (
    MAX_BODY_BYTES,
    MAX_CUSTOM_FIELD_KEY_LENGTH,
    MAX_CUSTOM_FIELD_VALUE_LENGTH,
    MAX_CUSTOM_FIELDS,
    MAX_FILTER_VALUE_LENGTH,
    MAX_FILTER_VALUES,
    MAX_FILTERS_PER_METRIC,
    MAX_GROUP_PROPERTIES,
    MAX_ID_LENGTH,
    MAX_IDS_PER_REQUEST,
    MAX_NAME_LENGTH,
    MAX_PROPERTY_NAME_LENGTH,
    SURROGATE_ESCAPE,
    first_unstorable,
)
from tally.billing.metrics import Aggregation, BillableMetric, EventTypeFilter, PropertyFilter
from tally.billing.pricing.subscriptions import MAX_DECIMAL_PLACES, MIN_DECIMAL_PLACES
from tally.billing.time import format_rfc3339, parse_rfc3339

# Bounded strings and maps every request model shares (the bounds: tally.billing.limits).
CustomFields = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=MAX_CUSTOM_FIELD_KEY_LENGTH)],
        Annotated[str, StringConstraints(max_length=MAX_CUSTOM_FIELD_VALUE_LENGTH)],
    ],
    Field(max_length=MAX_CUSTOM_FIELDS),
]
PropertyName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROPERTY_NAME_LENGTH)]
FilterValues = Annotated[
    list[Annotated[str, StringConstraints(max_length=MAX_FILTER_VALUE_LENGTH)]],
    Field(min_length=1, max_length=MAX_FILTER_VALUES),
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _numbers_a_store_can_hold(self):
        # Decimal fields also take numeric strings ("1e400"), which read_body's walk never sees as
        # numbers; a rate or threshold no DynamoDB number can hold once broke every draft on its card.
        for name in type(self).model_fields:
            problem = first_unstorable(getattr(self, name), name)
            if problem is not None:  # InvalidInput passes through pydantic, naming the field
                raise InvalidInput(*problem)
        return self


def read_body(event: Any) -> Any:
    """The JSON body of an API Gateway v2 event; gzip and base64 bodies are unpacked, numbers stay exact."""
    return read_sized_body(event)[0]


def read_sized_body(event: Any) -> tuple[Any, int]:
    """read_body's document, and how many bytes it took unpacked."""
    raw = event.body or ""
    data = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    if (event.headers.get("content-encoding") or "").lower() == "gzip" or data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
                data = unzipped.read(MAX_BODY_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt deflate stream
            raise InvalidInput("body", "is not valid gzip") from exc
    if len(data) > MAX_BODY_BYTES:
        raise InvalidInput("body", f"must be at most {MAX_BODY_BYTES} bytes")
    if not data.strip():
        raise InvalidInput("body", "must be a JSON document")
    try:
        document = exact_json.loads(data)
    except RecursionError as exc:  # JSON nested thousands deep
        raise InvalidInput("body", "is nested too deeply") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidInput("body", f"is not valid JSON: {exc}") from exc
    problem = first_unstorable(document, text=SURROGATE_ESCAPE.search(data) is not None)
    if problem is not None:
        raise InvalidInput(*problem)
    return document, len(data)


class ProrationRoundingIn(Request):
    """Metronome's proration rounding (a subscription's `proration.rounding`, a recurring commit's
    `proration_rounding.access` and `.invoice`): decimal places of the credit type's unit."""

    decimal_places: Decimal
    rounding_method: Literal["HALF_UP", "FLOOR", "CEILING"]

    def to_document(self, path: str) -> dict:
        places = self.decimal_places
        if not places.is_finite() or places != places.to_integral_value() or not (
            MIN_DECIMAL_PLACES <= places <= MAX_DECIMAL_PLACES
        ):
            raise InvalidInput(
                f"{path}.decimal_places", f"must be a whole number from {MIN_DECIMAL_PLACES} to {MAX_DECIMAL_PLACES}"
            )
        return {"decimal_places": Decimal(int(places)), "rounding_method": self.rounding_method}


def parse_instant(field: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from exc


# -- customers ---------------------------------------------------------------------------------
class CustomerCreate(Request):
    model_config = ConfigDict(extra="ignore")  # billing provider configuration is accepted, not used

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    ingest_aliases: list[str] = Field(default_factory=list)
    external_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    custom_fields: CustomFields = Field(default_factory=dict)


class SetIngestAliases(Request):
    ingest_aliases: list[str]


class CustomerSetName(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class CustomerUpdateConfig(Request):
    salesforce_account_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    leave_stripe_invoices_in_draft: bool | None = None  # accepted; Tally does not send invoices to Stripe
    ingest_aliases: list[str] | None = None  # Tally extension (extra_body): replaces the aliases


class CustomerArchive(Request):
    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


class CustomerPreviewEvents(Request):
    # Each event is checked by ingest's own rules (tally.billing.events), so the 400s are ingest's.
    events: list[dict[str, Any]]
    mode: Literal["replace", "merge"] = "replace"
    skip_zero_qty_line_items: bool = False


def daily_cost_json(day) -> dict:
    """One day of /v1/customers/{id}/costs (services/customer_costs.DailyCost)."""
    credit_types = {}
    for credit_type_id, cost in day.credit_types.items():
        lines = []
        for (name, group_key, group_value), amount in cost.lines.items():
            line = {"name": name, "cost": amount}
            if group_key is not None:
                line |= {"group_key": group_key, "group_value": group_value}
            lines.append(line)
        credit_types[credit_type_id] = {"name": cost.credit_type.name, "cost": cost.cost, "line_item_breakdown": lines}
    return {
        "start_timestamp": format_rfc3339(day.starting_at),
        "end_timestamp": format_rfc3339(day.ending_before),
        "credit_types": credit_types,
    }


def customer_json(c: Customer) -> dict:
    return {
        "id": c.id,
        "external_id": c.external_id or c.id,
        "ingest_aliases": list(c.ingest_aliases),
        "name": c.name,
        "custom_fields": c.custom_fields,
    }


def customer_detail_json(c: Customer) -> dict:
    detail = customer_json(c) | {
        "customer_config": {"salesforce_account_id": c.salesforce_account_id} if c.salesforce_account_id else {},
        "created_at": format_rfc3339(c.created_at),
        "updated_at": format_rfc3339(c.updated_at or c.created_at),
        "current_billable_status": {"value": "billable"},
    }
    if c.archived_at:
        detail["archived_at"] = format_rfc3339(c.archived_at)
        detail["current_billable_status"] = {"value": "unbillable", "effective_at": format_rfc3339(c.archived_at)}
    return detail


# -- billable metrics --------------------------------------------------------------------------
class EventTypeFilterIn(Request):
    in_values: FilterValues | None = None
    not_in_values: FilterValues | None = None


class PropertyFilterIn(Request):
    name: PropertyName
    exists: bool | None = None
    in_values: FilterValues | None = None
    not_in_values: FilterValues | None = None


class MetricCreate(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    aggregation_type: Literal["COUNT", "SUM", "MAX", "UNIQUE", "LATEST"] = "COUNT"
    aggregation_key: PropertyName | None = None
    event_type_filter: EventTypeFilterIn | None = None
    property_filters: list[PropertyFilterIn] = Field(default_factory=list, max_length=MAX_FILTERS_PER_METRIC)
    group_keys: list[list[PropertyName]] = Field(default_factory=list)
    custom_fields: CustomFields = Field(default_factory=dict)
    sql: str | None = None

    @field_validator("group_keys")
    @classmethod
    def _group_properties_fit_a_counter_key(cls, group_keys: list[list[str]]) -> list[list[str]]:
        # Counters are keyed by the values of every property any group key names (its sort key
        # holds them all); 210 of them once made every aggregator batch fail, for every metric.
        properties = {name for compound in group_keys for name in compound}
        if len(properties) > MAX_GROUP_PROPERTIES:
            raise ValueError(f"must name at most {MAX_GROUP_PROPERTIES} distinct properties, got {len(properties):,}")
        if len(group_keys) > MAX_GROUP_PROPERTIES:
            raise ValueError(f"must hold at most {MAX_GROUP_PROPERTIES} keys, got {len(group_keys):,}")
        return group_keys

    def to_domain(self) -> BillableMetric:
        if self.sql is not None:
            raise InvalidInput("sql", "SQL billable metrics are not supported; use aggregation_type and filters")
        etf = self.event_type_filter
        return BillableMetric(
            id="",
            name=self.name,
            aggregation_type=Aggregation(self.aggregation_type),
            aggregation_key=self.aggregation_key,
            event_type_filter=None
            if etf is None
            else EventTypeFilter(
                tuple(etf.in_values) if etf.in_values else None,
                tuple(etf.not_in_values) if etf.not_in_values else None,
            ),
            property_filters=tuple(
                PropertyFilter(
                    f.name,
                    f.exists,
                    tuple(f.in_values) if f.in_values else None,
                    tuple(f.not_in_values) if f.not_in_values else None,
                )
                for f in self.property_filters
            ),
            group_keys=tuple(tuple(k) for k in self.group_keys),
            custom_fields=self.custom_fields,
        )


class MetricUpdate(Request):
    """PUT /v1/billable-metrics/{id}: Metronome changes the name only; what the metric counts is
    fixed at creation (a change would disagree with the counters already kept), and custom field
    values have their own routes (/v1/customFields/setValues)."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    aggregation_type: Any = None
    aggregation_key: Any = None
    event_type_filter: Any = None
    property_filters: Any = None
    group_keys: Any = None
    sql: Any = None
    custom_fields: Any = None

    @model_validator(mode="after")
    def _only_the_name_changes(self):
        for name in self.model_fields_set - {"name"}:
            if name == "custom_fields":
                raise InvalidInput(name, "cannot be set here: use /v1/customFields/setValues with entity billable_metric")
            raise InvalidInput(name, "cannot be changed after the billable metric is created (Metronome refuses it): create a new metric")
        return self


class MetricArchive(Request):
    id: str = Field(min_length=1)


def metric_json(m: BillableMetric, backfill: Any = None) -> dict:
    """`backfill`: the metric's BackfillView (services/backfill.py), shown as two fields beyond
    Metronome's, `backfill_status` and `backfill_progress` (its responses allow extra fields)."""
    body: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "aggregation_type": m.aggregation_type.value,
        "property_filters": [
            {
                k: v
                for k, v in {
                    "name": f.name,
                    "exists": f.exists,
                    "in_values": list(f.in_values) if f.in_values else None,
                    "not_in_values": list(f.not_in_values) if f.not_in_values else None,
                }.items()
                if v is not None
            }
            for f in m.property_filters
        ],
        "group_keys": [list(k) for k in m.group_keys],
        "custom_fields": m.custom_fields,
    }
    if m.aggregation_key:
        body["aggregation_key"] = m.aggregation_key
    if m.event_type_filter:
        body["event_type_filter"] = {
            k: list(v)
            for k, v in {
                "in_values": m.event_type_filter.in_values,
                "not_in_values": m.event_type_filter.not_in_values,
            }.items()
            if v
        }
    if m.archived_at:
        body["archived_at"] = format_rfc3339(m.archived_at)
    if backfill is not None:
        body["backfill_status"] = backfill.status.value
        body["backfill_progress"] = {
            "segments": backfill.segments,
            "segments_done": backfill.segments_done,
            "events_scanned": backfill.events_scanned,
            "events_counted": backfill.events_counted,
            **({"starts_after": format_rfc3339(backfill.start_after)} if backfill.start_after else {}),
            **({"completed_at": format_rfc3339(backfill.completed_at)} if backfill.completed_at else {}),
        }
    return body


# -- usage -------------------------------------------------------------------------------------
class GroupByIn(Request):
    key: str = Field(min_length=1)
    values: list[str] | None = Field(default=None, max_length=200)


class UsageMetricIn(Request):
    id: str = Field(min_length=1)
    group_by: GroupByIn | None = None


class UsageList(Request):
    starting_on: str
    ending_before: str
    window_size: Literal["HOUR", "DAY", "NONE", "hour", "day", "none"]
    customer_ids: list[str] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)
    billable_metrics: list[UsageMetricIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)


class UsageGroups(Request):
    billable_metric_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    window_size: Literal["HOUR", "DAY", "NONE", "hour", "day", "none"]
    starting_on: str | None = None
    ending_before: str | None = None
    current_period: bool | None = None
    group_by: GroupByIn | None = None
    group_key: list[str] | None = None
    group_filters: dict[str, list[str]] | None = None


class EventsSearch(Request):
    transactionIds: list[str]
