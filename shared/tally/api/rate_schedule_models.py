"""Rate schedules on the API: a rate card's rates over time (getRateSchedule) and a contract's
effective prices (getContractRateSchedule). Shapes: metronome-sdk's
types/v1/contracts/rate_card_retrieve_rate_schedule_* and types/v1/contract_retrieve_rate_schedule_*."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from tally.api.catalog_models import SelectorIn, rate_json, rate_scope_json
from tally.api.models import Request, parse_instant
from tally.billing.pricing.rate_schedules import RateSelector, ScheduledPrice
from tally.billing.pricing.rates import Rate
from tally.billing.time import format_rfc3339
from tally.services.catalog import ProductRecord


class _Schedule(Request):
    selectors: list[SelectorIn] | None = Field(default=None, max_length=100)

    def rate_selectors(self) -> list[RateSelector]:
        return [s.to_domain() for s in self.selectors or ()]


class RateCardScheduleGet(_Schedule):
    rate_card_id: str = Field(min_length=1)
    starting_at: str
    ending_before: str | None = None

    def window(self) -> tuple[datetime, datetime | None]:
        starting_at = parse_instant("starting_at", self.starting_at)
        assert starting_at is not None
        return starting_at, parse_instant("ending_before", self.ending_before)


class ContractScheduleGet(_Schedule):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    at: str | None = None

    def instant(self, now: datetime) -> datetime:
        """`at`, or now when not given (as the SDK documents)."""
        return parse_instant("at", self.at) or now


def _commit_rate_json(rate: Rate) -> dict | None:
    return None if rate.commit_price is None else {"rate_type": "FLAT", "price": rate.commit_price}


def _product_fields(record: ProductRecord, at: datetime) -> dict[str, Any]:
    version = record.product.at(at)
    return {
        "product_custom_fields": dict(record.custom_fields),
        "product_id": record.product.id,
        "product_name": version.name,
        "product_tags": list(version.tags),
    }


def rate_card_schedule_json(rate: Rate, record: ProductRecord, starting_at: datetime) -> dict:
    """One rate of the card with its own time (the product as it is when the rate starts, or at
    the schedule's start if later)."""
    body: dict[str, Any] = {
        "entitled": rate.entitled,
        **_product_fields(record, max(rate.starting_at, starting_at)),
        "rate": rate_json(rate),
        "starting_at": format_rfc3339(rate.starting_at),
        **rate_scope_json(rate),
    }
    commit_rate = _commit_rate_json(rate)
    if commit_rate is not None:
        body["commit_rate"] = commit_rate
    return body


def contract_schedule_json(price: ScheduledPrice, record: ProductRecord, rate_card_id: str, at: datetime) -> dict:
    """One segment of a contract's schedule: the list rate, and the override rate when overrides
    change it (in the override's credit type)."""
    list_rate = price.list_rate
    body: dict[str, Any] = {
        "entitled": price.pricing.entitled,
        **_product_fields(record, at),
        "list_rate": rate_json(list_rate),
        "rate_card_id": rate_card_id,
        "starting_at": format_rfc3339(price.starting_at),
    }
    if price.ending_before is not None:
        body["ending_before"] = format_rfc3339(price.ending_before)
    if list_rate.billing_frequency is not None:
        body["billing_frequency"] = list_rate.billing_frequency.value
    if price.pricing_group_values:
        body["pricing_group_values"] = dict(price.pricing_group_values)
    commit_rate = _commit_rate_json(list_rate)
    if commit_rate is not None:
        body["commit_rate"] = commit_rate
    overridden = price.override_rate
    if overridden is not None:
        credit_type = overridden.pricing.credit_type
        rate: dict[str, Any] = {
            "rate_type": overridden.rate_type.value,
            "credit_type": {"id": credit_type.id, "name": credit_type.name},
        }
        if overridden.price is not None:
            rate["price"] = overridden.price
        if overridden.tiers:
            rate["tiers"] = [{"price": t.price, **({"size": t.size} if t.size is not None else {})} for t in overridden.tiers]
        if price.pricing_group_values:
            rate["pricing_group_values"] = dict(price.pricing_group_values)
        if list_rate.is_prorated is not None and overridden.rate_type is list_rate.rate_type:
            rate["is_prorated"] = list_rate.is_prorated
        body["override_rate"] = rate
    return body
