"""Alerts (Metronome's threshold notifications): what is watched, when it has crossed, and the
message a crossing publishes.

An alert watches one value per customer:
- rising values fire at `value >= threshold`: usage of a billable metric, spend, invoice totals;
- falling values fire at `value <= threshold`: the remaining balance of credits and/or commits.

Per (alert, customer) the state is `ok` or `in_alarm`. `ok → in_alarm` is a *crossing*: it is
numbered (1, 2, ...) and published once, with the id `<alert id>:<customer id>:<crossing>`.
An alarm re-arms (`in_alarm → ok`) when the value comes back (a new billing period for usage and
spend, a top-up for balances) or on an explicit reset.

Pure code: the service reads the state and the value and applies `decide` with a conditional write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from tally.billing.errors import InvalidInput
from tally.billing.messages import envelope
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.time import format_rfc3339


class AlertType(str, Enum):
    USAGE_THRESHOLD_REACHED = "usage_threshold_reached"
    SPEND_THRESHOLD_REACHED = "spend_threshold_reached"
    MONTHLY_INVOICE_TOTAL_SPEND_THRESHOLD_REACHED = "monthly_invoice_total_spend_threshold_reached"
    INVOICE_TOTAL_REACHED = "invoice_total_reached"
    LOW_CREDIT_BALANCE_REACHED = "low_credit_balance_reached"
    LOW_REMAINING_COMMIT_BALANCE_REACHED = "low_remaining_commit_balance_reached"
    LOW_REMAINING_CONTRACT_CREDIT_AND_COMMIT_BALANCE_REACHED = (
        "low_remaining_contract_credit_and_commit_balance_reached"
    )

    @property
    def falling(self) -> bool:
        """True for balances: they alarm when they drop to the threshold."""
        return self in LOW_BALANCE_TYPES

    @property
    def per_period(self) -> bool:
        """True when the value restarts each billing period (so does the alarm)."""
        return not self.falling

    @property
    def message_type(self) -> str:
        """SNS message `type` of a crossing: Metronome's webhook names, `alerts.<alert type>`."""
        return f"alerts.{self.value}"


LOW_BALANCE_TYPES = frozenset(
    {
        AlertType.LOW_CREDIT_BALANCE_REACHED,
        AlertType.LOW_REMAINING_COMMIT_BALANCE_REACHED,
        AlertType.LOW_REMAINING_CONTRACT_CREDIT_AND_COMMIT_BALANCE_REACHED,
    }
)
# Metronome types we do not evaluate yet: creating one is a 400 naming alert_type, never a
# silently dead alert.
UNSUPPORTED_TYPES = frozenset(
    {
        "low_remaining_days_in_plan_reached",
        "low_remaining_credit_percentage_reached",
        "low_remaining_days_for_commit_segment_reached",
        "low_remaining_commit_percentage_reached",
        "low_remaining_days_for_contract_credit_segment_reached",
        "low_remaining_contract_credit_balance_reached",
        "low_remaining_contract_credit_percentage_reached",
        "low_remaining_contract_credit_and_commit_percentage_reached",
        "low_remaining_seat_balance_reached",
    }
)
INVOICE_TYPES = ("USAGE", "SCHEDULED")


class AlertStatus(str, Enum):
    ENABLED = "enabled"
    ARCHIVED = "archived"


class CustomerStatus(str, Enum):
    OK = "ok"
    IN_ALARM = "in_alarm"


@dataclass(frozen=True, slots=True)
class GroupValue:
    key: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class CustomFieldFilter:
    """A condition on the custom fields of the balances a balance alert watches: of the grant
    (Commit, ContractCredit, ContractCreditOrCommit: which grants it can match) or of its contract."""

    entity: str  # one of FILTER_ENTITIES
    key: str
    value: str

    def holds(self, is_credit: bool, grant_fields: Mapping[str, str], contract_fields: Mapping[str, str]) -> bool:
        if self.entity == "Contract":
            return contract_fields.get(self.key) == self.value
        if (self.entity == "Commit" and is_credit) or (self.entity == "ContractCredit" and not is_credit):
            return False
        return grant_fields.get(self.key) == self.value


