"""Contracts and invoices on the Metronome-compatible API: request bodies, the normalized contract
document they become, and the JSON of contracts and draft invoices. Field names follow
`metronome-sdk` (types/v1/contract_create_params.py, types/shared/contract.py, override.py,
subscription.py, scheduled_charge.py). Invoices are in invoice_models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Mapping, Sequence

from pydantic import ConfigDict, Field, StringConstraints

from tally.api.billing_provider_models import ContractBillingProviderConfigurationIn
from tally.api.catalog_models import CREATED_BY, TierIn
from tally.api.balance_models import CommitIn, CreditIn, RecurringScheduleIn, credit_type_ref, grant_json
from tally.api.hierarchy_models import HierarchyConfigurationIn, hierarchy_json
from tally.api.models import MAX_NAME_LENGTH, CustomFields, ProrationRoundingIn, Request, parse_instant
from tally.api.recurring_models import RecurringCommitIn, RecurringCreditIn, recurring_grant_json
from tally.api.spend_tracker_models import (
    ContractCommitIn,
    ResellerRoyaltyIn,
    SpendTrackerIn,
    reseller_royalties_document,
    royalty_segment_json,
    spend_tracker_json,
    spend_trackers_document,
)
from tally.api.threshold_models import PrepaidBalanceThresholdConfigurationIn, SpendThresholdConfigurationIn
from tally.billing.balances.grants import AmountDistribution, RecurringFrequency, RecurringSchedule, expand_recurring_schedule
from tally.billing.errors import InvalidInput
from tally.billing.limits import (
    MAX_ID_LENGTH,
    MAX_IDS_PER_REQUEST,
    MAX_INITIAL_SEAT_IDS,
    MAX_PROPERTY_NAME_LENGTH,
    MAX_SCHEDULE_ITEMS,
    identifier_problem,
)
from tally.billing.pricing.seats import SeatSegment, seat_count
from tally.billing.pricing import USD_CENTS, Contract, CreditType, Period, Product, Subscription
from tally.billing.pricing.usage_filters import UsageFilter
from tally.billing.pricing.subscriptions import subscription_periods
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.billing.pricing.validation import hour_aligned
from tally.services.balances import GrantFigures, contract_grant_document
from tally.services.contract_billing_providers import contract_fields as billing_provider_fields
from tally.services.contracts import quantity_schedule
from tally.services.recurring_grants import made_grants
from tally.services.seat_balances import SeatWindow
from tally.services.spend_trackers import contract_commits
from tally.services.thresholds import KINDS as THRESHOLD_KINDS, threshold_config_json

Frequency = Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"]

# Metronome contract features Tally does not implement yet. A request using them is refused (400
# naming the field) rather than accepted and silently mis-billed; an empty list is fine.
UNSUPPORTED = (
    "revenue_system_configuration",
)


def _canonical(field: str, value: str | None) -> str | None:
    instant = parse_instant(field, value)
    return None if instant is None else format_rfc3339(instant)


def _required_time(field: str, value: str) -> str:
    result = _canonical(field, value)
    assert result is not None
    return result


def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


class OverwriteRateIn(Request):
    rate_type: Literal["FLAT", "PERCENTAGE", "SUBSCRIPTION", "TIERED", "TIERED_PERCENTAGE", "CUSTOM"]
    credit_type_id: str | None = None
    custom_rate: dict[str, Any] | None = None
    is_prorated: bool | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None
    tiers: list[TierIn] | None = None


class OverrideTierIn(Request):
    multiplier: Decimal
    size: Decimal | None = None


class OverrideSpecifierIn(Request):
    product_id: str | None = None
    product_tags: list[str] | None = None
    pricing_group_values: dict[str, str] | None = None
    presentation_group_values: dict[str, str] | None = None
    billing_frequency: Frequency | None = None
    commit_ids: list[str] | None = None
    recurring_commit_ids: list[str] | None = None
    any_commit_or_credit_ids: list[str] | None = None


class OverrideIn(Request):
    starting_at: str
    ending_before: str | None = None
    type: Literal["OVERWRITE", "MULTIPLIER", "TIERED"] | None = None
    product_id: str | None = None
    applicable_product_tags: list[str] | None = None
    override_specifiers: list[OverrideSpecifierIn] | None = None
    entitled: bool | None = None
    is_commit_specific: bool | None = None
    multiplier: Decimal | None = None
    overwrite_rate: OverwriteRateIn | None = None
    priority: Decimal | None = None
    target: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    tiers: list[OverrideTierIn] | None = None

    def to_document(self, path: str) -> dict:
        if self.target == "COMMIT_RATE" and not self.is_commit_specific:
            raise InvalidInput(f"{path}.target", "COMMIT_RATE is only valid for commit-specific overrides (is_commit_specific)")
        rate = self.overwrite_rate
        if rate is not None and rate.rate_type == "CUSTOM":
            raise InvalidInput(f"{path}.overwrite_rate.rate_type", "CUSTOM rates are not supported")
        specifiers = []
        for index, spec in enumerate(self.override_specifiers or ()):
            where = f"{path}.override_specifiers[{index}]"
            for name in ("commit_ids", "recurring_commit_ids", "any_commit_or_credit_ids"):
                if getattr(spec, name) is not None and not self.is_commit_specific:
                    raise InvalidInput(f"{where}.{name}", "can only be used for commit-specific overrides (is_commit_specific)")
            if spec.any_commit_or_credit_ids is not None and (spec.commit_ids is not None or spec.recurring_commit_ids is not None):
                raise InvalidInput(
                    f"{where}.any_commit_or_credit_ids", "must be used instead of commit_ids and recurring_commit_ids, not with them"
                )
            specifiers.append(
                _drop_none(
                    {
                        "product_id": spec.product_id,
                        "product_tags": spec.product_tags or [],
                        "pricing_group_values": spec.pricing_group_values,
                        "presentation_group_values": spec.presentation_group_values,
                        "billing_frequency": spec.billing_frequency,
                        "commit_ids": spec.commit_ids,
                        "recurring_commit_ids": spec.recurring_commit_ids,
                        "any_commit_or_credit_ids": spec.any_commit_or_credit_ids,
                    }
                )
            )
        return _drop_none(
            {
                "starting_at": _required_time(f"{path}.starting_at", self.starting_at),
                "ending_before": _canonical(f"{path}.ending_before", self.ending_before),
                "type": self.type,
                "product_id": self.product_id,
                "applicable_product_tags": self.applicable_product_tags or [],
                "override_specifiers": specifiers,
                "entitled": self.entitled,
                "priority": self.priority,
                "multiplier": self.multiplier,
                "overwrite_rate": None
                if rate is None
                else _drop_none(
                    {
                        "rate_type": rate.rate_type,
                        "price": rate.price,
                        "tiers": [_drop_none({"price": t.price, "size": t.size}) for t in rate.tiers or ()],
                        "quantity": rate.quantity,
                        "is_prorated": rate.is_prorated,
                        "credit_type_id": rate.credit_type_id,
                    }
                ),
                "tiers": [_drop_none({"multiplier": t.multiplier, "size": t.size}) for t in self.tiers or ()],
                "is_commit_specific": True if self.is_commit_specific else None,
                "target": self.target if self.is_commit_specific else None,
            }
        )


class ProrationIn(Request):
    # None: BILL_IMMEDIATELY for ADVANCE, BILL_ON_NEXT_COLLECTION_DATE (the only choice) for ARREARS.
    invoice_behavior: Literal["BILL_IMMEDIATELY", "BILL_ON_NEXT_COLLECTION_DATE"] | None = None
    is_prorated: bool = True
    rounding: ProrationRoundingIn | None = None


class SubscriptionRateIn(Request):
    billing_frequency: Frequency
    product_id: str = Field(min_length=1)


SeatId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


def seat_ids_document(ids: list[str], path: str) -> list[str]:
    """Seat ids as stored: each a usable id, none twice."""
    seen: set[str] = set()
    for index, seat_id in enumerate(ids):
        problem = identifier_problem(seat_id)
        if problem is not None:
            raise InvalidInput(f"{path}[{index}]", problem)
        if seat_id in seen:
            raise InvalidInput(f"{path}[{index}]", f"names seat {seat_id!r} twice")
        seen.add(seat_id)
    return list(ids)


class SeatConfigIn(Request):
    initial_seat_ids: list[SeatId] = Field(max_length=MAX_INITIAL_SEAT_IDS)
    seat_group_key: str = Field(min_length=1, max_length=MAX_PROPERTY_NAME_LENGTH)
    initial_unassigned_seats: Decimal | None = None

    def to_document(self, path: str) -> dict:
        unassigned = seat_count(self.initial_unassigned_seats or 0, f"{path}.initial_unassigned_seats", allow_zero=True)
        return {
            "seat_group_key": self.seat_group_key,
            "initial_seat_ids": seat_ids_document(self.initial_seat_ids, f"{path}.initial_seat_ids"),
            "initial_unassigned_seats": Decimal(unassigned),
        }


class BillingCycleConfigIn(Request):
    anchor_date: str | None = None
    invoice_placement: Literal["ON_SCHEDULED_INVOICE", "ON_USAGE_INVOICE"] | None = None

    def to_document(self, path: str, collection_schedule: str) -> dict:
        """Left out, the anchor is the contract's usage billing anchor; ADVANCE charges get their own
        SCHEDULED invoice and ARREARS ones go on the USAGE invoice (billing/pricing/subscriptions.py)."""
        anchor = _canonical(f"{path}.anchor_date", self.anchor_date)
        if anchor is not None:
            hour_aligned(parse_rfc3339(anchor), f"{path}.anchor_date")
        if collection_schedule == "ARREARS" and self.invoice_placement == "ON_SCHEDULED_INVOICE":
            raise InvalidInput(f"{path}.invoice_placement", "ON_SCHEDULED_INVOICE is not supported yet for ARREARS subscriptions (ON_USAGE_INVOICE is)")
        return _drop_none({"anchor_date": anchor, "invoice_placement": self.invoice_placement})


class SubscriptionIn(Request):
    collection_schedule: Literal["ADVANCE", "ARREARS"]
    proration: ProrationIn
    subscription_rate: SubscriptionRateIn
    billing_cycle_config: BillingCycleConfigIn | None = None
    custom_fields: CustomFields = Field(default_factory=dict)
    description: str | None = None
    ending_before: str | None = None
    initial_quantity: Decimal | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    quantity_management_mode: Literal["SEAT_BASED", "QUANTITY_ONLY"] = "QUANTITY_ONLY"
    seat_config: SeatConfigIn | None = None
    starting_at: str | None = None
    temporary_id: str | None = None

    def to_document(self, path: str) -> dict:
        behavior = self.proration.invoice_behavior
        if behavior is None:
            behavior = "BILL_IMMEDIATELY" if self.collection_schedule == "ADVANCE" else "BILL_ON_NEXT_COLLECTION_DATE"
        if self.collection_schedule == "ARREARS" and behavior != "BILL_ON_NEXT_COLLECTION_DATE":
            raise InvalidInput(
                f"{path}.proration.invoice_behavior",
                "must be BILL_ON_NEXT_COLLECTION_DATE for an ARREARS subscription (BILL_IMMEDIATELY is for ADVANCE)",
            )
        document = {
            "product_id": self.subscription_rate.product_id,
            "billing_frequency": self.subscription_rate.billing_frequency,
            "collection_schedule": self.collection_schedule,
            "is_prorated": self.proration.is_prorated,
            "invoice_behavior": behavior,
            "proration_rounding": None
            if self.proration.rounding is None
            else self.proration.rounding.to_document(f"{path}.proration.rounding"),
            "starting_at": _canonical(f"{path}.starting_at", self.starting_at),
            "ending_before": _canonical(f"{path}.ending_before", self.ending_before),
            "initial_quantity": self.initial_quantity,
            "name": self.name,
            "description": self.description,
            "custom_fields": self.custom_fields,
            "temporary_id": self.temporary_id,
            "billing_cycle_config": None
            if self.billing_cycle_config is None
            else self.billing_cycle_config.to_document(f"{path}.billing_cycle_config", self.collection_schedule),
        }
        if self.quantity_management_mode == "SEAT_BASED":
            if self.seat_config is None:
                raise InvalidInput(f"{path}.seat_config", "is required for SEAT_BASED subscriptions")
            seats = self.seat_config.to_document(f"{path}.seat_config")
            total = len(seats["initial_seat_ids"]) + seats["initial_unassigned_seats"]
            if self.initial_quantity is not None and self.initial_quantity != total:
                raise InvalidInput(
                    f"{path}.initial_quantity",
                    f"a SEAT_BASED subscription's quantity is its seats ({total}); leave initial_quantity out",
                )
            document |= {"quantity_management_mode": "SEAT_BASED", "seat_config": seats, "initial_quantity": total}
        else:
            if self.seat_config is not None:
                raise InvalidInput(f"{path}.seat_config", "is only for SEAT_BASED subscriptions")
            if self.initial_quantity is None:
                raise InvalidInput(f"{path}.initial_quantity", "is required for QUANTITY_ONLY subscriptions")
        return _drop_none(document)


class ScheduleItemIn(Request):
    timestamp: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


class ScheduleIn(Request):
    credit_type_id: str | None = None
    do_not_invoice: bool | None = None
    recurring_schedule: RecurringScheduleIn | None = None
    schedule_items: list[ScheduleItemIn] | None = None


class ScheduledChargeIn(Request):
    product_id: str = Field(min_length=1)
    schedule: ScheduleIn
    custom_fields: CustomFields = Field(default_factory=dict)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    netsuite_sales_order_id: str | None = None

    def to_document(self, path: str) -> dict:
        schedule = self.schedule
        if (schedule.schedule_items is None) == (schedule.recurring_schedule is None):
            raise InvalidInput(f"{path}.schedule", "give exactly one of schedule_items or recurring_schedule")
        if schedule.recurring_schedule is not None:
            items = self._recurring_items(schedule.recurring_schedule, f"{path}.schedule.recurring_schedule")
        else:
            items = self._listed_items(schedule.schedule_items or [], f"{path}.schedule.schedule_items")
        return _drop_none(
            {
                "product_id": self.product_id,
                "name": self.name,
                "credit_type_id": schedule.credit_type_id,
                "custom_fields": self.custom_fields,
                "netsuite_sales_order_id": self.netsuite_sales_order_id,
                "schedule_items": items,
                # Kept so that refusals of the items it made name it (ContractService.validate).
                "recurring_schedule": None
                if schedule.recurring_schedule is None
                else {"frequency": schedule.recurring_schedule.frequency, "items": len(items)},
                "do_not_invoice": True if schedule.do_not_invoice else None,
            }
        )

    @staticmethod
    def _listed_items(listed: list[ScheduleItemIn], path: str) -> list[dict]:
        items = []
        for index, item in enumerate(listed):
            where = f"{path}[{index}]"
            if item.amount is not None and (item.quantity is not None or item.unit_price is not None):
                raise InvalidInput(f"{where}.amount", "give either amount or quantity and unit_price")
            if item.amount is None and (item.quantity is None or item.unit_price is None):
                raise InvalidInput(f"{where}.unit_price", "give either amount or quantity and unit_price")
            items.append(
                {
                    "timestamp": _required_time(f"{where}.timestamp", item.timestamp),
                    "unit_price": item.amount if item.amount is not None else item.unit_price,
                    "quantity": Decimal(1) if item.amount is not None else item.quantity,
                }
            )
        return items

    @staticmethod
    def _recurring_items(r: RecurringScheduleIn, path: str) -> list[dict]:
        """The items a recurring schedule stands for, made once (as Metronome shows them): one per
        frequency step from starting_at, the amount distributed as `amount_distribution` says."""
        start = parse_rfc3339(_required_time(f"{path}.starting_at", r.starting_at))
        end = parse_rfc3339(_required_time(f"{path}.ending_before", r.ending_before))
        frequency = RecurringFrequency(r.frequency)
        months = (end.year - start.year) * 12 + end.month - start.month
        if months // frequency.months > MAX_SCHEDULE_ITEMS:  # checked before making them
            raise InvalidInput(f"{path}.ending_before", f"would make more than {MAX_SCHEDULE_ITEMS:,} schedule items")
        expanded = expand_recurring_schedule(
            RecurringSchedule(
                AmountDistribution(r.amount_distribution), frequency, start, end, r.amount, r.quantity, r.unit_price
            ),
            "item",
            USD_CENTS,
            path,
        )
        return [
            {"timestamp": format_rfc3339(i.timestamp), "unit_price": i.unit_price, "quantity": i.quantity}
            for i in expanded
        ]


class DiscountIn(ScheduledChargeIn):
    """metronome-sdk's Discount: a schedule like a scheduled charge's, each item taken off."""

    def to_document(self, path: str) -> dict:
        if self.schedule.do_not_invoice:
            raise InvalidInput(f"{path}.schedule.do_not_invoice", "only applies to commit invoice schedules")
        return super().to_document(path)


class ProfessionalServiceIn(Request):
    max_amount: Decimal
    product_id: str = Field(min_length=1)
    quantity: Decimal
    unit_price: Decimal
    custom_fields: CustomFields = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    netsuite_sales_order_id: str | None = None

    def to_document(self, path: str) -> dict:
        return _drop_none(
            {
                "product_id": self.product_id,
                "max_amount": self.max_amount,
                "quantity": self.quantity,
                "unit_price": self.unit_price,
                "custom_fields": self.custom_fields,
                "description": self.description,
                "netsuite_sales_order_id": self.netsuite_sales_order_id,
            }
        )


class UsageStatementScheduleIn(Request):
    frequency: Frequency
    day: Literal["FIRST_OF_MONTH", "CONTRACT_START", "CUSTOM_DATE"] = "FIRST_OF_MONTH"
    billing_anchor_date: str | None = None
    invoice_generation_starting_at: str | None = None


class UsageFilterIn(Request):
    group_key: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    group_values: list[str] = Field(min_length=1)
    starting_at: str | None = None

    def to_document(self, contract_start: str) -> dict:
        """A filter from its starting_at, when later than the contract's start (before it, the
        contract bills all usage); the engine checks it falls within the contract."""
        starting_at = _canonical("usage_filter.starting_at", self.starting_at)
        document: dict[str, Any] = {"group_key": self.group_key, "group_values": list(self.group_values)}
        if starting_at is not None and parse_rfc3339(starting_at) > parse_rfc3339(contract_start):
            document["starting_at"] = starting_at
        return document


class FutureInvoiceBehaviorIn(Request):
    trueup: Literal["REMOVE", "AS_IS"] | None = None


class TransitionIn(Request):
    """The contract this one takes over from (services/contract_transitions.py). The SDK lists
    RENEWAL; SUPERSEDE is the value its docstring says a client's configuration may add."""

    from_contract_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    type: Literal["RENEWAL", "SUPERSEDE"]
    future_invoice_behavior: FutureInvoiceBehaviorIn | None = None

    def to_document(self) -> dict:
        behavior = self.future_invoice_behavior
        trueup = "AS_IS" if behavior is None or behavior.trueup is None else behavior.trueup  # the SDK's default
        return {"from_contract_id": self.from_contract_id, "type": self.type,
                "future_invoice_behavior": {"trueup": trueup}}


