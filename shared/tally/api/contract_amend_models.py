"""`POST /v1/contracts/amend`, the older form of a contract edit (metronome-sdk
types/v1/contract_amend_params.py): an amendment adds commits, credits, overrides, scheduled
charges, discounts, professional services and reseller royalties from its `starting_at`, and the v1 contract lists it under `amendments`, its parts kept out
of `initial`. Tally applies it as an edit (services/contract_edits.py), so it is in the edit
history, checked against finalized invoices and serialized like any other edit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ConfigDict, Field

from tally.api.contract_edit_models import MAX_PARTS, EditCommitIn, EditCreditIn
from tally.api.contract_models import DiscountIn, OverrideIn, ProfessionalServiceIn, ScheduledChargeIn
from tally.api.spend_tracker_models import ResellerRoyaltyChangeIn
from tally.api.models import MAX_NAME_LENGTH, CustomFields, Request, parse_instant
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH
from tally.billing.time import format_rfc3339

class ContractAmend(Request):
    model_config = ConfigDict(extra="forbid")

    contract_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    starting_at: str
    commits: list[EditCommitIn] | None = Field(default=None, max_length=MAX_PARTS)
    credits: list[EditCreditIn] | None = Field(default=None, max_length=MAX_PARTS)
    overrides: list[OverrideIn] | None = Field(default=None, max_length=MAX_PARTS)
    scheduled_charges: list[ScheduledChargeIn] | None = Field(default=None, max_length=MAX_PARTS)
    custom_fields: CustomFields | None = None
    netsuite_sales_order_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    salesforce_opportunity_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    total_contract_value: Decimal | None = None
    discounts: list[DiscountIn] | None = Field(default=None, max_length=MAX_PARTS)
    professional_services: list[ProfessionalServiceIn] | None = Field(default=None, max_length=MAX_PARTS)
    reseller_royalties: list[ResellerRoyaltyChangeIn] | None = Field(default=None, max_length=MAX_PARTS)

    def changes(self) -> dict:
        """The amendment as edit changes: its parts added, and `amendment` (its start and what it
        records) for the contract's list of amendments."""
        starting_at = parse_instant("starting_at", self.starting_at)
        assert starting_at is not None
        amendment: dict[str, Any] = {"starting_at": format_rfc3339(starting_at)}
        for name in ("custom_fields", "netsuite_sales_order_id", "salesforce_opportunity_id", "total_contract_value"):
            if getattr(self, name) is not None:
                amendment[name] = getattr(self, name)
        changes: dict[str, Any] = {"amendment": amendment}
        if self.overrides:
            changes["add_overrides"] = [o.to_document(f"overrides[{i}]") for i, o in enumerate(self.overrides)]
        if self.scheduled_charges:
            changes["add_scheduled_charges"] = [
                c.to_document(f"scheduled_charges[{i}]") for i, c in enumerate(self.scheduled_charges)
            ]
        if self.commits:
            changes["add_commits"] = [c.to_document(f"commits[{i}].") for i, c in enumerate(self.commits)]
        if self.credits:
            changes["add_credits"] = [c.to_document(f"credits[{i}].") for i, c in enumerate(self.credits)]
        if self.discounts:
            changes["add_discounts"] = [d.to_document(f"discounts[{i}]") for i, d in enumerate(self.discounts)]
        if self.professional_services:
            changes["add_professional_services"] = [
                p.to_document(f"professional_services[{i}]") for i, p in enumerate(self.professional_services)
            ]
        if self.reseller_royalties:
            # Applied as the edit's add_reseller_royalties; the amendment lists them as given.
            changes["add_reseller_royalties"] = [
                r.to_change(f"add_reseller_royalties[{i}]") for i, r in enumerate(self.reseller_royalties)
            ]
            amendment["reseller_royalties"] = changes["add_reseller_royalties"]
        return changes


def amend_field(field: str) -> str:
    """An edit's request field named as the amend request names it (`add_overrides[0]` is
    `overrides[0]`)."""
    return field[len("add_"):] if field.startswith("add_") else field
