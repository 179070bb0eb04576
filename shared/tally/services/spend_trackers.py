"""Spend trackers in contract documents: stored under `spend_trackers` as the API shows them
(without accumulated_spend, which is measured on every read); contract create takes them, the
edit's `add_spend_trackers` adds some and `archive_spend_trackers` (aliases) moves them to
`archived_spend_trackers`, with the edit's timestamp. The domain is billing/spend_trackers.py.
"""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping

from tally.billing.errors import InvalidInput
from tally.billing.spend_trackers import SpendTracker, commit_purchases, validate_trackers
from tally.billing.thresholds import ThresholdKind
from tally.services.recurring_grants import made_grants

EDIT_KEYS = ("add_spend_trackers", "archive_spend_trackers")


def _add(doc: dict, tracker: dict) -> None:
    doc.setdefault("spend_trackers", []).append(copy.deepcopy(tracker))


def _archive(doc: dict, alias: str, field: str, at: str) -> None:
    active = doc.get("spend_trackers") or []
    tracker = next((t for t in active if t["alias"] == alias), None)
    if tracker is None:
        raise InvalidInput(field, f"{alias!r} is not the alias of a spend tracker of the contract")
    for kind in ThresholdKind:
        cap = ((doc.get(kind.value) or {}).get("discount_configuration") or {}).get("cap")
        if cap is not None and cap.get("spend_tracker_alias") == alias:
            raise InvalidInput(
                field, f"the {kind.value}'s discount cap is measured by {alias!r}; change or remove the cap first"
            )
    doc["spend_trackers"] = [t for t in active if t is not tracker]
    doc.setdefault("archived_spend_trackers", []).append(tracker | {"archived_at": at})


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    """(request field, change) per tracker the record archives or adds: archives first, so an edit
    may archive an alias and add a new tracker under it."""
    at = record["timestamp"]
    for index, alias in enumerate(record.get("archive_spend_trackers") or ()):
        field = f"archive_spend_trackers[{index}]"
        yield field, lambda d, a=alias, f=field: _archive(d, a, f, at)
    for index, tracker in enumerate(record.get("add_spend_trackers") or ()):
        yield f"add_spend_trackers[{index}]", lambda d, t=tracker: _add(d, t)


def request_field(error: InvalidInput, document: dict, record: dict) -> InvalidInput | None:
    """An error naming the edited document's spend_trackers[i] renamed to the add_spend_trackers[j]
    that added it."""
    added = record.get("add_spend_trackers") or []
    if error.field == "spend_trackers" and added:  # too many
        return InvalidInput("add_spend_trackers", error.rule)
    if not error.field.startswith("spend_trackers[") or not added:
        return None
    head, dot, rest = error.field.partition(".")
    position = int(head[len("spend_trackers["):-1])
    trackers = document.get("spend_trackers") or []
    first_added = len(trackers) - len(added)
    if position >= first_added:
        return InvalidInput(f"add_spend_trackers[{position - first_added}]{dot}{rest}", error.rule)
    return None


def validate_spend_tracker_documents(document: Mapping[str, Any], fiat_credit_type_id: str) -> None:
    """The trackers a contract holds, and the caps that name them (services/contracts.py)."""
    trackers = document.get("spend_trackers") or []
    validate_trackers(trackers, fiat_credit_type_id)
    aliases = {t["alias"] for t in trackers}
    for kind in ThresholdKind:
        cap = ((document.get(kind.value) or {}).get("discount_configuration") or {}).get("cap")
        if cap is not None and cap.get("spend_tracker_alias") not in aliases:
            raise InvalidInput(
                f"{kind.value}.discount_configuration.cap.spend_tracker_alias",
                f"{cap.get('spend_tracker_alias')!r} is not the alias of a spend tracker of the contract",
            )


def contract_commits(document: dict, threshold_commits: Iterable[dict], now: datetime | None) -> list[dict]:
    """Every commit of the contract whose purchases a tracker may count: stored, made by its
    recurring commits by `now`, and bought by its threshold crossings (released ones)."""
    return [*(document.get("commits") or ()), *made_grants(document, now)["commits"], *threshold_commits]


def tracked_spend(
    document: dict, contract, alias: str, threshold_commits: Iterable[dict], now: datetime
) -> Decimal:
    """The spend of the contract's tracker `alias` in the billing period holding `now`; 0 outside
    the contract or without that tracker."""
    tracker_doc = next((t for t in document.get("spend_trackers") or () if t["alias"] == alias), None)
    period = contract.period_containing(now)
    if tracker_doc is None or period is None:
        return Decimal(0)
    purchases = commit_purchases(contract_commits(document, threshold_commits, now))
    return SpendTracker.of(tracker_doc).spend(purchases, period, contract.rate_card.fiat_credit_type.id)