class ContractCreate(Request):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1)
    starting_at: str
    ending_before: str | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    rate_card_id: str | None = None
    rate_card_alias: str | None = None
    overrides: list[OverrideIn] = Field(default_factory=list)
    subscriptions: list[SubscriptionIn] = Field(default_factory=list)
    scheduled_charges: list[ScheduledChargeIn] = Field(default_factory=list)
    usage_statement_schedule: UsageStatementScheduleIn | None = None
    multiplier_override_prioritization: Literal["LOWEST_MULTIPLIER", "EXPLICIT"] = "LOWEST_MULTIPLIER"
    custom_fields: CustomFields = Field(default_factory=dict)
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)
    # Accepted and kept for the record; they do not change billing.
    net_payment_terms_days: Decimal | None = None
    netsuite_sales_order_id: str | None = None
    salesforce_opportunity_id: str | None = None
    total_contract_value: Decimal | None = None
    billing_provider_configuration: ContractBillingProviderConfigurationIn | None = None  # services/contract_billing_providers.py
    # Refused when non-empty (see UNSUPPORTED).
    commits: list[ContractCommitIn] | None = None
    credits: list[CreditIn] | None = None
    discounts: list[DiscountIn] | None = None
    recurring_commits: list[RecurringCommitIn] | None = None
    recurring_credits: list[RecurringCreditIn] | None = None
    professional_services: list[ProfessionalServiceIn] | None = None
    reseller_royalties: list[ResellerRoyaltyIn] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)
    spend_trackers: list[SpendTrackerIn] | None = None
    spend_threshold_configuration: SpendThresholdConfigurationIn | None = None
    prepaid_balance_threshold_configuration: PrepaidBalanceThresholdConfigurationIn | None = None
    transition: TransitionIn | None = None
    hierarchy_configuration: HierarchyConfigurationIn | None = None
    # A contract from a package (services/packages.py): the route builds the body from the package,
    # which then names the package by id; package_alias never reaches a document.
    package_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    package_alias: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    usage_filter: UsageFilterIn | None = None
    scheduled_charges_on_usage_invoices: Literal["ALL"] | None = None
    revenue_system_configuration: Any = None

    def to_document(self) -> dict:
        """The normalized contract (no ids yet): canonical times, Decimals, defaults filled in."""
        for name in UNSUPPORTED:
            value = getattr(self, name)
            if value is not None and value != []:
                raise InvalidInput(name, "is not supported by Tally yet")
        schedule = self.usage_statement_schedule or UsageStatementScheduleIn(frequency="MONTHLY")
        document = _drop_none(
            {
                "customer_id": self.customer_id,
                "name": self.name,
                "package_id": self.package_id,
                "rate_card_id": self.rate_card_id,
                "rate_card_alias": self.rate_card_alias,
                "starting_at": _required_time("starting_at", self.starting_at),
                "ending_before": _canonical("ending_before", self.ending_before),
                "multiplier_override_prioritization": self.multiplier_override_prioritization,
                "usage_statement_schedule": _drop_none(
                    {
                        "frequency": schedule.frequency,
                        "day": schedule.day,
                        "billing_anchor_date": _canonical(
                            "usage_statement_schedule.billing_anchor_date", schedule.billing_anchor_date
                        ),
                        "invoice_generation_starting_at": _canonical(
                            "usage_statement_schedule.invoice_generation_starting_at", schedule.invoice_generation_starting_at
                        ),
                    }
                ),
                "overrides": [o.to_document(f"overrides[{i}]") for i, o in enumerate(self.overrides)],
                "subscriptions": [s.to_document(f"subscriptions[{i}]") for i, s in enumerate(self.subscriptions)],
                "scheduled_charges": [
                    c.to_document(f"scheduled_charges[{i}]") for i, c in enumerate(self.scheduled_charges)
                ],
                "custom_fields": self.custom_fields,
                "net_payment_terms_days": self.net_payment_terms_days,
                "netsuite_sales_order_id": self.netsuite_sales_order_id,
                "salesforce_opportunity_id": self.salesforce_opportunity_id,
                "total_contract_value": self.total_contract_value,
                "commits": [c.to_document(f"commits[{i}].") for i, c in enumerate(self.commits or ())],
                "credits": [c.to_document(f"credits[{i}].") for i, c in enumerate(self.credits or ())],
                "recurring_commits": [
                    r.to_document(f"recurring_commits[{i}]") for i, r in enumerate(self.recurring_commits or ())
                ],
                "recurring_credits": [
                    r.to_document(f"recurring_credits[{i}]") for i, r in enumerate(self.recurring_credits or ())
                ],
                "discounts": [d.to_document(f"discounts[{i}]") for i, d in enumerate(self.discounts or ())],
                **{
                    name: config.to_document(name)
                    for name in ("spend_threshold_configuration", "prepaid_balance_threshold_configuration")
                    if (config := getattr(self, name)) is not None
                },
                "professional_services": [
                    p.to_document(f"professional_services[{i}]") for i, p in enumerate(self.professional_services or ())
                ],
                "transition": None if self.transition is None else self.transition.to_document(),
                "hierarchy_configuration": None if self.hierarchy_configuration is None else self.hierarchy_configuration.to_document(),
                "spend_trackers": spend_trackers_document(self.spend_trackers),
                "reseller_royalties": reseller_royalties_document(self.reseller_royalties),
                "scheduled_charges_on_usage_invoices": self.scheduled_charges_on_usage_invoices,
                "billing_provider_configuration": None
                if self.billing_provider_configuration is None
                else self.billing_provider_configuration.to_spec(),
                "usage_filter": None
                if self.usage_filter is None
                else self.usage_filter.to_document(_required_time("starting_at", self.starting_at)),
            }
        )
        return _temporary_ids_resolved(document, [*(self.commits or ()), *(self.credits or ())])


