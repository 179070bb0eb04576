"""Spend trackers and reseller royalties on the Metronome-compatible API: the request models of
contract create (`spend_trackers`, `reseller_royalties`), the edit (`add_spend_trackers`,
`archive_spend_trackers`, `add_reseller_royalties`) and the amendment (`reseller_royalties`), and
their JSON on v1 and v2 contracts and in the edit history. Field names follow metronome-sdk
(types/v1/contract_create_params.py SpendTracker, ResellerRoyalty; v2/contract_edit_params.py;
shared/contract.py, contract_v2.py, contract_without_amendments.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Iterable, Literal

from pydantic import Field, StringConstraints

from tally.api.balance_models import CommitIn
from tally.api.models import MAX_NAME_LENGTH, Request, parse_instant
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH, MAX_IDS_PER_REQUEST
from tally.billing.reseller_royalties import AWS_FIELDS, GCP_FIELDS, validate_segment
from tally.billing.spend_trackers import MAX_TRACKERS, SpendTracker, commit_purchases
from tally.billing.time import format_rfc3339

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Alias = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
Text = Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH)]
ResellerType = Literal["AWS", "AWS_PRO_SERVICE", "GCP", "GCP_PRO_SERVICE"]


# -- spend trackers ----------------------------------------------------------------------------
class SpendSpecifierIn(Request):
    sources: list[Literal["THRESHOLD_RECHARGE", "MANUAL"]] = Field(min_length=1, max_length=2)
    spend_type: Literal["COMMIT_PURCHASE"]
    discounted: Literal["ANY", "DISCOUNTED_ONLY", "UNDISCOUNTED_ONLY"] | None = None


class SpendTrackerIn(Request):
    alias: Alias
    # 2 sources x 3 discounted filters: more could only repeat one.
    applicable_spend_specifiers: list[SpendSpecifierIn] = Field(min_length=1, max_length=6)
    credit_type_id: Id
    reset_frequency: Literal["BILLING_PERIOD"]

    def to_document(self) -> dict:
        return {
            "alias": self.alias,
            "credit_type_id": self.credit_type_id,
            "reset_frequency": self.reset_frequency,
            "applicable_spend_specifiers": [
                {"sources": list(dict.fromkeys(s.sources)), "spend_type": s.spend_type}
                | ({"discounted": s.discounted} if s.discounted is not None else {})
                for s in self.applicable_spend_specifiers
            ],
        }


def spend_trackers_document(trackers: list[SpendTrackerIn] | None) -> list[dict] | None:
    if not trackers:
        return None
    if len(trackers) > MAX_TRACKERS:
        raise InvalidInput("spend_trackers", f"a contract has at most {MAX_TRACKERS} spend trackers")
    return [t.to_document() for t in trackers]


class SpendTrackerAttributesIn(Request):
    counts_as_discounted: bool


class ContractCommitIn(CommitIn):
    """A contract's commit (create, edit, amend): a commit with `spend_tracker_attributes`
    (immutable after creation; DISCOUNTED_ONLY trackers count its purchases when
    counts_as_discounted)."""

    spend_tracker_attributes: SpendTrackerAttributesIn | None = None

    def to_document(self, path: str = "") -> dict:
        document = super().to_document(path)
        if self.spend_tracker_attributes is not None:
            document["spend_tracker_attributes"] = {"counts_as_discounted": self.spend_tracker_attributes.counts_as_discounted}
        return document


def spend_tracker_json(tracker: dict, commits: Iterable[dict], contract, now: datetime | None) -> dict:
    """SpendTracker, with the spend of the billing period holding `now` (when it is in the
    contract)."""
    body = {
        "alias": tracker["alias"],
        "credit_type_id": tracker["credit_type_id"],
        "reset_frequency": tracker["reset_frequency"],
        "applicable_spend_specifiers": [dict(s) for s in tracker["applicable_spend_specifiers"]],
    }
    period = None if now is None else contract.period_containing(now)
    if period is not None:
        spend = SpendTracker.of(tracker).spend(commit_purchases(commits), period, contract.rate_card.fiat_credit_type.id)
        body["accumulated_spend"] = {
            "amount": spend,
            "period_starting_at": format_rfc3339(period.starting_at),
            "period_ending_before": format_rfc3339(period.ending_before),
        }
    return body


# -- reseller royalties ------------------------------------------------------------------------
class AwsOptionsIn(Request):
    aws_account_number: Text | None = None
    aws_offer_id: Text | None = None
    aws_payer_reference_id: Text | None = None


class GcpOptionsIn(Request):
    gcp_account_id: Text | None = None
    gcp_offer_id: Text | None = None


def _instant(field: str, value: str) -> str:
    instant = parse_instant(field, value)
    assert instant is not None
    return format_rfc3339(instant)


class ResellerRoyaltyChangeIn(Request):
    """The edit's AddResellerRoyalty and the amendment's ResellerRoyalty: a reseller_type and the
    terms that change (billing/reseller_royalties.py apply_change)."""

    reseller_type: ResellerType
    applicable_product_ids: list[Id] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)
    applicable_product_tags: list[Alias] | None = Field(default=None, max_length=MAX_IDS_PER_REQUEST)
    aws_options: AwsOptionsIn | None = None
    gcp_options: GcpOptionsIn | None = None
    ending_before: str | None = None
    fraction: Decimal | None = None
    netsuite_reseller_id: Text | None = None
    reseller_contract_value: Decimal | None = None
    starting_at: str | None = None

    def to_change(self, path: str) -> dict:
        aws = self.reseller_type.startswith("AWS")
        if self.aws_options is not None and not aws:
            raise InvalidInput(f"{path}.aws_options", f"is not for a {self.reseller_type} royalty")
        if self.gcp_options is not None and aws:
            raise InvalidInput(f"{path}.gcp_options", f"is not for a {self.reseller_type} royalty")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise InvalidInput(f"{path}.fraction", "must be between 0 and 1")
        change: dict[str, Any] = {"reseller_type": self.reseller_type}
        if self.starting_at is not None:
            change["starting_at"] = _instant(f"{path}.starting_at", self.starting_at)
        if "ending_before" in self.model_fields_set:  # null: the end is removed
            change["ending_before"] = None if self.ending_before is None else _instant(f"{path}.ending_before", self.ending_before)
        for name in ("fraction", "netsuite_reseller_id", "reseller_contract_value", "applicable_product_ids",
                     "applicable_product_tags"):
            if getattr(self, name) is not None:
                change[name] = getattr(self, name)
        options = self.aws_options or self.gcp_options
        if options is not None:
            change |= {k: v for k, v in options.model_dump().items() if v is not None}
        if len(change) == 1:
            raise InvalidInput(path, "names no change (give starting_at, fraction, ending_before or other terms)")
        return change


class ResellerRoyaltyIn(ResellerRoyaltyChangeIn):
    """Contract create's ResellerRoyalty: a whole segment."""

    fraction: Decimal
    netsuite_reseller_id: Text
    starting_at: str

    def to_document(self, path: str) -> dict:
        segment = {k: v for k, v in self.to_change(path).items() if v is not None}
        validate_segment(segment, path)
        return segment


