"""Threshold billing and auto-recharge (Metronome's `spend_threshold_configuration` and
`prepaid_balance_threshold_configuration`): when a contract has crossed its threshold, and what
the crossing buys.

- Spend threshold: the contract's uncollected spend, the total of its current period's USAGE
  draft (after commits and credits), reaches `threshold_amount`. The crossing is a PREPAID commit of
  `threshold_amount` over that period, invoiced at once (SCHEDULED invoice at the crossing): the
  usage already incurred draws it down, so the period's usage invoice goes down by what was
  collected early. "Each time the contract's usage hits this amount" is each time the uncollected
  spend gets back to it.
- Prepaid balance threshold (auto-recharge): the contract's balance (the remaining amount of the
  prepaid commits and credits in effect for it, contract- and customer-level, less those a
  `threshold_balance_specifiers` exclusion names) has come down to `threshold_amount`. The crossing
  is a PREPAID commit of `recharge_to_amount - balance`, from the crossing's hour for `duration`
  (one year by default), invoiced at once.
- The invoice is `discount_configuration.payment_fraction` of the commit, rounded once. With a
  `cap`, the discount applies while the named spend tracker's spend in the current billing period
  is below `cap.amount` (billing/spend_trackers.py); from then on the crossing is invoiced in full.

Crossings are numbered per (contract, kind) from 1; `decide` names the next one. The payment gate
says when the commit counts:
- NONE: at once;
- EXTERNAL: once the payment is reported paid (POST /v1/contracts/commits/threshold-billing/release).
  Until then no further crossing of that kind is decided; reported failed, the commit never counts
  and the configuration stays off (Metronome sets `is_enabled` false) until an edit updates it.
- STRIPE: as EXTERNAL, but Tally itself collects the payment through the customer's Stripe billing
  configuration (services/threshold_payments.py): a PaymentIntent on the customer's default payment
  method, or a Stripe invoice charged automatically (`stripe_config.payment_type`, INVOICE by
  default as the SDK says), and settles the crossing with the outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.messages import envelope
from tally.billing.pricing.money import CreditType
from tally.billing.pricing.periods import Frequency, grid_point
from tally.billing.pricing.validation import as_decimal
from tally.billing.spend_trackers import discount_applies
from tally.billing.time import format_rfc3339

# Metronome's documented default: "Defaults to 100 if not specified."
DEFAULT_PRIORITY = Decimal(100)
MAX_DURATION = {"DAYS": 36_500, "WEEKS": 5_200, "MONTHS": 1_200, "YEARS": 100}
THRESHOLD_NAMESPACE = uuid.UUID("0b7d3c55-31a4-4b8e-9c39-5d0f6f1e8a27")


class ThresholdKind(str, Enum):
    """The contract field each configuration is stored (and answered) under."""

    SPEND = "spend_threshold_configuration"
    PREPAID_BALANCE = "prepaid_balance_threshold_configuration"

    @property
    def workflow_type(self) -> str:
        """`workflow_type` of the payment_gate.* messages."""
        return "spend" if self is ThresholdKind.SPEND else "prepaid_balance"

    @property
    def falling(self) -> bool:
        return self is ThresholdKind.PREPAID_BALANCE


class PaymentGate(str, Enum):
    NONE = "NONE"
    EXTERNAL = "EXTERNAL"
    STRIPE = "STRIPE"


class StripePaymentType(str, Enum):
    """`payment_gate_config.stripe_config.payment_type` ("If left blank, will default to INVOICE")."""

    INVOICE = "INVOICE"
    PAYMENT_INTENT = "PAYMENT_INTENT"


class ChargeStatus(str, Enum):
    GRANTED = "GRANTED"  # no payment gate: the commit counts from the crossing
    PENDING_PAYMENT = "PENDING_PAYMENT"  # EXTERNAL gate: waiting for the release
    PAID = "PAID"
    FAILED = "FAILED"

    @property
    def released(self) -> bool:
        """The commit counts (burns down, is invoiced)."""
        return self in (ChargeStatus.GRANTED, ChargeStatus.PAID)


class PaymentOutcome(str, Enum):
    PAID = "paid"
    FAILED = "failed"


ENTITIES = {"Commit": (False,), "ContractCredit": (True,), "ContractCreditOrCommit": (False, True)}


@dataclass(frozen=True, slots=True)
class ExcludeFilter:
    """One `custom_field_filters` list: a balance matching every (entity, key, value) of it is left
    out of the balance an auto-recharge watches. `entity` says which balances a condition can
    match: commits, credits, or both."""

    conditions: tuple[tuple[str, str, str], ...]

    def excludes(self, is_credit: bool, custom_fields: Mapping[str, str]) -> bool:
        return bool(self.conditions) and all(
            is_credit in ENTITIES[entity] and custom_fields.get(key) == value for entity, key, value in self.conditions
        )


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    kind: ThresholdKind
    revision: str  # changes on every add and update: a failed payment disables one revision
    is_enabled: bool
    threshold_amount: Decimal
    payment_gate: PaymentGate
    commit: Mapping[str, Any]  # the stored `commit` (product_id, name, priority, filters, duration)
    payment_fraction: Decimal | None = None
    recharge_to_amount: Decimal | None = None  # prepaid balance only
    excluded: tuple[ExcludeFilter, ...] = ()
    cap_amount: Decimal | None = None  # the discount's cap, measured by the tracker `cap_alias`
    cap_alias: str | None = None

    @staticmethod
    def of(kind: ThresholdKind, doc: Mapping[str, Any]) -> ThresholdConfig:
        """The configuration stored under `kind` in a contract document."""
        discount = doc.get("discount_configuration") or {}
        cap = discount.get("cap") or {}
        return ThresholdConfig(
            kind=kind,
            revision=doc.get("revision") or "",
            is_enabled=bool(doc["is_enabled"]),
            threshold_amount=Decimal(doc["threshold_amount"]),
            payment_gate=PaymentGate(doc["payment_gate_config"]["payment_gate_type"]),
            commit=doc["commit"],
            payment_fraction=None if discount.get("payment_fraction") is None else Decimal(discount["payment_fraction"]),
            recharge_to_amount=None if doc.get("recharge_to_amount") is None else Decimal(doc["recharge_to_amount"]),
            excluded=tuple(
                ExcludeFilter(tuple((c["entity"], c["key"], c["value"]) for c in exclude.get("custom_field_filters") or ()))
                for specifier in doc.get("threshold_balance_specifiers") or ()
                for exclude in specifier.get("exclude") or ()
            ),
            cap_amount=None if cap.get("amount") is None else Decimal(cap["amount"]),
            cap_alias=cap.get("spend_tracker_alias"),
        )

    def excludes(self, is_credit: bool, custom_fields: Mapping[str, str]) -> bool:
        """Is a balance left out of the one an auto-recharge watches? (Metronome: any exclusion
        whose conditions it all meets.)"""
        return any(f.excludes(is_credit, custom_fields) for f in self.excluded)


def validate_config(kind: ThresholdKind, doc: Mapping[str, Any], path: str) -> None:
    """The rules a stored configuration keeps (after an add, or an update merged in). `path`: the
    request field it came from, e.g. `spend_threshold_configuration`."""
    threshold = as_decimal(doc.get("threshold_amount"), f"{path}.threshold_amount")
    if not threshold > 0:
        raise InvalidInput(f"{path}.threshold_amount", "must be more than 0")
    if kind is ThresholdKind.PREPAID_BALANCE:
        recharge_to = as_decimal(doc.get("recharge_to_amount"), f"{path}.recharge_to_amount")
        if not recharge_to > threshold:
            raise InvalidInput(f"{path}.recharge_to_amount", f"must be more than threshold_amount ({threshold})")
    elif doc.get("recharge_to_amount") is not None:
        raise InvalidInput(f"{path}.recharge_to_amount", "is only for prepaid_balance_threshold_configuration")
    fraction = (doc.get("discount_configuration") or {}).get("payment_fraction")
    if fraction is not None and not 0 <= as_decimal(fraction, f"{path}.discount_configuration.payment_fraction") <= 1:
        raise InvalidInput(f"{path}.discount_configuration.payment_fraction", "must be between 0 and 1")
    cap = (doc.get("discount_configuration") or {}).get("cap")
    if cap is not None:
        if fraction is None:
            raise InvalidInput(f"{path}.discount_configuration.payment_fraction", "is required with a cap")
        if not as_decimal(cap.get("amount"), f"{path}.discount_configuration.cap.amount") > 0:
            raise InvalidInput(f"{path}.discount_configuration.cap.amount", "must be more than 0")
        if not cap.get("spend_tracker_alias"):
            raise InvalidInput(f"{path}.discount_configuration.cap.spend_tracker_alias", "must name a spend tracker of the contract")
    commit = doc.get("commit") or {}
    rollover = commit.get("rollover_fraction")
    if rollover is not None and not 0 <= as_decimal(rollover, f"{path}.commit.rollover_fraction") <= 1:
        raise InvalidInput(f"{path}.commit.rollover_fraction", "must be between 0 and 1")
    if commit.get("priority") is not None:
        as_decimal(commit["priority"], f"{path}.commit.priority")
    if commit.get("specifiers") and (commit.get("applicable_product_ids") or commit.get("applicable_product_tags")):
        raise InvalidInput(f"{path}.commit.specifiers", "cannot be used with applicable_product_ids or applicable_product_tags")
    duration = commit.get("duration")
    if duration is not None:
        unit, value = duration.get("unit"), duration.get("value")
        if unit not in MAX_DURATION:
            raise InvalidInput(f"{path}.commit.duration.unit", "must be DAYS, WEEKS, MONTHS or YEARS")
        if not isinstance(value, (int, Decimal)) or isinstance(value, bool) or value != int(value) or not 1 <= value <= MAX_DURATION[unit]:
            raise InvalidInput(f"{path}.commit.duration.value", f"must be a whole number from 1 to {MAX_DURATION[unit]:,}")


@dataclass(frozen=True, slots=True)
class ChargeState:
    """What is known of one crossing already claimed (a stored charge)."""

    crossing: int
    status: ChargeStatus
    revision: str


@dataclass(frozen=True, slots=True)
class Crossing:
    """The next crossing: its number, what it grants and what is invoiced for it."""

    number: int
    value: Decimal  # the spend or balance that crossed
    access_amount: Decimal
    invoice_amount: Decimal
    discounted: bool = False  # invoiced at the discount's payment_fraction (below 1)


def decide(
    config: ThresholdConfig, charges: Sequence[ChargeState], value: Decimal | None, fiat: CreditType,
    tracked_spend: Decimal = Decimal(0),
) -> Crossing | None:
    """The crossing `value` (uncollected spend, or balance) makes now, given the crossings claimed so
    far (oldest first); None: nothing to do. `tracked_spend`: the spend of the tracker the discount's
    cap names, in the current billing period (ignored without a cap)."""
    if not config.is_enabled or value is None:
        return None
    last = charges[-1] if charges else None
    if last is not None and last.status is ChargeStatus.PENDING_PAYMENT:
        return None  # one payment at a time: the next crossing waits for this one's outcome
    if last is not None and last.status is ChargeStatus.FAILED and last.revision == config.revision:
        return None  # off after a failed payment, until an edit updates the configuration
    if config.kind is ThresholdKind.SPEND:
        if value < config.threshold_amount:
            return None
        access = config.threshold_amount
    else:
        if value > config.threshold_amount:
            return None
        assert config.recharge_to_amount is not None
        access = config.recharge_to_amount - value
    fraction = config.payment_fraction
    if fraction is None or not discount_applies(config.cap_amount, tracked_spend):
        fraction = Decimal(1)
    return Crossing((last.crossing if last else 0) + 1, value, access, fiat.round(access * fraction), fraction < 1)


def workflow_id(contract_id: str, kind: ThresholdKind, crossing: int) -> str:
    """Stable per (contract, kind, crossing): the claim's key, the commit's and the messages' ids
    derive from it, so whoever claims a crossing writes and sends the same."""
    return str(uuid.uuid5(THRESHOLD_NAMESPACE, f"{contract_id}|{kind.value}|{crossing}"))


def derived_id(workflow: str, part: str) -> str:
    return str(uuid.uuid5(THRESHOLD_NAMESPACE, f"{workflow}|{part}"))


def recharge_window(config: ThresholdConfig, hour: datetime) -> tuple[datetime, datetime]:
    """Where an auto-recharge commit gives access: from the crossing's hour, for its duration."""
    duration = config.commit.get("duration") or {"unit": "YEARS", "value": 1}
    value, unit = int(duration["value"]), duration["unit"]
    if unit == "DAYS":
        return hour, hour + timedelta(days=value)
    if unit == "WEEKS":
        return hour, hour + timedelta(weeks=value)
    return hour, grid_point(hour, Frequency.MONTHLY if unit == "MONTHS" else Frequency.ANNUAL, value)