def _temporary_ids_resolved(document: dict, grants: list) -> dict:
    """Commit-specific overrides may name a commit or credit of the same request by its
    `temporary_id`; they are stored naming its id."""
    ids = {g.temporary_id: doc["id"] for g, doc in zip(grants, [*document.get("commits", ()), *document.get("credits", ())]) if g.temporary_id}
    if not ids:
        return document
    for override in document.get("overrides") or ():
        for spec in override.get("override_specifiers") or ():
            for name in ("commit_ids", "any_commit_or_credit_ids"):
                if spec.get(name) is not None:
                    spec[name] = [ids.get(grant_id, grant_id) for grant_id in spec[name]]
    return document


class ContractRef(Request):
    model_config = ConfigDict(extra="ignore")

    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    include_balance: bool = False
    include_ledgers: bool = False


class ContractList(Request):
    model_config = ConfigDict(extra="ignore")

    customer_id: str = Field(min_length=1)
    covering_date: str | None = None
    starting_at: str | None = None
    include_archived: bool = False
    include_balance: bool = False
    include_ledgers: bool = False
    cursor: str | None = None
    limit: int = Field(default=20, ge=1, le=20)


class ContractUpdateEndDate(Request):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    ending_before: str | None = None
    allow_ending_before_finalized_invoice: bool | None = None


