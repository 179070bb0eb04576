"""Packages on the Metronome-compatible API (/v1/packages/*): request bodies and the JSON of a
package. Field names follow `metronome-sdk` (types/v1/package_create_params.py,
package_retrieve_response.py). A package's terms are a contract's with every time an offset from
the contract's start (billing/packages.py resolves them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, Mapping

from pydantic import ConfigDict, Field, model_validator

from tally.api.balance_models import SpecifierIn, credit_type_ref
from tally.api.contract_models import (
    Frequency,
    OverrideSpecifierIn,
    OverrideTierIn,
    OverwriteRateIn,
    ProrationIn,
    SubscriptionRateIn,
)
from tally.api.models import MAX_NAME_LENGTH, CustomFields, Request, parse_instant
from tally.api.recurring_models import (
    AccessAmountIn,
    CommitDurationIn,
    CommitRoundingIn,
    CreditRoundingIn,
    InvoiceAmountIn,
    SeatIncreaseConfigIn,
)
from tally.api.spend_tracker_models import SpendTrackerIn
from tally.api.threshold_models import PrepaidBalanceThresholdConfigurationIn, SpendThresholdConfigurationIn
from tally.billing.errors import InvalidInput
from tally.billing.limits import (
    MAX_ID_LENGTH,
    MAX_PACKAGE_ALIASES,
    MAX_PACKAGE_OFFSET,
    MAX_PACKAGE_PARTS,
    MAX_PACKAGE_SCHEDULE_ITEMS,
    MAX_PACKAGES_PAGE,
)
from tally.billing.pricing import USD_CENTS, Product
from tally.billing.time import format_rfc3339

Unit = Literal["DAYS", "WEEKS", "MONTHS", "YEARS"]


class OffsetIn(Request):
    unit: Unit
    value: int = Field(ge=0)

    @model_validator(mode="after")
    def _within_a_century(self):
        bound = MAX_PACKAGE_OFFSET[self.unit]
        if self.value > bound:
            raise ValueError(f"value must be at most {bound} {self.unit}")
        return self


class AccessItemOffsetIn(Request):
    amount: Decimal
    duration: OffsetIn
    starting_at_offset: OffsetIn


class AccessScheduleOffsetIn(Request):
    schedule_items: list[AccessItemOffsetIn] = Field(min_length=1, max_length=MAX_PACKAGE_SCHEDULE_ITEMS)
    access_type: Literal["SPEND", "QUANTITY"] | None = None
    credit_type_id: str | None = None


class DatedItemIn(Request):
    date_offset: OffsetIn
    quantity: Decimal
    unit_price: Decimal


class InvoiceScheduleOffsetIn(Request):
    schedule_items: list[DatedItemIn] = Field(min_length=1, max_length=MAX_PACKAGE_SCHEDULE_ITEMS)
    credit_type_id: str | None = None
    do_not_invoice: bool | None = None


class ChargeScheduleOffsetIn(Request):
    schedule_items: list[DatedItemIn] = Field(min_length=1, max_length=MAX_PACKAGE_SCHEDULE_ITEMS)
    credit_type_id: str | None = None


class _GrantOffsetIn(Request):
    product_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    access_schedule: AccessScheduleOffsetIn
    applicable_product_ids: list[str] | None = None
    applicable_product_tags: list[str] | None = None
    custom_fields: CustomFields | None = None
    description: str | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    priority: Decimal | None = None
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    specifiers: list[SpecifierIn] | None = None


class PackageCommitIn(_GrantOffsetIn):
    type: Literal["PREPAID", "POSTPAID"]
    invoice_schedule: InvoiceScheduleOffsetIn | None = None
    rollover_fraction: Decimal | None = None
    temporary_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class PackageCreditIn(_GrantOffsetIn):
    pass


class PackageOverrideIn(Request):
    override_specifiers: list[OverrideSpecifierIn] = Field(min_length=1)
    starting_at_offset: OffsetIn
    duration: OffsetIn | None = None
    entitled: bool | None = None
    is_commit_specific: bool | None = None
    multiplier: Decimal | None = None
    overwrite_rate: OverwriteRateIn | None = None
    priority: Decimal | None = None
    target: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    tiers: list[OverrideTierIn] | None = None
    type: Literal["OVERWRITE", "MULTIPLIER", "TIERED"] | None = None


class PackageScheduledChargeIn(Request):
    product_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    schedule: ChargeScheduleOffsetIn
    custom_fields: CustomFields | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)


class PackageSeatConfigIn(Request):
    seat_group_key: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    initial_unassigned_seats: Decimal | None = None


class PackageBillingCycleIn(Request):
    invoice_placement: Literal["ON_SCHEDULED_INVOICE", "ON_USAGE_INVOICE"] | None = None


class PackageSubscriptionIn(Request):
    collection_schedule: Literal["ADVANCE", "ARREARS"]
    proration: ProrationIn
    subscription_rate: SubscriptionRateIn
    billing_cycle_config: PackageBillingCycleIn | None = None
    custom_fields: CustomFields | None = None
    description: str | None = None
    duration: OffsetIn | None = None
    initial_quantity: Decimal | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    quantity_management_mode: Literal["SEAT_BASED", "QUANTITY_ONLY"] | None = None
    seat_config: PackageSeatConfigIn | None = None
    starting_at_offset: OffsetIn | None = None
    temporary_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class PackageSubscriptionConfigIn(Request):
    apply_seat_increase_config: SeatIncreaseConfigIn
    subscription_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    allocation: Literal["INDIVIDUAL", "POOLED"] | None = None


class _RecurringOffsetIn(Request):
    access_amount: AccessAmountIn
    commit_duration: CommitDurationIn
    priority: Decimal
    product_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    starting_at_offset: OffsetIn
    applicable_product_ids: list[str] | None = None
    applicable_product_tags: list[str] | None = None
    description: str | None = None
    duration: OffsetIn | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    proration: Literal["NONE", "FIRST", "LAST", "FIRST_AND_LAST"] | None = None
    rate_type: Literal["COMMIT_RATE", "LIST_RATE"] | None = None
    recurrence_frequency: Literal["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY", "DAILY"] | None = None
    rollover_fraction: Decimal | None = None
    specifiers: list[SpecifierIn] | None = None
    subscription_config: PackageSubscriptionConfigIn | None = None
    temporary_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)


class PackageRecurringCommitIn(_RecurringOffsetIn):
    invoice_amount: InvoiceAmountIn | None = None
    proration_rounding: CommitRoundingIn | None = None


class PackageRecurringCreditIn(_RecurringOffsetIn):
    proration_rounding: CreditRoundingIn | None = None


class PackageUsageScheduleIn(Request):
    frequency: Frequency
    day: Literal["FIRST_OF_MONTH", "CONTRACT_START", "CUSTOM_DATE"] | None = None
    invoice_generation_starting_at_offset: OffsetIn | None = None


class PackageAliasIn(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    starting_at: str | None = None
    ending_before: str | None = None


_Parts = Field(default=None, max_length=MAX_PACKAGE_PARTS)


class PackageCreate(Request):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    aliases: list[PackageAliasIn] | None = Field(default=None, max_length=MAX_PACKAGE_ALIASES)
    billing_provider: Literal["aws_marketplace", "azure_marketplace", "gcp_marketplace", "stripe", "netsuite"] | None = None
    commits: list[PackageCommitIn] | None = _Parts
    contract_name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    credits: list[PackageCreditIn] | None = _Parts
    delivery_method: Literal["direct_to_billing_provider", "aws_sqs", "tackle", "aws_sns"] | None = None
    duration: OffsetIn | None = None
    multiplier_override_prioritization: Literal["LOWEST_MULTIPLIER", "EXPLICIT"] | None = None
    net_payment_terms_days: Decimal | None = None
    overrides: list[PackageOverrideIn] | None = _Parts
    prepaid_balance_threshold_configuration: PrepaidBalanceThresholdConfigurationIn | None = None
    rate_card_alias: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    rate_card_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    recurring_commits: list[PackageRecurringCommitIn] | None = _Parts
    recurring_credits: list[PackageRecurringCreditIn] | None = _Parts
    scheduled_charges: list[PackageScheduledChargeIn] | None = _Parts
    scheduled_charges_on_usage_invoices: Literal["ALL"] | None = None
    spend_threshold_configuration: SpendThresholdConfigurationIn | None = None
    spend_trackers: list[SpendTrackerIn] | None = _Parts
    subscriptions: list[PackageSubscriptionIn] | None = _Parts
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)
    usage_statement_schedule: PackageUsageScheduleIn | None = None

    def terms(self) -> dict:
        """The package's stored terms: the request as sent (Decimals kept), aliases' times canonical."""
        if (self.rate_card_id is None) == (self.rate_card_alias is None):
            raise InvalidInput("rate_card_id", "exactly one of rate_card_id and rate_card_alias is required")
        terms = self.model_dump(exclude_none=True, exclude={"aliases", "uniqueness_key"})
        aliases = []
        for i, alias in enumerate(self.aliases or ()):
            starting_at = parse_instant(f"aliases[{i}].starting_at", alias.starting_at)
            ending_before = parse_instant(f"aliases[{i}].ending_before", alias.ending_before)
            if starting_at is not None and ending_before is not None and ending_before <= starting_at:
                raise InvalidInput(f"aliases[{i}].ending_before", "must be after starting_at")
            if any(a["name"] == alias.name for a in aliases):
                raise InvalidInput(f"aliases[{i}].name", "is given twice")
            aliases.append({"name": alias.name,
                            "starting_at": None if starting_at is None else format_rfc3339(starting_at),
                            "ending_before": None if ending_before is None else format_rfc3339(ending_before)})
        terms["aliases"] = aliases
        return terms


class PackageRef(Request):
    package_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


class PackageList(Request):
    model_config = ConfigDict(extra="ignore")  # the SDK may repeat limit / next_page in the body
    archive_filter: Literal["ARCHIVED", "NOT_ARCHIVED", "ALL"] = "NOT_ARCHIVED"


class ContractsOnPackageList(Request):
    model_config = ConfigDict(extra="ignore")
    package_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    covering_date: str | None = None
    starting_at: str | None = None
    include_archived: bool = False


def page_size(query: Mapping[str, str], default: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not (str(raw).isascii() and str(raw).isdigit()) or not 1 <= int(raw) <= MAX_PACKAGES_PAGE:
        raise InvalidInput("limit", f"must be an integer between 1 and {MAX_PACKAGES_PAGE}")
    return int(raw)


# -- responses ----------------------------------------------------------------------------------
def _product(product_id: str, products: Mapping[str, Product]) -> dict:
    product = products.get(product_id)
    return {"id": product_id, "name": product_id if product is None else product.versions[-1].name}


def _credit_type(credit_type_id: str | None, names: Mapping[str, str]) -> dict:
    return credit_type_ref(credit_type_id or USD_CENTS.id, names)


def _schedule_json(schedule: dict, names: Mapping[str, str], with_invoice_flag: bool = False) -> dict:
    body = {"credit_type": _credit_type(schedule.get("credit_type_id"), names),
            "schedule_items": [dict(item) for item in schedule["schedule_items"]]}
    if with_invoice_flag:
        body["do_not_invoice"] = bool(schedule.get("do_not_invoice"))
    return body


def _grant_json(grant: dict, products: Mapping[str, Product], names: Mapping[str, str]) -> dict:
    body = {k: v for k, v in grant.items() if k not in ("product_id", "access_schedule", "invoice_schedule", "temporary_id")}
    body["product"] = _product(grant["product_id"], products)
    access = grant["access_schedule"]
    body["access_schedule"] = _schedule_json(access, names) | (
        {"access_type": access["access_type"]} if access.get("access_type") else {})
    if grant.get("invoice_schedule") is not None:
        body["invoice_schedule"] = _schedule_json(grant["invoice_schedule"], names, with_invoice_flag=True)
    return body


_TEMPLATE_IDS = {"commit_ids": "commit_template_ids", "recurring_commit_ids": "recurring_commit_template_ids",
                 "any_commit_or_credit_ids": "any_commit_or_credit_template_ids"}


def _override_json(override: dict, products: Mapping[str, Product], names: Mapping[str, str]) -> dict:
    body = {k: v for k, v in override.items() if k not in ("override_specifiers", "tiers", "overwrite_rate")}
    rate = override.get("overwrite_rate")
    if rate is not None:
        body["overwrite_rate"] = {k: v for k, v in rate.items() if k != "credit_type_id"} | {
            "credit_type": _credit_type(rate.get("credit_type_id"), names)}
    body["override_specifiers"] = [{_TEMPLATE_IDS.get(k, k): v for k, v in spec.items()} for spec in override["override_specifiers"]]
    if override.get("tiers"):
        body["override_tiers"] = override["tiers"]
    product_ids = {s.get("product_id") for s in override["override_specifiers"]} - {None}
    if len(product_ids) == 1:
        body["product"] = _product(product_ids.pop(), products)
    return body


def _recurring_json(grant: dict, products: Mapping[str, Product]) -> dict:
    body = {k: v for k, v in grant.items() if k not in ("product_id", "subscription_config", "temporary_id")}
    body["product"] = _product(grant["product_id"], products)
    body["rate_type"] = grant.get("rate_type") or "LIST_RATE"
    body["access_amount"] = {"credit_type_id": USD_CENTS.id} | grant["access_amount"]
    config = grant.get("subscription_config")
    if config is not None:
        body["subscription_config"] = {"allocation": config.get("allocation") or "INDIVIDUAL",
                                       "apply_seat_increase_config": config["apply_seat_increase_config"],
                                       "subscription_template_id": config["subscription_id"]}
    return body


def _subscription_json(sub: dict, products: Mapping[str, Product]) -> dict:
    body = {k: v for k, v in sub.items() if k not in ("subscription_rate", "proration", "temporary_id")}
    rate = sub["subscription_rate"]
    body["subscription_rate"] = {"billing_frequency": rate["billing_frequency"], "product": _product(rate["product_id"], products)}
    proration = sub["proration"]
    behavior = proration.get("invoice_behavior") or (
        "BILL_IMMEDIATELY" if sub["collection_schedule"] == "ADVANCE" else "BILL_ON_NEXT_COLLECTION_DATE")
    body["proration"] = {k: v for k, v in proration.items() if k != "invoice_behavior"} | {"invoice_behavior": behavior}
    return body


def package_json(package: dict, aliases: list[dict], products: Mapping[str, Product], names: Mapping[str, str]) -> dict:
    """Metronome's package (package_retrieve_response.Data); `aliases` its alias windows as the
    alias schedules have them now (a later package may have taken some)."""
    body: dict[str, Any] = {
        "id": package["id"],
        "name": package["name"],
        "created_at": package["created_at"],
        "created_by": package.get("created_by") or "Tally",
        "commits": [_grant_json(c, products, names) for c in package.get("commits") or ()],
        "credits": [_grant_json(c, products, names) for c in package.get("credits") or ()],
        "overrides": [_override_json(o, products, names) for o in package.get("overrides") or ()],
        "scheduled_charges": [
            {k: v for k, v in c.items() if k not in ("product_id", "schedule")}
            | {"product": _product(c["product_id"], products), "schedule": _schedule_json(c["schedule"], names)}
            for c in package.get("scheduled_charges") or ()
        ],
        "subscriptions": [_subscription_json(s, products) for s in package.get("subscriptions") or ()],
        "recurring_commits": [_recurring_json(r, products) for r in package.get("recurring_commits") or ()],
        "recurring_credits": [_recurring_json(r, products) for r in package.get("recurring_credits") or ()],
        "usage_statement_schedule": {
            k: v for k, v in (package.get("usage_statement_schedule") or {"frequency": "MONTHLY"}).items()
            if k != "invoice_generation_starting_at_offset"
        },
        "aliases": [{k: v for k, v in a.items() if v is not None} for a in aliases],
    }
    for name in ("archived_at", "billing_provider", "contract_name", "delivery_method", "duration",
                 "multiplier_override_prioritization", "net_payment_terms_days", "prepaid_balance_threshold_configuration",
                 "rate_card_id", "scheduled_charges_on_usage_invoices", "spend_threshold_configuration", "spend_trackers",
                 "uniqueness_key"):
        if package.get(name) is not None:
            body[name] = package[name]
    return body
