"""Commits and credits ("grants"): what a customer may burn down, when, on which usage, and at what cost.

Shapes follow metronome-sdk's `Commit` and `Credit` (contract_create_params.py, shared/commit.py):
an access schedule of segments [starting_at, ending_before), each granting an amount; an invoice
schedule (prepaid commits: what the customer pays, none = complimentary; postpaid commits: the
single true-up item); filters by product id, product tag or specifier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from enum import Enum
from typing import Collection, Mapping

from tally.billing.errors import InvalidInput
from tally.billing.pricing.money import PRICING_CONTEXT, CreditType
from tally.billing.pricing.periods import Frequency, grid_point
from tally.billing.pricing.validation import as_decimal, aware, non_negative, window


class GrantKind(str, Enum):
    PREPAID = "PREPAID"
    POSTPAID = "POSTPAID"
    CREDIT = "CREDIT"


class CommitRateType(str, Enum):
    """Which price a draw spends. The SDK documents no default and the create response may omit it;
    we take LIST_RATE, because a commit rate is an opt-in "distinct rate on the rate card"."""

    COMMIT_RATE = "COMMIT_RATE"
    LIST_RATE = "LIST_RATE"


GroupValues = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Application:
    """A segment paying for (part of) a charge."""

    grant_id: str
    segment_id: str
    kind: GrantKind
    amount: Decimal  # list amount of the charge covered, positive
    balance_consumed: Decimal  # what the segment's balance went down by (differs under COMMIT_RATE)
    reduces_total: bool  # False for postpaid commits: recorded, paid in arrears


@dataclass(frozen=True, slots=True)
class Specifier:
    """Matches usage when every part it names matches (an absent part matches anything)."""

    product_id: str | None = None
    product_tags: tuple[str, ...] = ()  # the product must carry all of them
    pricing_group_values: GroupValues | None = None
    presentation_group_values: GroupValues | None = None


@dataclass(frozen=True, slots=True)
class AccessSegment:
    id: str
    amount: Decimal
    starting_at: datetime  # inclusive, hour-aligned
    ending_before: datetime  # exclusive, hour-aligned
    # Where what this segment rolls over lasts until (recurring grants: the next recurrence's end).
    rollover_ending_before: datetime | None = None

    def covers(self, instant: datetime) -> bool:
        return self.starting_at <= instant < self.ending_before

    def rolled_over(self, amount: Decimal) -> AccessSegment:
        """The segment a rollover opens: from this one's end until `rollover_ending_before`, else as
        long as this one. The id derives from this one's, so recomputing a burn-down names it the
        same (manual entries can refer to it)."""
        end = self.rollover_ending_before or self.ending_before + (self.ending_before - self.starting_at)
        return AccessSegment(f"{self.id}:rollover", amount, self.ending_before, end)


@dataclass(frozen=True, slots=True)
class InvoiceItem:
    """One invoice of a commit. `amount` is authoritative; quantity × unit_price, when both are given,
    must equal it (Metronome: an amount alone means unit_price = amount, quantity = 1)."""

    id: str
    timestamp: datetime
    amount: Decimal
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


# Metronome's null credit type: what quantity-based (access_type QUANTITY) balances are counted in.
NO_CREDIT_TYPE = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    kind: GrantKind
    product_id: str  # the FIXED product the commit is invoiced (and named) under
    credit_type_id: str
    access_schedule: tuple[AccessSegment, ...]
    contract_id: str | None = None  # None: customer-level, usable by every contract of the customer
    name: str | None = None
    priority: Decimal | None = None  # lower burns first; None after any number
    applicable_product_ids: tuple[str, ...] = ()
    applicable_product_tags: tuple[str, ...] = ()
    specifiers: tuple[Specifier, ...] = ()
    rate_type: CommitRateType = CommitRateType.LIST_RATE
    rollover_fraction: Decimal | None = None
    invoice_schedule: tuple[InvoiceItem, ...] = ()
    rollover_contract_id: str | None = None  # a renewal's: the contract its rollover segments serve too
    recurring_id: str | None = None  # the recurring commit or credit that made it (overrides may name it)
    # A parent contract's grant: the child contracts it serves too (billing/hierarchy.py, child_access).
    child_contract_ids: frozenset[str] = frozenset()
    # A customer-level grant priced with other customers' charges (a hierarchy's burn-down): its
    # customer's contracts, the only ones it serves. None: every contract priced with it.
    customer_contract_ids: frozenset[str] | None = None
    # access_type QUANTITY: the balance counts units of usage, not money; a charge it pays costs it
    # the charge's quantity (eligibility.spend_price), and its balances are in NO_CREDIT_TYPE.
    by_quantity: bool = False

    @property
    def balance_credit_type_id(self) -> str:
        """What its balances are counted in: its credit type, or units (NO_CREDIT_TYPE)."""
        return NO_CREDIT_TYPE if self.by_quantity else self.credit_type_id

    @property
    def applies_to_all_products(self) -> bool:
        return not (self.applicable_product_ids or self.applicable_product_tags or self.specifiers)

    @property
    def is_free(self) -> bool:
        """A $0 cost basis: credits, and prepaid commits nobody is invoiced for (complimentary)."""
        if self.kind is GrantKind.CREDIT:
            return True
        return self.kind is GrantKind.PREPAID and sum((i.amount for i in self.invoice_schedule), Decimal(0)) == 0

    @property
    def rolls_over(self) -> bool:
        return self.rollover_fraction is not None and self.rollover_fraction > 0

    def renewed_into(self, contract_id: str, at: datetime) -> Grant:
        """A rolling grant of a contract RENEWAL-transitioned at `at` (services/contract_transitions.py):
        its access ends there (a segment starting later is dropped), and `rollover_fraction` of what is
        left then rolls over to serve the renewal until the segment's own end."""
        if not self.rolls_over:
            return self
        segments = []
        for segment in self.access_schedule:
            if segment.starting_at >= at:
                continue
            if segment.ending_before > at:
                segment = replace(segment, ending_before=at, rollover_ending_before=segment.ending_before)
            segments.append(segment)
        return replace(self, access_schedule=tuple(segments), rollover_contract_id=contract_id)

    def segment(self, segment_id: str) -> AccessSegment | None:
        return next((s for s in self.access_schedule if s.id == segment_id), None)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def validate_grant(grant: Grant, known_product_ids: Collection[str], field_prefix: str = "") -> None:
    """Every rule burn-down relies on. Field names are those of the create request under `field_prefix`
    (e.g. "commits[0]"), so the API can return them as they are."""

    def field(name: str) -> str:
        return _join(field_prefix, name)

    if not isinstance(grant.kind, GrantKind):
        raise InvalidInput(field("type"), "must be PREPAID, POSTPAID or CREDIT")
    if grant.product_id not in known_product_ids:
        raise InvalidInput(field("product_id"), "is not a known product")
    if not isinstance(grant.rate_type, CommitRateType):
        raise InvalidInput(field("rate_type"), "must be COMMIT_RATE or LIST_RATE")
    if grant.priority is not None:
        as_decimal(grant.priority, field("priority"))
    if grant.rollover_fraction is not None:
        fraction = as_decimal(grant.rollover_fraction, field("rollover_fraction"))
        if not 0 <= fraction <= 1:
            raise InvalidInput(field("rollover_fraction"), "must be between 0 and 1")
    _validate_filters(grant, known_product_ids, field)
    _validate_access(grant, field)
    _validate_invoices(grant, field)