class ContractArchive(Request):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    void_invoices: bool


class ProServiceLineIn(Request):
    """A line of scheduleProServicesInvoice: an amount, or a quantity (with a unit_price that
    overrides the term's)."""

    professional_service_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    amendment_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    amount: Decimal | None = None
    metadata: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    netsuite_invoice_billing_end: str | None = None
    netsuite_invoice_billing_start: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None

    def to_line(self, path: str) -> dict:
        return _drop_none(
            {
                "professional_service_id": self.professional_service_id,
                "amendment_id": self.amendment_id,
                "amount": self.amount,
                "quantity": self.quantity,
                "unit_price": self.unit_price,
                "metadata": self.metadata,
                "netsuite_invoice_billing_start": _canonical(
                    f"{path}.netsuite_invoice_billing_start", self.netsuite_invoice_billing_start
                ),
                "netsuite_invoice_billing_end": _canonical(f"{path}.netsuite_invoice_billing_end", self.netsuite_invoice_billing_end),
            }
        )


class ScheduleProServicesInvoice(Request):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    issued_at: str
    line_items: list[ProServiceLineIn] = Field(min_length=1, max_length=MAX_IDS_PER_REQUEST)
    netsuite_invoice_header_end: str | None = None
    netsuite_invoice_header_start: str | None = None

    def issued(self) -> datetime:
        return parse_rfc3339(_required_time("issued_at", self.issued_at))

    def lines(self) -> list[dict]:
        return [line.to_line(f"line_items[{i}]") for i, line in enumerate(self.line_items)]

    def header(self) -> dict:
        return {
            name: _canonical(name, getattr(self, name))
            for name in ("netsuite_invoice_header_start", "netsuite_invoice_header_end")
        }


