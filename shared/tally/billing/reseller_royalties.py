"""Reseller royalties (Metronome's `reseller_royalties`): the share of a contract's spend on the
named products that goes to a marketplace reseller (AWS or GCP, for products or for professional
services). They describe the reseller's cut when the marketplace bills; they never change a Tally
invoice. A royalty is a list of dated segments per `reseller_type`, stored flat (the shape of v1's
contract), each with the RFC 3339 strings and Decimals the API took.

A change (the edit's `add_reseller_royalties`, an amendment's `reseller_royalties`) names a
reseller_type:
- the contract has no royalty of that type: it starts one, and needs fraction, netsuite_reseller_id,
  starting_at and applicable products, as on contract create;
- a `starting_at` after the latest segment's start: that segment ends there and the next one starts,
  with the latest's terms and the fields the change gives (its end is the change's `ending_before`,
  else the latest's end if that was later);
- no `starting_at`, or the latest's own: the latest segment's terms change in place; `ending_before`
  null removes its end (the SDK: "Use null to indicate that the existing end timestamp should be
  removed").
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.time import is_hour_aligned, parse_rfc3339

RESELLER_TYPES = ("AWS", "AWS_PRO_SERVICE", "GCP", "GCP_PRO_SERVICE")
AWS_FIELDS = ("aws_account_number", "aws_offer_id", "aws_payer_reference_id")
GCP_FIELDS = ("gcp_account_id", "gcp_offer_id")
TERMS = ("fraction", "netsuite_reseller_id", "applicable_product_ids", "applicable_product_tags",
         "reseller_contract_value", *AWS_FIELDS, *GCP_FIELDS)
REQUIRED = ("fraction", "netsuite_reseller_id", "starting_at")
MAX_SEGMENTS = 20  # each up to 2 x 100 product ids and tags: the contract item stays under 400 KB
NEVER = datetime.max.replace(tzinfo=timezone.utc)


def validate_segment(segment: Mapping[str, Any], path: str) -> None:
    """One segment's rules: a fraction from 0 to 1, hour-aligned dates in order, applicable
    products named, and marketplace options of its own reseller_type only."""
    reseller_type = segment["reseller_type"]
    if reseller_type not in RESELLER_TYPES:
        raise InvalidInput(f"{path}.reseller_type", "must be AWS, AWS_PRO_SERVICE, GCP or GCP_PRO_SERVICE")
    for name in REQUIRED:
        if segment.get(name) is None:
            raise InvalidInput(f"{path}.{name}", f"is required to start a {reseller_type} royalty")
    fraction = Decimal(segment["fraction"])
    if not 0 <= fraction <= 1:
        raise InvalidInput(f"{path}.fraction", "must be between 0 and 1")
    if segment.get("reseller_contract_value") is not None and Decimal(segment["reseller_contract_value"]) < 0:
        raise InvalidInput(f"{path}.reseller_contract_value", "must not be negative")
    if not segment.get("applicable_product_ids") and not segment.get("applicable_product_tags"):
        raise InvalidInput(f"{path}.applicable_product_ids", "give at least one of applicable_product_ids or applicable_product_tags")
    start = parse_rfc3339(segment["starting_at"])
    if not is_hour_aligned(start):
        raise InvalidInput(f"{path}.starting_at", "must be on an hour boundary (minutes, seconds and fractions zero)")
    if segment.get("ending_before") is not None:
        end = parse_rfc3339(segment["ending_before"])
        if not is_hour_aligned(end):
            raise InvalidInput(f"{path}.ending_before", "must be on an hour boundary (minutes, seconds and fractions zero)")
        if end <= start:
            raise InvalidInput(f"{path}.ending_before", "must be after starting_at")
    aws = reseller_type.startswith("AWS")
    for name in GCP_FIELDS if aws else AWS_FIELDS:
        if segment.get(name) is not None:
            options = "gcp_options" if aws else "aws_options"
            raise InvalidInput(f"{path}.{options}", f"is not for a {reseller_type} royalty")


def validate_royalties(segments: Sequence[Mapping[str, Any]], path: str = "reseller_royalties") -> None:
    """Every segment, and no two segments of one reseller_type at once."""
    if len(segments) > MAX_SEGMENTS:
        raise InvalidInput(path, f"a contract has at most {MAX_SEGMENTS} reseller royalty segments")
    for index, segment in enumerate(segments):
        validate_segment(segment, f"{path}[{index}]")
    for index, segment in enumerate(segments):
        start, end = _window(segment)
        for other in segments[:index]:
            if other["reseller_type"] != segment["reseller_type"]:
                continue
            other_start, other_end = _window(other)
            if start < (other_end or NEVER) and other_start < (end or NEVER):
                raise InvalidInput(
                    f"{path}[{index}].starting_at",
                    f"overlaps another {segment['reseller_type']} royalty segment (one at a time per reseller_type)",
                )


def _window(segment: Mapping[str, Any]):
    start = parse_rfc3339(segment["starting_at"])
    end = None if segment.get("ending_before") is None else parse_rfc3339(segment["ending_before"])
    return start, end


def apply_change(segments: list[dict], change: Mapping[str, Any], path: str) -> list[dict]:
    """The segments after one change (see the module's docstring); `path`: the change's field.
    Pure: `segments` is not changed."""
    result = copy.deepcopy(segments)
    reseller_type = change["reseller_type"]
    own = [s for s in result if s["reseller_type"] == reseller_type]
    given = {k: copy.deepcopy(v) for k, v in change.items() if k != "reseller_type"}
    if not own:
        segment = {"reseller_type": reseller_type} | {k: v for k, v in given.items() if v is not None}
        validate_segment(segment, path)
        return result + [segment]
    latest = max(own, key=lambda s: parse_rfc3339(s["starting_at"]))
    start = given.get("starting_at")
    if start is not None and parse_rfc3339(start) < parse_rfc3339(latest["starting_at"]):
        raise InvalidInput(
            f"{path}.starting_at",
            f"must not be before the current {reseller_type} segment's starting_at ({latest['starting_at']})",
        )
    if start is None or parse_rfc3339(start) == parse_rfc3339(latest["starting_at"]):
        for name, value in given.items():
            if name == "starting_at":
                continue
            if value is None:
                latest.pop(name, None)
            else:
                latest[name] = value
        validate_segment(latest, path)
        return result
    follower = {k: v for k, v in latest.items() if k != "ending_before"}
    old_end = latest.get("ending_before")
    if old_end is None or parse_rfc3339(old_end) > parse_rfc3339(start):
        latest["ending_before"] = start
        if "ending_before" not in given and old_end is not None:
            follower["ending_before"] = old_end
    follower |= {k: v for k, v in given.items() if v is not None}
    validate_segment(follower, path)
    return result + [follower]
