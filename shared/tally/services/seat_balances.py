"""Per-seat balances (POST /v1/contracts/seatBalances/list): the commits and credits a recurring
commit or credit with INDIVIDUAL allocation makes for each seat of a SEAT_BASED subscription
(services/recurring_grants.py), with their balances from the customer's burn-down.

Filters on a grant's access (its segments: from its first start to its last end): `covering_date`
inside it, `starting_at` at or before its start, `effective_before` at or after its start.
Balances are per credit type; QUANTITY grants count units, in Metronome's null credit type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable

from tally.billing.balances.grants import NO_CREDIT_TYPE
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.balances import GrantFigures
from tally.services.recurring_grants import made_grants

ZERO = Decimal(0)


@dataclass(frozen=True)
class SeatWindow:
    covering_date: datetime | None = None
    starting_at: datetime | None = None
    effective_before: datetime | None = None

    def admits(self, start: datetime, end: datetime) -> bool:
        if self.covering_date is not None and not (start <= self.covering_date < end):
            return False
        if self.starting_at is not None and start < self.starting_at:
            return False
        return self.effective_before is None or start <= self.effective_before


def seat_grants(contract: dict, now: datetime, subscription_ids: Iterable[str] | None = None) -> dict[str, list[tuple[str, dict]]]:
    """seat id -> [(kind "commits" or "credits", grant document)] of the contract's per-seat grants
    made by `now` (of the subscriptions named, when given)."""
    wanted = None if subscription_ids is None else set(subscription_ids)
    found: dict[str, list[tuple[str, dict]]] = {}
    for kind, grants in made_grants(contract, now).items():
        for grant in grants:
            seat_id = grant.get("seat_id")
            if seat_id is None:
                continue
            if wanted is not None and grant["subscription_config"]["subscription_id"] not in wanted:
                continue
            found.setdefault(seat_id, []).append((kind, grant))
    return found


def _ledger_json(entries) -> list[dict]:
    return [{"amount": e.amount, "timestamp": format_rfc3339(e.timestamp), "type": e.type.value} for e in entries]


def seat_json(
    seat_id: str,
    grants: list[tuple[str, dict]],
    figures: GrantFigures,
    window: SeatWindow,
    *,
    include_grants: bool,
    include_ledgers: bool,
) -> dict:
    """One seat's entry: its balances per credit type, and, when asked, its commits and credits."""
    totals: dict[tuple[str, str], list[Decimal]] = {}
    shown: dict[str, list[dict]] = {"commits": [], "credits": []}
    for kind, grant in grants:
        segments = grant["access_schedule"]
        start = min(parse_rfc3339(s["starting_at"]) for s in segments)
        end = max(parse_rfc3339(s["ending_before"]) for s in segments)
        if not window.admits(start, end):
            continue
        quantity = grant.get("access_type") == "QUANTITY"
        access_type = "QUANTITY" if quantity else "SPEND"
        credit_type_id = NO_CREDIT_TYPE if quantity else grant["credit_type_id"]
        balance = figures.balance(grant["id"]) or ZERO
        total = totals.setdefault((credit_type_id, access_type), [ZERO, ZERO])
        total[0] += balance
        total[1] += sum((Decimal(s["amount"]) for s in segments), ZERO)
        body: dict[str, Any] = {
            "id": grant["id"],
            "balance": balance,
            "start_date": format_rfc3339(start),
            "end_date": format_rfc3339(end),
            "access_type": access_type,
            "credit_type_id": credit_type_id,
        }
        if include_ledgers:
            body["ledger_entries"] = _ledger_json(figures.ledger(grant["id"]) or ())
        shown[kind].append(body)
    entry: dict[str, Any] = {
        "seat_id": seat_id,
        "balances": [
            {"credit_type_id": credit_type_id, "access_type": access_type, "balance": b, "starting_balance": s}
            for (credit_type_id, access_type), (b, s) in sorted(totals.items())
        ],
    }
    if include_grants:
        entry |= shown
    return entry