class SubscriptionQuantityHistory(Request):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    subscription_id: str = Field(min_length=1)


class SubscriptionSeatsHistory(Request):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    subscription_id: str = Field(min_length=1)
    covering_date: str | None = None
    cursor: str | None = None
    ending_before: str | None = None
    limit: int | None = Field(default=None, ge=1, le=10)
    starting_at: str | None = None

    def window(self) -> tuple[datetime | None, datetime | None, datetime | None]:
        """(covering_date, starting_at, ending_before); covering_date alone or the other two."""
        if self.covering_date is not None and (self.starting_at is not None or self.ending_before is not None):
            raise InvalidInput("covering_date", "cannot be combined with starting_at or ending_before")
        starting_at = parse_instant("starting_at", self.starting_at)
        ending_before = parse_instant("ending_before", self.ending_before)
        if starting_at is not None and ending_before is not None and ending_before < starting_at:
            raise InvalidInput("ending_before", "must not be before starting_at")
        return parse_instant("covering_date", self.covering_date), starting_at, ending_before


class SeatBalancesList(Request):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    covering_date: str | None = None
    cursor: str | None = None
    effective_before: str | None = None
    include_credits_and_commits: bool = False
    include_ledgers: bool = False
    limit: int = Field(default=25, ge=1, le=100)
    seat_ids: list[SeatId] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)
    skip_missing_seat_ids: bool = False
    starting_at: str | None = None
    subscription_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]] | None = Field(
        default=None, max_length=MAX_IDS_PER_REQUEST
    )

    def check_dates(self) -> None:
        if self.covering_date is not None and (self.starting_at is not None or self.effective_before is not None):
            raise InvalidInput("covering_date", "cannot be combined with starting_at or effective_before")
        for name in ("covering_date", "effective_before", "starting_at"):
            parse_instant(name, getattr(self, name))

    def window(self) -> SeatWindow:
        """The access filters of the commits and credits listed (services/seat_balances.py)."""
        self.check_dates()
        return SeatWindow(*(parse_instant(name, getattr(self, name)) for name in ("covering_date", "starting_at", "effective_before")))