def _validate_filters(grant: Grant, known_product_ids: Collection[str], field) -> None:
    for index, product_id in enumerate(grant.applicable_product_ids):
        if product_id not in known_product_ids:
            raise InvalidInput(field(f"applicable_product_ids[{index}]"), "is not a known product")
    if grant.specifiers and (grant.applicable_product_ids or grant.applicable_product_tags):
        raise InvalidInput(field("specifiers"), "cannot be used with applicable_product_ids or applicable_product_tags")
    for index, spec in enumerate(grant.specifiers):
        if spec.product_id is not None and spec.product_id not in known_product_ids:
            raise InvalidInput(field(f"specifiers[{index}].product_id"), "is not a known product")
        if not (spec.product_id or spec.product_tags or spec.pricing_group_values or spec.presentation_group_values):
            raise InvalidInput(field(f"specifiers[{index}]"), "must name a product, tags or group values")


def _validate_access(grant: Grant, field) -> None:
    items = grant.access_schedule
    if not items:
        raise InvalidInput(field("access_schedule.schedule_items"), "must hold at least one segment")
    if grant.kind is GrantKind.POSTPAID and len(items) != 1:
        raise InvalidInput(field("access_schedule.schedule_items"), "a POSTPAID commit has exactly one segment")
    seen: set[str] = set()
    for index, segment in enumerate(items):
        prefix = field(f"access_schedule.schedule_items[{index}]")
        if not segment.id or segment.id in seen:
            raise InvalidInput(f"{prefix}.id", "must be a unique, non-empty id")
        seen.add(segment.id)
        window(segment.starting_at, segment.ending_before, f"{prefix}.")
        if segment.ending_before is None:
            raise InvalidInput(f"{prefix}.ending_before", "is required")
        if segment.rollover_ending_before is not None and segment.rollover_ending_before <= segment.ending_before:
            raise InvalidInput(f"{prefix}.ending_before", "a rollover must end after the segment it rolls over from")
        non_negative(segment.amount, f"{prefix}.amount")
    # Overlap is reported on the later-starting segment, by its position in the request.
    ordered = sorted(range(len(items)), key=lambda i: (items[i].starting_at, i))
    for before, after in zip(ordered, ordered[1:]):
        if items[after].starting_at < items[before].ending_before:
            raise InvalidInput(
                field(f"access_schedule.schedule_items[{after}].starting_at"),
                f"overlaps schedule_items[{before}]",
            )


