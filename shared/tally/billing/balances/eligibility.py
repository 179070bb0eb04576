"""Which usage a grant may pay for, and in which order eligible segments are burned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Mapping

from tally.billing.balances.grants import AccessSegment, Application, CommitRateType, Grant, GrantKind, Specifier


def spend_price(grant: Grant, charge: Charge) -> Decimal | None:
    """What the whole charge costs `grant` when it pays for it, where that differs from its list
    amount (None: the list amount). A COMMIT_RATE grant spends the charge's commit amount, a
    commit-specific override pricing the grant's draw (named, else by the recurring grant that made
    it, else for any grant) replaces either."""
    if grant.by_quantity:  # QUANTITY: the whole charge costs its units (grant_applies_to: known)
        return charge.quantity
    target = grant.rate_type.value
    anyone = by_maker = None
    for grant_id, price_target, total in charge.commit_prices:
        if price_target != target:
            continue
        if grant_id == grant.id:
            return total
        if grant_id is None:
            anyone = total
        elif grant_id == grant.recurring_id:
            by_maker = total
    if by_maker is not None:
        return by_maker
    if anyone is not None:
        return anyone
    return charge.commit_amount if grant.rate_type is CommitRateType.COMMIT_RATE else None


@dataclass(frozen=True, slots=True)
class Charge:
    """One invoice line as burn-down sees it. `key` is unique across the charges of one burn-down."""

    key: str
    invoice_id: str
    contract_id: str
    product_id: str
    product_tags: tuple[str, ...]
    credit_type_id: str
    starting_at: datetime
    ending_before: datetime | None
    amount: Decimal  # the line's rounded total at list price
    commit_amount: Decimal | None = None  # the same line at the rate's commit_rate; None: same as amount
    # (grant id or None for any other grant, "LIST_RATE" or "COMMIT_RATE", the line's total when that
    # grant pays): commit-specific overrides (pricing.lines.CommitPrice)
    commit_prices: tuple[tuple[str | None, str, Decimal], ...] = ()
    pricing_group_values: Mapping[str, str | None] | None = None
    presentation_group_values: Mapping[str, str | None] | None = None
    quantity: Decimal | None = None  # the line's units (what a QUANTITY grant spends); None: unknown
    finalized: bool = False
    # Set once the charge's invoice is finalized: the drawdowns it made then. They are replayed
    # exactly, never recomputed, and draft charges cannot take the money they need (burn_down).
    applications: tuple[Application, ...] | None = None
    # The finalized invoice was voided: the charge draws nothing and its drawdowns show as canceled.
    voided: bool = False

    @property
    def frozen(self) -> bool:
        return self.applications is not None


def _values_match(wanted: Mapping[str, str] | None, actual: Mapping[str, str | None] | None) -> bool:
    return not wanted or all((actual or {}).get(key) == value for key, value in wanted.items())


def _specifier_matches_product(spec: Specifier, product_id: str, tags: Iterable[str]) -> bool:
    return (spec.product_id is None or spec.product_id == product_id) and set(spec.product_tags) <= set(tags)


def _matches_product(grant: Grant, product_id: str, tags: tuple[str, ...]) -> bool:
    """Product-level applicability, group values aside: ids or any listed tag, or any specifier."""
    if grant.applies_to_all_products:
        return True
    if grant.specifiers:
        return any(_specifier_matches_product(spec, product_id, tags) for spec in grant.specifiers)
    return product_id in grant.applicable_product_ids or any(tag in grant.applicable_product_tags for tag in tags)


def grant_applies_to(grant: Grant, charge: Charge) -> bool:
    """Same credit type, a contract the grant serves, and usage its filters admit (time aside)."""
    if grant.credit_type_id != charge.credit_type_id:
        return False
    if grant.by_quantity and charge.quantity is None:
        return False
    if grant.contract_id is not None:
        if charge.contract_id not in (grant.contract_id, grant.rollover_contract_id) and charge.contract_id not in grant.child_contract_ids:
            return False
    elif grant.customer_contract_ids is not None and charge.contract_id not in grant.customer_contract_ids:
        return False
    if grant.specifiers:
        return any(
            _specifier_matches_product(spec, charge.product_id, charge.product_tags)
            and _values_match(spec.pricing_group_values, charge.pricing_group_values)
            and _values_match(spec.presentation_group_values, charge.presentation_group_values)
            for spec in grant.specifiers
        )
    return _matches_product(grant, charge.product_id, charge.product_tags)


def applicable_product_count(grant: Grant, catalog_tags: Mapping[str, tuple[str, ...]]) -> int:
    """How many catalog products the grant could pay for ("all products" is the whole catalog)."""
    return sum(1 for product_id, tags in catalog_tags.items() if _matches_product(grant, product_id, tags))


def segment_edges(grants: Iterable[Grant]) -> frozenset[datetime]:
    """Every instant a segment may open or close, rollover segments included (they may or may not
    open; an extra cut costs nothing). Cutting usage lines here makes "a line draws from the
    segments covering its starting_at" the same as "usage inside the access window draws"."""
    edges: set[datetime] = set()
    for grant in grants:
        for segment in grant.access_schedule:
            edges |= {segment.starting_at, segment.ending_before}
            if grant.rolls_over:
                edges.add(segment.rolled_over(Decimal(0)).ending_before)
    return frozenset(edges)


def burn_rank(grant: Grant, segment: AccessSegment, is_rollover: bool, applicable_products: int) -> tuple:
    """Sort key of a segment among those eligible for a charge; the smallest burns first.

    1. rollover segments first (among them, postpaid before prepaid: Metronome's rule for rollover);
    2. priority ascending, no priority after any number;
    3. $0 cost basis (credits, complimentary prepaid commits) before paid commits;
    4. fewest applicable products in the catalog;
    5. earliest ending_before;  6. earliest starting_at;
    7. grant id, then segment id, so equal ranks still give one answer.
    """
    return (
        0 if is_rollover else 1,
        0 if is_rollover and grant.kind is GrantKind.POSTPAID else 1,
        (0, grant.priority) if grant.priority is not None else (1, Decimal(0)),
        0 if grant.is_free else 1,
        applicable_products,
        segment.ending_before,
        segment.starting_at,
        grant.id,
        segment.id,
    )