# -- responses ---------------------------------------------------------------------------------
def credit_type_json(credit_type: CreditType) -> dict:
    return {"id": credit_type.id, "name": credit_type.name}


@dataclass(frozen=True)
class ContractView:
    """What a contract's answer shows beyond its stored document, read once per request (for a
    list, once for all its contracts)."""

    now: datetime | None = None  # subscriptions' billing_periods are the ones around it
    credit_type_names: Mapping[str, str] = field(default_factory=lambda: {USD_CENTS.id: USD_CENTS.name})
    figures: GrantFigures | None = None  # invoice links; balances and ledgers when it holds a burn-down
    include_balance: bool = False
    include_ledgers: bool = False

    def threshold_commits(self, contract_id: str) -> list[dict]:
        """The commits the contract's threshold crossings bought (none without `figures`)."""
        if self.figures is None:
            return []
        bought = [
            d for d in self.figures.grants.documents.values()
            if d.get("threshold_workflow_id") and d.get("contract_id") == contract_id
        ]
        return sorted(bought, key=lambda d: (d["created_at"], d["id"]))

    def grant_json(self, doc: dict, contract_doc: dict, products: dict[str, Product]) -> dict:
        grant = contract_grant_document(doc, contract_doc)
        figures = self.figures
        return grant_json(
            grant,
            products,
            self.credit_type_names,
            figures.balance(grant["id"]) if figures is not None and self.include_balance else None,
            figures.ledger(grant["id"]) if figures is not None and self.include_ledgers else None,
            None if figures is None else figures.invoice_ids,
        )


def _period_json(period: Period | None) -> dict | None:
    if period is None:
        return None
    return {"starting_at": format_rfc3339(period.starting_at), "ending_before": format_rfc3339(period.ending_before)}


def _product_ref(product_id: str, products: dict[str, Product], at: datetime | None) -> dict:
    product = products.get(product_id)
    if product is None:
        return {"id": product_id, "name": product_id}
    return {"id": product_id, "name": (product.at(at) if at is not None else product.versions[0]).name}


def _override_json(o: dict, products: dict[str, Product], fiat: CreditType, names: Mapping[str, str]) -> dict:
    starting_at = parse_rfc3339(o["starting_at"])
    body: dict[str, Any] = {
        "id": o["id"],
        "created_at": o["created_at"],
        "starting_at": o["starting_at"],
        "applicable_product_tags": o.get("applicable_product_tags") or [],
        "override_specifiers": o.get("override_specifiers") or [],
        "target": o.get("target") or "LIST_RATE",
    }
    for name in ("ending_before", "type", "entitled", "priority", "multiplier", "is_commit_specific"):
        if o.get(name) is not None:
            body[name] = o[name]
    if o.get("product_id"):
        body["product"] = _product_ref(o["product_id"], products, starting_at)
    if o.get("tiers"):
        body["override_tiers"] = o["tiers"]
    rate = o.get("overwrite_rate")
    if rate is not None:
        overwrite = {k: v for k, v in rate.items() if k != "credit_type_id"}
        overwrite["credit_type"] = credit_type_ref(rate.get("credit_type_id") or fiat.id, names)
        if not overwrite.get("tiers"):
            overwrite.pop("tiers", None)
        body["overwrite_rate"] = overwrite
    return body


def _billing_periods_json(subscription: Subscription | None, contract: Contract, now: datetime | None) -> dict:
    if subscription is None or now is None:
        return {}
    periods = subscription_periods(subscription, subscription.anchor(contract.billing_anchor), contract.ending_before, now)
    shown = {"previous": periods.previous, "current": periods.current, "next": periods.next}
    return {name: _period_json(period) for name, period in shown.items() if period is not None}


def _subscription_end(s: dict, contract: Contract) -> str | None:
    """Where the subscription ends: its own ending_before, or the contract's end if that is earlier
    (an edit that ends the contract early ends its subscriptions with it)."""
    own = parse_rfc3339(s["ending_before"]) if s.get("ending_before") else None
    ends = [end for end in (own, contract.ending_before) if end is not None]
    return format_rfc3339(min(ends)) if ends else None


def _quantity_schedule_json(s: dict, ending_before: str | None, now: datetime | None) -> list[dict]:
    """The subscription's quantity, one entry per change (contract edits). As the SDK documents,
    only the current quantity and future changes: entries that ended by `now` are left out (the
    last one is kept for a subscription that has ended). Without `now` (an edit record), all."""
    initial, changes = quantity_schedule(s)
    starts = [s["starting_at"], *(format_rfc3339(c.starting_at) for c in changes)]
    ends = [*starts[1:], ending_before]
    quantities = [initial, *(c.quantity for c in changes)]
    entries = [
        _drop_none({"starting_at": start, "ending_before": end, "quantity": quantity})
        for start, end, quantity in zip(starts, ends, quantities)
    ]
    if now is None:
        return entries
    shown = [e for e in entries if "ending_before" not in e or parse_rfc3339(e["ending_before"]) > now]
    return shown or entries[-1:]