def _validate_invoices(grant: Grant, field) -> None:
    items = grant.invoice_schedule
    if grant.kind is GrantKind.CREDIT and items:
        raise InvalidInput(field("invoice_schedule"), "credits are never invoiced")
    if grant.kind is GrantKind.POSTPAID and len(items) != 1:
        raise InvalidInput(field("invoice_schedule.schedule_items"), "a POSTPAID commit has exactly one invoice item")
    for index, item in enumerate(items):
        prefix = field(f"invoice_schedule.schedule_items[{index}]")
        aware(item.timestamp, f"{prefix}.timestamp")
        amount = non_negative(item.amount, f"{prefix}.amount")
        if item.quantity is not None or item.unit_price is not None:
            if item.quantity is None or item.unit_price is None:
                raise InvalidInput(f"{prefix}.quantity", "quantity and unit_price go together")
            quantity = non_negative(item.quantity, f"{prefix}.quantity")
            unit_price = non_negative(item.unit_price, f"{prefix}.unit_price")
            if PRICING_CONTEXT.multiply(quantity, unit_price) != amount:
                raise InvalidInput(f"{prefix}.amount", "must equal quantity × unit_price")
    if grant.kind is GrantKind.POSTPAID:
        segment, item = grant.access_schedule[0], items[0]
        if item.amount != segment.amount:
            raise InvalidInput(
                field("invoice_schedule.schedule_items[0].amount"), "must equal the access schedule's total amount"
            )
        # The true-up settles what usage did not consume, so it can only be known once access has ended.
        if item.timestamp < segment.ending_before:
            raise InvalidInput(
                field("invoice_schedule.schedule_items[0].timestamp"), "must not be before the access schedule ends"
            )


# --- Recurring invoice schedules --------------------------------------------------------------------


class AmountDistribution(str, Enum):
    DIVIDED = "DIVIDED"  # the amount split evenly across the items, exactly
    DIVIDED_ROUNDED = "DIVIDED_ROUNDED"  # split evenly, each cut down to the credit type's precision
    EACH = "EACH"  # every item carries the whole amount