# -- messages (Metronome's payment_gate.* webhooks) -------------------------------------------------
THRESHOLD_REACHED = "payment_gate.threshold_reached"
EXTERNAL_INITIATE = "payment_gate.external_initiate"
PAYMENT_STATUS = "payment_gate.payment_status"


def _envelope(type_: str, workflow: str, properties: dict) -> dict:
    # One message of each type per crossing: a republish carries the same id.
    return envelope(f"{type_}:{workflow}", type_, properties)


def threshold_reached(kind: ThresholdKind, workflow: str, customer_id: str, contract_id: str, crossing: Crossing,
                      threshold: Decimal, at: datetime, gate: PaymentGate | None = None) -> dict:
    properties = {
        "workflow_type": kind.workflow_type,
        "workflow_id": workflow,
        "customer_id": customer_id,
        "contract_id": contract_id,
        "timestamp": format_rfc3339(at),
        "threshold_amount": threshold,
        "value": crossing.value,
        "crossing": crossing.number,
    }
    if gate is PaymentGate.STRIPE:
        # The delivery queue subscribes to these (message attribute payment_gate_type): it charges.
        properties["payment_gate_type"] = gate.value
    return _envelope(THRESHOLD_REACHED, workflow, properties)


def external_initiate(kind: ThresholdKind, workflow: str, customer_id: str, contract_id: str, invoice_id: str,
                      invoice_total: Decimal, currency: str) -> dict:
    return _envelope(EXTERNAL_INITIATE, workflow, {
        "workflow_type": kind.workflow_type,
        "workflow_id": workflow,
        "customer_id": customer_id,
        "contract_id": contract_id,
        "invoice_id": invoice_id,
        "invoice_total": invoice_total,
        "invoice_currency": currency,
    })


def payment_status(kind: ThresholdKind, workflow: str, customer_id: str, contract_id: str, invoice_id: str,
                   outcome: PaymentOutcome, at: datetime, detail: Mapping[str, Any] | None = None) -> dict:
    """`detail`: what the STRIPE gate adds (billing_provider, the Stripe object's id, the error)."""
    return _envelope(PAYMENT_STATUS, workflow, dict(detail or {}) | {
        "workflow_type": kind.workflow_type,
        "workflow_id": workflow,
        "customer_id": customer_id,
        "contract_id": contract_id,
        "invoice_id": invoice_id,
        "payment_status": outcome.value,
        "timestamp": format_rfc3339(at),
    })


def message_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    """SNS attributes for filter policies, as alerts have theirs: type, customer_id, contract_id,
    workflow_type."""
    properties = message["properties"]
    attributes = {
        "type": message["type"],
        "customer_id": properties["customer_id"],
        "contract_id": properties["contract_id"],
        "workflow_type": properties["workflow_type"],
    }
    if properties.get("payment_gate_type"):
        attributes["payment_gate_type"] = properties["payment_gate_type"]
    return attributes