def _subscription_json(
    s: dict, products: dict[str, Product], fiat: CreditType, contract: Contract, now: datetime | None
) -> dict:
    starting_at = parse_rfc3339(s["starting_at"])
    engine = next((sub for sub in contract.subscriptions if sub.id == s["id"]), None)
    body = {
        "id": s["id"],
        "created_at": s["created_at"],
        "starting_at": s["starting_at"],
        "collection_schedule": s["collection_schedule"],
        "proration": _proration_json(s),
        "quantity_management_mode": s.get("quantity_management_mode") or "QUANTITY_ONLY",
        "quantity_schedule": _quantity_schedule_json(s, _subscription_end(s, contract), now),
        "subscription_rate": {
            "billing_frequency": s["billing_frequency"],
            "product": _product_ref(s["product_id"], products, starting_at),
        },
        "billing_periods": _billing_periods_json(engine, contract, now),
        "fiat_credit_type_id": fiat.id,
        "custom_fields": s.get("custom_fields") or {},
    }
    ending_before = _subscription_end(s, contract)
    if ending_before is not None:
        body["ending_before"] = ending_before
    for name in ("name", "description"):
        if s.get(name) is not None:
            body[name] = s[name]
    if s.get("seat_config"):
        body["seat_config"] = {"seat_group_key": s["seat_config"]["seat_group_key"]}
    if s.get("billing_cycle_config") is not None:  # shown when given, with what it left out filled in
        cycle = s["billing_cycle_config"]
        advance = s["collection_schedule"] == "ADVANCE"
        body["billing_cycle_config"] = {
            "anchor_date": cycle.get("anchor_date") or format_rfc3339(contract.billing_anchor),
            "invoice_placement": cycle.get("invoice_placement") or ("ON_SCHEDULED_INVOICE" if advance else "ON_USAGE_INVOICE"),
        }
    return body


def _proration_json(s: dict) -> dict:
    # ARREARS bills increases at the period's end whatever was stored (only that is allowed now).
    behavior = "BILL_ON_NEXT_COLLECTION_DATE" if s["collection_schedule"] == "ARREARS" else s["invoice_behavior"]
    body = {"invoice_behavior": behavior, "is_prorated": s["is_prorated"]}
    if s.get("proration_rounding"):
        body["rounding"] = dict(s["proration_rounding"])
    return body


def _scheduled_charge_json(c: dict, products: dict[str, Product], fiat: CreditType, names: Mapping[str, str]) -> dict:
    first = parse_rfc3339(c["schedule_items"][0]["timestamp"]) if c["schedule_items"] else None
    body = {
        "id": c["id"],
        "product": _product_ref(c["product_id"], products, first),
        "schedule": {
            "credit_type": credit_type_ref(c.get("credit_type_id") or fiat.id, names),
            **({"do_not_invoice": True} if c.get("do_not_invoice") else {}),
            "schedule_items": [
                {
                    "id": i["id"],
                    "timestamp": i["timestamp"],
                    "quantity": i["quantity"],
                    "unit_price": i["unit_price"],
                    "amount": i["quantity"] * i["unit_price"],
                }
                for i in c["schedule_items"]
            ],
        },
        "custom_fields": c.get("custom_fields") or {},
    }
    if c.get("name"):
        body["name"] = c["name"]
    if c.get("archived_at"):
        body["archived_at"] = c["archived_at"]
    return body


def _discount_json(d: dict, products: dict[str, Product], fiat: CreditType, names: Mapping[str, str]) -> dict:
    """Metronome's Discount: shaped like a scheduled charge, amounts as given (each taken off)."""
    body = _scheduled_charge_json(d, products, fiat, names)
    if d.get("netsuite_sales_order_id"):
        body["netsuite_sales_order_id"] = d["netsuite_sales_order_id"]
    return body


def _pro_service_json(p: dict) -> dict:
    """Metronome's ProService."""
    body = {k: p[k] for k in ("id", "max_amount", "product_id", "quantity", "unit_price")}
    body["custom_fields"] = p.get("custom_fields") or {}
    for name in ("description", "netsuite_sales_order_id"):
        if p.get(name) is not None:
            body[name] = p[name]
    return body


def _transitions_json(doc: dict) -> list[dict]:
    """The contract's transitions to and from others. The SDK's type admits RENEWAL alone, so a
    SUPERSEDE stays off the list (strict clients could not parse it); its end date shows it."""
    return [
        {"from_contract_id": t["from_contract_id"], "to_contract_id": t["to_contract_id"], "type": t["type"]}
        for t in doc.get("transitions") or ()
        if t["type"] == "RENEWAL"
    ]


def contract_json(
    doc: dict, contract: Contract, products: dict[str, Product], view: ContractView | None = None
) -> dict:
    """Metronome's v1 Contract: `current` terms, and `initial` ones without what amendments added."""
    view = view or ContractView()
    fiat = contract.rate_card.fiat_credit_type
    names = view.credit_type_names
    made = made_grants(doc, view.now)  # the commits and credits its recurring ones have made by now
    commits = [*(doc.get("commits") or ()), *made["commits"], *view.threshold_commits(doc["id"])]
    # Archived parts stay listed, with archived_at (services/contract_edits.ARCHIVED).
    commits += doc.get("archived_commits") or []
    terms: dict[str, Any] = {
        "starting_at": doc["starting_at"],
        "created_at": doc["created_at"],
        "created_by": doc.get("created_by") or CREATED_BY,
        "rate_card_id": doc["rate_card_id"],
        "commits": [view.grant_json(c, doc, products) for c in commits],
        "credits": [
            view.grant_json(c, doc, products)
            for c in [*(doc.get("credits") or ()), *made["credits"], *(doc.get("archived_credits") or ())]
        ],
        "recurring_commits": [recurring_grant_json(r, doc, products) for r in doc.get("recurring_commits") or ()],
        "recurring_credits": [recurring_grant_json(r, doc, products) for r in doc.get("recurring_credits") or ()],
        "discounts": [_discount_json(d, products, fiat, names) for d in doc.get("discounts") or ()],
        "transitions": _transitions_json(doc),
        "professional_services": [_pro_service_json(p) for p in doc.get("professional_services") or ()],
        "overrides": [_override_json(o, products, fiat, names) for o in doc.get("overrides") or ()],
        "scheduled_charges": [
            _scheduled_charge_json(c, products, fiat, names)
            for c in [*(doc.get("scheduled_charges") or ()), *(doc.get("archived_scheduled_charges") or ())]
        ],
        "usage_statement_schedule": {
            "frequency": doc["usage_statement_schedule"]["frequency"],
            "billing_anchor_date": format_rfc3339(contract.billing_anchor),
        },
        "multiplier_override_prioritization": doc["multiplier_override_prioritization"],
    }
    recorded = ("net_payment_terms_days", "netsuite_sales_order_id", "salesforce_opportunity_id", "total_contract_value",
                "scheduled_charges_on_usage_invoices")
    for name in ("ending_before", "name", *recorded):
        if doc.get(name) is not None:
            terms[name] = doc[name]
    if (hierarchy := hierarchy_json(doc)) is not None:
        terms["hierarchy_configuration"] = hierarchy
    body: dict[str, Any] = {
        "id": doc["id"],
        "customer_id": doc["customer_id"],
        "amendments": _amendments_json(doc, terms),
        "initial": _before_amendments(doc, terms),
        "current": terms,
        "custom_fields": doc.get("custom_fields") or {},
        "subscriptions": [
            _subscription_json(s, products, fiat, contract, view.now) for s in doc.get("subscriptions") or ()
        ],
    }
    if contract.usage_filter is not None:
        terms["usage_filter"] = usage_filter_json(contract, view.now)
    if doc.get("spend_trackers"):  # on the contract and in its terms, as thresholds
        tracked = contract_commits(doc, view.threshold_commits(doc["id"]), view.now)
        body["spend_trackers"] = terms["spend_trackers"] = [
            spend_tracker_json(t, tracked, contract, view.now) for t in doc["spend_trackers"]
        ]
    if doc.get("reseller_royalties"):
        terms["reseller_royalties"] = [royalty_segment_json(r) for r in doc["reseller_royalties"]]
    for kind in THRESHOLD_KINDS:  # v1 shows them on the contract and in its terms
        if doc.get(kind.value) is not None:
            body[kind.value] = terms[kind.value] = threshold_config_json(doc[kind.value])
    if doc.get("archived_at"):
        body["archived_at"] = doc["archived_at"]
    if doc.get("scheduled_charges_on_usage_invoices"):
        body["scheduled_charges_on_usage_invoices"] = doc["scheduled_charges_on_usage_invoices"]
    if doc.get("uniqueness_key"):
        body["uniqueness_key"] = doc["uniqueness_key"]
    if doc.get("package_id"):
        body["package_id"] = doc["package_id"]
    shown = billing_provider_fields(doc, view.now)
    if shown:
        body["customer_billing_provider_configuration"] = shown["customer_billing_provider_configuration"]
    return body