FILTER_ENTITIES = ("Contract", "Commit", "ContractCredit", "ContractCreditOrCommit")


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    name: str
    type: AlertType
    threshold: Decimal
    credit_type_id: str  # the unit of spend and balance thresholds (USD cents by default)
    created_at: datetime
    customer_id: str | None = None  # None: every customer
    billable_metric_id: str | None = None
    group_values: tuple[GroupValue, ...] = ()
    invoice_types_filter: tuple[str, ...] = ()
    uniqueness_key: str | None = None
    status: AlertStatus = AlertStatus.ENABLED
    updated_at: datetime | None = None
    # balance alerts: a balance counts only if every filter holds for it
    custom_field_filters: tuple[CustomFieldFilter, ...] = ()
    custom_fields: Mapping[str, str] = field(default_factory=dict)  # /v1/customFields values

    def applies_to(self, customer_id: str) -> bool:
        return self.status is AlertStatus.ENABLED and self.customer_id in (None, customer_id)


def crossed(alert: Alert, value: Decimal) -> bool:
    """Has `value` reached the alert's threshold? Rising values at or above it, balances at or below."""
    return value <= alert.threshold if alert.type.falling else value >= alert.threshold


# -- validation ----------------------------------------------------------------------------------
def _threshold(raw: Any, metric: BillableMetric | None) -> Decimal:
    # bool is an int in Python; a JSON true is not a threshold.
    if isinstance(raw, bool) or not isinstance(raw, (int, Decimal)):
        raise InvalidInput("threshold", "must be a number")
    value = Decimal(raw)
    if not value.is_finite():
        raise InvalidInput("threshold", "must be a finite number")
    if value < 0:
        raise InvalidInput("threshold", "must not be negative")
    whole_counts = (Aggregation.COUNT, Aggregation.UNIQUE)
    if metric is not None and metric.aggregation_type in whole_counts and value != value.to_integral_value():
        raise InvalidInput(
            "threshold",
            f"must be a whole number: a {metric.aggregation_type.value} metric counts whole "
            f"{'events' if metric.aggregation_type is Aggregation.COUNT else 'values'}",
        )
    return value


def new_alert(
    *,
    id: str,  # noqa: A002 - the API's name
    name: str,
    alert_type: str,
    threshold: Any,
    created_at: datetime,
    credit_type_id: str,
    credit_type_known: bool,
    customer_id: str | None = None,
    billable_metric_id: str | None = None,
    metric: BillableMetric | None = None,
    group_values: tuple[GroupValue, ...] = (),
    invoice_types_filter: tuple[str, ...] = (),
    uniqueness_key: str | None = None,
    custom_field_filters: tuple[CustomFieldFilter, ...] = (),
) -> Alert:
    """A validated alert. `metric` is the billable metric `billable_metric_id` names (None if it
    names none); `credit_type_known` says whether `credit_type_id` is a pricing unit."""
    if alert_type in UNSUPPORTED_TYPES:
        raise InvalidInput("alert_type", f"{alert_type} is not supported yet")
    try:
        kind = AlertType(alert_type)
    except ValueError as exc:
        raise InvalidInput("alert_type", f"must be one of {[t.value for t in AlertType]}") from exc
    if not name or not name.strip():
        raise InvalidInput("name", "must be a non-empty string")
    if kind is AlertType.USAGE_THRESHOLD_REACHED:
        if not billable_metric_id:
            raise InvalidInput("billable_metric_id", "is required for usage_threshold_reached")
        if metric is None or metric.archived_at is not None:
            raise InvalidInput("billable_metric_id", f"{billable_metric_id} is not a billable metric")
        for index, group in enumerate(group_values):
            if group.key not in metric.dimensions:
                raise InvalidInput(
                    f"group_values[{index}].key", f"must be one of the metric's group keys {list(metric.dimensions)}"
                )
        if len({g.key for g in group_values}) != len(group_values):
            raise InvalidInput("group_values", "names a group key twice")
    else:
        if billable_metric_id is not None:
            raise InvalidInput("billable_metric_id", "is only for usage_threshold_reached alerts")
        if group_values:
            raise InvalidInput("group_values", "is only supported for usage_threshold_reached alerts")
    if not credit_type_known:
        raise InvalidInput("credit_type_id", f"{credit_type_id} is not a pricing unit")
    if invoice_types_filter:
        if kind is not AlertType.INVOICE_TOTAL_REACHED:
            raise InvalidInput("invoice_types_filter", "is only for invoice_total_reached alerts")
        for index, invoice_type in enumerate(invoice_types_filter):
            if invoice_type not in INVOICE_TYPES:
                raise InvalidInput(f"invoice_types_filter[{index}]", f"must be one of {list(INVOICE_TYPES)}")
    if custom_field_filters and kind not in LOW_BALANCE_TYPES:
        raise InvalidInput("custom_field_filters", "is only for commit and credit balance alerts (low_*_balance_reached)")
    for index, condition in enumerate(custom_field_filters):
        if condition.entity not in FILTER_ENTITIES:
            raise InvalidInput(f"custom_field_filters[{index}].entity", f"must be one of {list(FILTER_ENTITIES)}")
    return Alert(
        id=id,
        name=name,
        type=kind,
        threshold=_threshold(threshold, metric if kind is AlertType.USAGE_THRESHOLD_REACHED else None),
        credit_type_id=credit_type_id,
        created_at=created_at,
        customer_id=customer_id,
        billable_metric_id=billable_metric_id,
        group_values=tuple(group_values),
        invoice_types_filter=tuple(invoice_types_filter),
        uniqueness_key=uniqueness_key,
        updated_at=created_at,
        custom_field_filters=tuple(custom_field_filters),
    )