def reseller_royalties_document(royalties: list[ResellerRoyaltyIn] | None) -> list[dict] | None:
    if not royalties:
        return None
    return [r.to_document(f"reseller_royalties[{i}]") for i, r in enumerate(royalties)]


_SEGMENT_ORDER = ("reseller_type", "fraction", "netsuite_reseller_id", "starting_at", "ending_before",
                  "applicable_product_ids", "applicable_product_tags", *AWS_FIELDS, *GCP_FIELDS, "reseller_contract_value")


def royalty_segment_json(segment: dict) -> dict:
    """v1's ResellerRoyalty (a segment, flat), also the edit history's DataAddResellerRoyalty and
    the amendment's AmendmentResellerRoyalty (a change: fields it leaves out are left out)."""
    return {name: segment[name] for name in _SEGMENT_ORDER if name in segment}


def royalties_v2_json(segments: list[dict]) -> list[dict]:
    """v2's ResellerRoyalty: segments grouped by reseller_type, oldest first."""
    grouped: dict[str, list[dict]] = {}
    for segment in sorted(segments, key=lambda s: s["starting_at"]):
        grouped.setdefault(segment["reseller_type"], []).append(royalty_segment_json(segment))
    return [{"reseller_type": kind, "segments": found} for kind, found in grouped.items()]