_AMENDED = ("commits", "credits", "overrides", "scheduled_charges", "discounts", "professional_services")


def _amendments_json(doc: dict, terms: dict) -> list[dict]:
    """v1's amendments (POST /v1/contracts/amend), each with the parts it added as the contract
    shows them now (a part removed since is left out; an archived one shows archived_at)."""
    shown = {kind: {part["id"]: part for part in terms[kind]} for kind in _AMENDED}
    found = []
    for amendment in doc.get("amendments") or ():
        body = {
            "id": amendment["id"],
            "created_at": amendment["created_at"],
            "created_by": amendment.get("created_by") or CREATED_BY,
            "starting_at": amendment["starting_at"],
        }
        body |= {kind: [shown[kind][i] for i in amendment.get(kind) or () if i in shown[kind]] for kind in _AMENDED}
        body |= {k: amendment[k] for k in ("netsuite_sales_order_id", "salesforce_opportunity_id") if amendment.get(k) is not None}
        if amendment.get("reseller_royalties"):  # the changes it made, as it gave them
            body["reseller_royalties"] = [royalty_segment_json(r) for r in amendment["reseller_royalties"]]
        found.append(body)
    return found


def _before_amendments(doc: dict, terms: dict) -> dict:
    """v1's `initial`: the terms without the parts amendments added (edits change both)."""
    amended = {kind: {i for a in doc.get("amendments") or () for i in a.get(kind) or ()} for kind in _AMENDED}
    if not any(amended.values()):
        return terms
    return terms | {kind: [part for part in terms[kind] if part["id"] not in amended[kind]] for kind in _AMENDED}


def _filter_json(usage_filter: UsageFilter, starting_at: datetime) -> dict:
    return {
        "group_key": usage_filter.group_key,
        "group_values": list(usage_filter.group_values),
        "starting_at": format_rfc3339(starting_at),
    }


def usage_filter_json(contract: Contract, now: datetime | None) -> dict:
    """v1's usage_filter: the first filter, the later ones, and the one in effect now (none before
    the first starts; the first when `now` is unknown)."""
    assert contract.usage_filter is not None
    initial = _filter_json(contract.usage_filter, contract.usage_filter.starting_at or contract.starting_at)
    body: dict[str, Any] = {
        "initial": initial,
        "updates": [_filter_json(u, u.starting_at) for u in contract.usage_filter_updates if u.starting_at],
    }
    current = contract.usage_filter if now is None else contract.usage_filter_at(now)
    if current is not None:
        body["current"] = _filter_json(current, current.starting_at or contract.starting_at)
    return body


def usage_filters_v2_json(contract: Contract) -> list[dict]:
    """v2's usage_filter: each filter over its time, the last until the contract ends."""
    found = []
    for start, end, usage_filter in contract.usage_filter_windows():
        if usage_filter is None or start is None:
            continue
        body = _filter_json(usage_filter, start)
        end = end if end is not None else contract.ending_before
        if end is not None:
            body["ending_before"] = format_rfc3339(end)
        found.append(body)
    return found


def quantity_history_json(history: dict) -> dict:
    return {
        "subscription_id": history["subscription_id"],
        "fiat_credit_type_id": history["fiat_credit_type_id"],
        "history": [
            {
                "starting_at": format_rfc3339(h["starting_at"]),
                "data": [
                    {"quantity": h["quantity"], "unit_price": h["unit_price"], "total": h["quantity"] * h["unit_price"]}
                ],
            }
            for h in history["history"]
        ],
    }


def seats_history_json(segments: Sequence[SeatSegment]) -> list[dict]:
    return [
        {
            "starting_at": format_rfc3339(segment.starting_at),
            "ending_before": None if segment.ending_before is None else format_rfc3339(segment.ending_before),
            "assigned_seat_ids": list(segment.seats.assigned),
            "total_quantity": segment.seats.total,
        }
        for segment in segments
    ]


def parse_time_param(field: str, value: str | None) -> datetime | None:
    return parse_instant(field, value)