# -- state and decisions -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertState:
    """One (alert, customer) pair as stored. `version` orders every change (compare-and-set);
    `pending` is the envelope of a crossing claimed but not yet known to be published."""

    alert_id: str
    customer_id: str
    status: CustomerStatus = CustomerStatus.OK
    version: int = 0  # 0: never stored
    crossings: int = 0
    window: str | None = None  # the billing period of the crossing (per-period types)
    value: Decimal | None = None
    triggered_at: datetime | None = None
    updated_at: datetime | None = None
    pending: Mapping[str, Any] | None = None
    lease_until: datetime | None = None


class Decision(str, Enum):
    STAY = "stay"
    FIRE = "fire"  # ok → in_alarm: a new crossing, published once
    REARM = "rearm"  # in_alarm → ok: silent


@dataclass(frozen=True, slots=True)
class Reading:
    """The watched value now. `value` None: nothing to watch (no balance of that kind, no
    contract): the state stays as it is. `window` names the billing period the value belongs to."""

    value: Decimal | None
    window: str | None = None
    window_end: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def decide(alert: Alert, state: AlertState, reading: Reading) -> Decision:
    if reading.value is None:
        return Decision.STAY
    new_period = alert.type.per_period and state.window is not None and reading.window != state.window
    if crossed(alert, reading.value):
        if state.status is CustomerStatus.OK or new_period:
            return Decision.FIRE
        return Decision.STAY
    return Decision.REARM if state.status is CustomerStatus.IN_ALARM else Decision.STAY


def message_id(alert_id: str, customer_id: str, crossing: int) -> str:
    """Stable per crossing: a republish after a crash carries the same id (consumers dedupe on it)."""
    return f"{alert_id}:{customer_id}:{crossing}"


def crossing_message(alert: Alert, customer_id: str, crossing: int, reading: Reading, at: datetime) -> dict[str, Any]:
    """The envelope published for crossing number `crossing` of `alert` for `customer_id`."""
    properties: dict[str, Any] = {
        "alert_id": alert.id,
        "alert_name": alert.name,
        "alert_type": alert.type.value,
        "customer_id": customer_id,
        "threshold": alert.threshold,
        "value": reading.value,
        "crossing": crossing,
        "triggered_at": format_rfc3339(at),
    }
    if alert.type is AlertType.USAGE_THRESHOLD_REACHED:
        properties["billable_metric_id"] = alert.billable_metric_id
        properties["group_values"] = [{"key": g.key, "value": g.value} for g in alert.group_values]
    else:
        properties["credit_type_id"] = alert.credit_type_id
    if reading.window is not None:
        properties["period_starting_at"] = reading.window
    if reading.window_end is not None:
        properties["period_ending_before"] = format_rfc3339(reading.window_end)
    properties.update(reading.details)
    return envelope(message_id(alert.id, customer_id, crossing), alert.type.message_type, properties)


def message_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    """SNS message attributes for filter policies: type, customer_id, alert_type, alert_id."""
    properties = message["properties"]
    return {
        "type": message["type"],
        "customer_id": properties["customer_id"],
        "alert_type": properties["alert_type"],
        "alert_id": properties["alert_id"],
    }


def triggered_by(alert: Alert, state: AlertState) -> str | None:
    """Why the alert is in alarm, for customer-alerts get/list."""
    if state.status is not CustomerStatus.IN_ALARM or state.value is None:
        return None
    relation = "<=" if alert.type.falling else ">="
    return f"{alert.type.value}: value {state.value} {relation} threshold {alert.threshold}"