class RecurringFrequency(str, Enum):
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    SEMI_ANNUAL = "SEMI_ANNUAL"
    ANNUAL = "ANNUAL"

    @property
    def months(self) -> int:
        return {"MONTHLY": 1, "QUARTERLY": 3, "SEMI_ANNUAL": 6, "ANNUAL": 12}[self.value]


@dataclass(frozen=True, slots=True)
class RecurringSchedule:
    """metronome-sdk CommitInvoiceScheduleRecurringSchedule: `amount`, or `unit_price` with `quantity`."""

    amount_distribution: AmountDistribution
    frequency: RecurringFrequency
    starting_at: datetime  # inclusive
    ending_before: datetime  # exclusive
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None


def expand_recurring_schedule(
    schedule: RecurringSchedule,
    id_prefix: str,
    credit_type: CreditType,
    field_prefix: str = "invoice_schedule.recurring_schedule",
) -> tuple[InvoiceItem, ...]:
    """One item per frequency step from starting_at while before ending_before. Steps are counted
    from starting_at (never from the previous item), so a Jan 31 start gives Feb 28, then Mar 31.

    DIVIDED and DIVIDED_ROUNDED split the total (amount, or unit_price × quantity); the last item
    takes the remainder so the items always sum to the total exactly, and each item is shown as
    quantity 1 × its amount. EACH repeats the given amount, or quantity × unit_price, on every item.
    Item ids are f"{id_prefix}:{n}", so re-expanding gives the same ids."""

    def field(name: str) -> str:
        return _join(field_prefix, name)

    if not isinstance(schedule.amount_distribution, AmountDistribution):
        raise InvalidInput(field("amount_distribution"), "must be DIVIDED, DIVIDED_ROUNDED or EACH")
    if not isinstance(schedule.frequency, RecurringFrequency):
        raise InvalidInput(field("frequency"), "must be MONTHLY, QUARTERLY, SEMI_ANNUAL or ANNUAL")
    window(schedule.starting_at, schedule.ending_before, f"{field_prefix}." if field_prefix else "")
    if schedule.ending_before is None:
        raise InvalidInput(field("ending_before"), "is required")
    if schedule.amount is not None:
        if schedule.quantity is not None or schedule.unit_price is not None:
            raise InvalidInput(field("amount"), "give amount, or unit_price with quantity, not both")
        total = non_negative(schedule.amount, field("amount"))
        quantity, unit_price = Decimal(1), total
    else:
        if schedule.quantity is None or schedule.unit_price is None:
            raise InvalidInput(field("amount"), "give amount, or unit_price with quantity")
        quantity = non_negative(schedule.quantity, field("quantity"))
        unit_price = non_negative(schedule.unit_price, field("unit_price"))
        total = PRICING_CONTEXT.multiply(quantity, unit_price)

    # n×months on the monthly grid of the start: grid_point clamps the day within each month.
    instants: list[datetime] = []
    step, start, end = schedule.frequency.months, schedule.starting_at, schedule.ending_before
    while (instant := grid_point(start, Frequency.MONTHLY, len(instants) * step)) < end:
        instants.append(instant)

    def item(n: int, amount: Decimal, q: Decimal = Decimal(1), p: Decimal | None = None) -> InvoiceItem:
        return InvoiceItem(f"{id_prefix}:{n}", instants[n], amount, q, amount if p is None else p)

    if schedule.amount_distribution is AmountDistribution.EACH:
        return tuple(item(n, total, quantity, unit_price) for n in range(len(instants)))
    count = len(instants)
    share = PRICING_CONTEXT.divide(total, Decimal(count))
    if schedule.amount_distribution is AmountDistribution.DIVIDED_ROUNDED:
        # Down, so the last item (total minus the others) can never go negative.
        share = share.quantize(Decimal(1).scaleb(-credit_type.precision), rounding=ROUND_DOWN, context=PRICING_CONTEXT)
    last = PRICING_CONTEXT.subtract(total, PRICING_CONTEXT.multiply(share, Decimal(count - 1)))
    return (*(item(n, share) for n in range(count - 1)), item(count - 1, last))
