"""Spend trackers (Metronome's contract `spend_trackers`): what a contract has spent on commit
purchases in its current billing period, by source and by whether the purchase was discounted.

- A purchase is an invoice schedule item of one of the contract's PREPAID commits: its amount is
  what the item invoices (after any discount), at its timestamp, in the contract's fiat credit type.
  A commit a threshold crossing bought (threshold billing or auto-recharge) is a THRESHOLD_RECHARGE
  purchase; every other commit (contract create, edits, amendments, recurring commits) is MANUAL.
- A purchase is discounted when its commit's `spend_tracker_attributes.counts_as_discounted` says so
  (a threshold commit says so when its discount_configuration applied).
- A tracker (reset_frequency BILLING_PERIOD) adds up the purchases one of its
  `applicable_spend_specifiers` matches (source, and ANY / DISCOUNTED_ONLY / UNDISCOUNTED_ONLY)
  whose timestamp is in the billing period: [starting_at, ending_before).
- A threshold discount with a `cap` applies to a crossing while its tracker's spend in the period is
  below the cap amount ("the discount stops applying once the spend tracker has accumulated this much
  spend in the billing period").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from tally.billing.errors import InvalidInput
from tally.billing.pricing.periods import Period
from tally.billing.time import parse_rfc3339

SOURCES = ("THRESHOLD_RECHARGE", "MANUAL")
DISCOUNTED = ("ANY", "DISCOUNTED_ONLY", "UNDISCOUNTED_ONLY")
RESET_FREQUENCIES = ("BILLING_PERIOD",)
SPEND_TYPES = ("COMMIT_PURCHASE",)
MAX_TRACKERS = 20  # with their specifiers, a few KB of the contract item (400 KB in all)


@dataclass(frozen=True, slots=True)
class Purchase:
    at: datetime
    amount: Decimal
    source: str  # THRESHOLD_RECHARGE or MANUAL
    discounted: bool


@dataclass(frozen=True, slots=True)
class SpendSpecifier:
    sources: frozenset[str]
    discounted: str = "ANY"

    def matches(self, purchase: Purchase) -> bool:
        if purchase.source not in self.sources:
            return False
        if self.discounted == "DISCOUNTED_ONLY":
            return purchase.discounted
        if self.discounted == "UNDISCOUNTED_ONLY":
            return not purchase.discounted
        return True


@dataclass(frozen=True, slots=True)
class SpendTracker:
    alias: str
    credit_type_id: str
    specifiers: tuple[SpendSpecifier, ...]

    @staticmethod
    def of(doc: Mapping[str, Any]) -> SpendTracker:
        return SpendTracker(
            doc["alias"],
            doc["credit_type_id"],
            tuple(
                SpendSpecifier(frozenset(s["sources"]), s.get("discounted") or "ANY")
                for s in doc["applicable_spend_specifiers"]
            ),
        )

    def spend(self, purchases: Iterable[Purchase], period: Period, fiat_credit_type_id: str) -> Decimal:
        """The tracked spend in `period` (purchases are in the contract's fiat credit type)."""
        if self.credit_type_id != fiat_credit_type_id:
            return Decimal(0)
        return sum(
            (p.amount for p in purchases if period.contains(p.at) and any(s.matches(p) for s in self.specifiers)),
            Decimal(0),
        )


def commit_purchases(commits: Iterable[Mapping[str, Any]]) -> list[Purchase]:
    """The purchases of commit documents (stored, made by recurring commits, or bought by threshold
    crossings: those carry `threshold_workflow_id`)."""
    found = []
    for commit in commits:
        if commit.get("type") != "PREPAID":
            continue  # a POSTPAID commit's invoice is a true-up of what was not used, not a purchase
        source = "THRESHOLD_RECHARGE" if commit.get("threshold_workflow_id") else "MANUAL"
        discounted = bool((commit.get("spend_tracker_attributes") or {}).get("counts_as_discounted"))
        for item in commit.get("invoice_schedule") or ():
            amount = item.get("amount")
            if amount is None:
                amount = Decimal(item["quantity"]) * Decimal(item["unit_price"])
            found.append(Purchase(parse_rfc3339(item["timestamp"]), Decimal(amount), source, discounted))
    return found


def discount_applies(cap_amount: Decimal | None, tracked: Decimal) -> bool:
    """Whether a capped threshold discount still applies, given the tracker's spend so far."""
    return cap_amount is None or tracked < cap_amount


def validate_trackers(trackers: Sequence[Mapping[str, Any]], fiat_credit_type_id: str, path: str = "spend_trackers") -> None:
    """The rules the contract's active trackers keep: aliases unique, known values, and the credit
    type commit purchases are invoiced in (the contract's fiat)."""
    if len(trackers) > MAX_TRACKERS:
        raise InvalidInput(path, f"a contract has at most {MAX_TRACKERS} spend trackers")
    seen: set[str] = set()
    for index, tracker in enumerate(trackers):
        where = f"{path}[{index}]"
        if tracker["alias"] in seen:
            raise InvalidInput(f"{where}.alias", f"{tracker['alias']!r} is the alias of another spend tracker of the contract")
        seen.add(tracker["alias"])
        if tracker["credit_type_id"] != fiat_credit_type_id:
            raise InvalidInput(
                f"{where}.credit_type_id",
                f"must be the contract's fiat credit type ({fiat_credit_type_id}): commit purchases are invoiced in it",
            )
        if tracker["reset_frequency"] not in RESET_FREQUENCIES:
            raise InvalidInput(f"{where}.reset_frequency", "must be BILLING_PERIOD")
        specifiers = tracker["applicable_spend_specifiers"]
        if not specifiers:
            raise InvalidInput(f"{where}.applicable_spend_specifiers", "must name at least one specifier")
        for j, spec in enumerate(specifiers):
            at = f"{where}.applicable_spend_specifiers[{j}]"
            if spec["spend_type"] not in SPEND_TYPES:
                raise InvalidInput(f"{at}.spend_type", "must be COMMIT_PURCHASE")
            if not spec["sources"] or any(s not in SOURCES for s in spec["sources"]):
                raise InvalidInput(f"{at}.sources", "must name THRESHOLD_RECHARGE and/or MANUAL")
            if spec.get("discounted", "ANY") not in DISCOUNTED:
                raise InvalidInput(f"{at}.discounted", "must be ANY, DISCOUNTED_ONLY or UNDISCOUNTED_ONLY")
