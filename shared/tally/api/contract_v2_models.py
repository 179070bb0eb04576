"""Contracts on Metronome's v2 surface (/v2/contracts/get, /v2/contracts/list): request bodies, and
the v2 shape (`metronome-sdk` types/shared/contract_v2.py) mapped from the v1 JSON of the same
stored contract, so each part (overrides, subscriptions, scheduled charges) has one serializer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from tally.api.contract_models import ContractView, contract_json, usage_filters_v2_json
from tally.services.contract_billing_providers import contract_fields as billing_provider_fields
from tally.api.models import Request, parse_instant
from tally.api.spend_tracker_models import royalties_v2_json
from tally.billing.errors import InvalidInput
from tally.billing.pricing import Contract, Product

# v1 terms (`initial`/`current`) that v2 puts on the contract itself.
_TERMS = (
    "starting_at", "ending_before", "name", "created_at", "created_by", "rate_card_id", "overrides",
    "scheduled_charges", "usage_statement_schedule", "multiplier_override_prioritization",
    "net_payment_terms_days", "netsuite_sales_order_id", "salesforce_opportunity_id", "total_contract_value",
    "commits", "credits", "discounts", "transitions", "professional_services", "recurring_commits", "recurring_credits",
    "spend_threshold_configuration", "prepaid_balance_threshold_configuration", "spend_trackers",
    "hierarchy_configuration",
)
# Whole-contract fields, the same in v1 and v2.
_CONTRACT = ("id", "customer_id", "custom_fields", "subscriptions", "archived_at", "uniqueness_key",
             "scheduled_charges_on_usage_invoices")


class ContractV2Get(Request):
    model_config = ConfigDict(extra="forbid")

    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    as_of_date: str | None = None
    include_balance: bool = False
    include_ledgers: bool = False

    def validated(self) -> ContractV2Get:
        if self.as_of_date is not None:
            if self.include_ledgers:
                raise InvalidInput("as_of_date", "cannot be combined with include_ledgers")
            parse_instant("as_of_date", self.as_of_date)
        return self

    def as_of(self) -> datetime | None:
        """The instant to show the contract as of (services/contract_edits.ContractEditService.as_of)."""
        return parse_instant("as_of_date", self.as_of_date)


class ContractV2List(Request):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1)
    covering_date: str | None = None
    starting_at: str | None = None
    include_archived: bool = False
    include_balance: bool = False
    include_ledgers: bool = False
    cursor: str | None = None
    limit: int = Field(default=20, ge=1, le=20)

    def filters(self) -> tuple[datetime | None, datetime | None]:
        """(covering_date, starting_at), of which at most one is given."""
        if self.covering_date is not None and self.starting_at is not None:
            raise InvalidInput("covering_date", "cannot be combined with starting_at")
        return parse_instant("covering_date", self.covering_date), parse_instant("starting_at", self.starting_at)


def contract_v2_json(
    doc: dict, contract: Contract, products: dict[str, Product], view: ContractView | None = None
) -> dict:
    """Metronome's ContractV2: the v1 contract's current terms, flattened onto the contract."""
    v1 = contract_json(doc, contract, products, view)
    body: dict[str, Any] = {name: v1["current"][name] for name in _TERMS if name in v1["current"]}
    body |= {name: v1[name] for name in _CONTRACT if name in v1}
    body |= {
        "usage_filter": usage_filters_v2_json(contract),
        # Every commit and credit is in the lists above.
        "has_more": {"commits": False, "credits": False},
    }
    if doc.get("reseller_royalties"):
        body["reseller_royalties"] = royalties_v2_json(doc["reseller_royalties"])
    body |= billing_provider_fields(doc, view.now if view is not None else None)
    return body
