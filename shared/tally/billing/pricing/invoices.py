"""The draft invoice of one billing period of a contract, computed from usage quantities.

Usage lines: for each USAGE product on the rate card and each combination of its group values,
the period is cut wherever the effective price may change (rates, overrides, product versions),
cuts with the same price on both sides are joined again, and each resulting segment is one line:
its quantity is read for exactly that segment, converted, rounded, then priced from the cumulative
quantity already used in the period, so graduated tiers carry across a price change.
Tiers count per product and group values (pricing and presentation alike, as Metronome applies
tiers per presentation group value).

Composite lines price a fraction of the rounded totals of the usage lines they cover, per credit
type. Usage lines of covered products are also cut at the composite's own price changes, so each
lies inside exactly one composite segment.

A product's usage lines are kept as rows of a `UsageRun` (lines.py), made in line order, and
become LineItems only when something asks for them; an invoice's total, subtotal, composites and
JSON read the rows.

Every line is rounded once, by its credit type (money.CreditType). An invoice's total is the sum
of its lines in its own credit type, except postpaid drawdowns (paid in arrears, by the true-up);
its subtotal is the same before applied commits and credits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Mapping, Protocol, Sequence

from tally.billing.pricing.catalog import Product, ProductType, convert_quantity
from tally.billing.pricing.contract_charges import discount_lines, pro_service_lines
from tally.billing.pricing.contracts import Contract, validate_contract
from tally.billing.pricing.lines import (
    CommitPrice,
    LineItem,
    LineItems,
    LinePart,
    LineType,
    UsageRow,
    UsageRun,
    UsageSpan,
    line_from_charge,
)
from tally.billing.pricing.money import PRICING_CONTEXT, CreditType
from tally.billing.pricing.overrides import CommitPricing, EffectivePricing, PriceBook
from tally.billing.pricing.periods import Period
from tally.billing.pricing.pricers import Band, graduated_charge, price_flat, price_percentage
from tally.billing.pricing.rates import split_at
from tally.billing.pricing.usage_filters import FilteredUsage
from tally.billing.pricing.subscriptions import charge_billed_in_advance, scheduled_charge_lines, subscription_lines

GroupValues = Mapping[str, str | None]
ZERO = Decimal(0)


class UsageSource(Protocol):
    """Metered quantities of one customer, as rating reads them (the counters, in production)."""

    def quantity(self, metric_id: str, group_values: GroupValues | None, start: datetime, end: datetime) -> Decimal:
        """The metric's aggregate over [start, end), limited to usage carrying every given group
        value (None: all usage). A key whose value is None matches usage without that property."""
        ...

    def group_values(
        self, metric_id: str, group_keys: Sequence[str], start: datetime, end: datetime
    ) -> Sequence[GroupValues]:
        """Each distinct combination of values of `group_keys` seen in usage over [start, end)."""
        ...


def _quantities_of(usage: UsageSource, metric_id: str, keys: Sequence[str], start: datetime, end: datetime):
    """`usage.quantities(metric_id, group_keys, start, end)`, if the source has it: the aggregate
    over [start, end) of every combination of values of the keys at once, as {values in key order:
    quantity (None: no data)}. An invoice prices thousands of combinations per segment, so a source
    that answers them together saves a call per line. Without it (None), each line asks `quantity`."""
    bulk = getattr(usage, "quantities", None)
    return None if bulk is None else bulk(metric_id, keys, start, end)


class InvoiceType(str, Enum):
    USAGE = "USAGE"  # one per billing period: usage, composite and in-arrears subscription charges
    SCHEDULED = "SCHEDULED"  # one per issue instant: scheduled charges, in-advance subscriptions
    # a hierarchy parent's period: its USAGE invoice and its consolidating children's (billing/consolidation.py)
    USAGE_CONSOLIDATED = "USAGE_CONSOLIDATED"


@dataclass(frozen=True, slots=True)
class Invoice:
    contract_id: str
    customer_id: str
    credit_type: CreditType
    starting_at: datetime
    ending_before: datetime
    line_items: Sequence[LineItem]  # LineItems as rating assembles them; any sequence of lines compares equal
    subtotal: Decimal
    total: Decimal
    status: str = "DRAFT"
    type: InvoiceType = InvoiceType.USAGE
    # Customer hierarchies (billing/consolidation.py): (contract id, customer id) paying the invoice
    # when not its own; billable False when a consolidated invoice bills it instead; a consolidated
    # invoice's constituents, (contract id, customer id, invoice id) each.
    payer: tuple[str, str] | None = None
    billable: bool = True
    constituent_invoices: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Segment:
    start: datetime
    end: datetime
    pricing: EffectivePricing | None
    commit_pricings: tuple[CommitPricing, ...] = ()  # what grants spend, where commit-specific overrides say


def _segments(
    book: PriceBook,
    product: Product,
    start: datetime,
    end: datetime,
    hard: set[datetime],
    pricing_values: GroupValues,
    presentation_values: GroupValues,
) -> list[_Segment]:
    """[start, end) cut where the product's price may change; equal neighbours joined unless a
    hard boundary separates them."""
    version = product.at(start)
    segments: list[_Segment] = []
    specific = book.has_commit_specific
    for a, b in split_at(start, end, book.boundaries(product.id) | hard):
        pricing = book.pricing(product.id, version, a, pricing_values, presentation_values)
        commit = book.commit_pricings(product.id, version, a, pricing_values, presentation_values) if specific else ()
        if segments and segments[-1].pricing == pricing and segments[-1].commit_pricings == commit and a not in hard:
            segments[-1] = _Segment(segments[-1].start, b, pricing, commit)
        else:
            segments.append(_Segment(a, b, pricing, commit))
    return segments


_NO_VALUES: GroupValues = MappingProxyType({})


def _value_order(value: str | None) -> str:
    """Where a group value sorts: no value first, then values in string order."""
    return "" if value is None else "\x01" + value


def _sort_key(values: GroupValues) -> tuple:
    if len(values) == 1:  # the usual case, sorted already: thousands of lines per invoice sort by it
        ((key, value),) = values.items()
        return ((key, _value_order(value)),)
    return tuple(sorted((k, _value_order(v)) for k, v in values.items()))


def build_draft_invoices(
    contract: Contract,
    products: Mapping[str, Product],
    period: Period,
    usage: UsageSource,
    cuts: frozenset[datetime] = frozenset(),
    validate: bool = True,
) -> tuple[Invoice, ...]:
    """One draft invoice per credit type with charges in the period; the rate card's fiat credit
    type always comes first, even when empty.

    `cuts` are extra instants no usage or composite line may straddle (breakdown windows, commit
    segment edges). Tiers still count from the period start, so cutting changes a total only by
    the rounding of the extra lines (each line is rounded once)."""
    if validate:  # False: the caller validated this contract with these products already
        validate_contract(contract, products)
    # A source that measures nothing (a closed period's: its USAGE invoices are stored) prices no
    # usage line, and so no composite line: only the charges that do not depend on usage are made.
    measures_nothing = getattr(usage, "measures_nothing", False)
    if contract.filters_usage:
        usage = FilteredUsage(usage, contract.usage_filter_windows())
    # Usage and subscription lines are priced from the book; a closed period needs it for
    # subscriptions alone.
    book = contract.price_book() if not measures_nothing or contract.subscriptions else None
    start = max(period.starting_at, contract.starting_at)
    end = period.ending_before if contract.ending_before is None else min(period.ending_before, contract.ending_before)
    lines: list[LinePart] = []
    if start < end and book is not None and not measures_nothing:
        on_card = [products[p] for p in sorted(book.timeline.product_ids())]
        composites = [p for p in on_card if p.type is ProductType.COMPOSITE]
        composite_segments = {
            c.id: [
                s
                for a, b in split_at(start, end, c.version_boundaries)
                for s in _segments(book, c, a, b, set(c.version_boundaries) | cuts, {}, {})
            ]
            for c in composites
        }
        shared: dict[tuple, dict[str, str | None]] = {}  # see _shared_values
        prefetch = getattr(usage, "prefetch", None)
        if prefetch is not None:  # a source that can read the spans together: all of them at once
            prefetch(sorted({
                span
                for product in on_card
                if product.type is ProductType.USAGE
                for span in _usage_spans(product, book, start, end, _composite_edges(product, composites, composite_segments) | cuts)
            }))
        usage_runs = [
            run
            for product in on_card
            if product.type is ProductType.USAGE
            for run in _usage_runs(
                product, book, start, end, usage, _composite_edges(product, composites, composite_segments) | cuts, shared
            )
        ]
        lines += usage_runs
        for composite in composites:
            lines += _composite_lines(composite, composite_segments[composite.id], usage_runs, products)
    anchor = contract.billing_anchor
    for subscription in contract.subscriptions:
        product = products[subscription.product_id]
        lines += subscription_lines(subscription, product, book, subscription.anchor(anchor), contract.ending_before, period)
    charge_window = ChargeWindow.of(contract, period)
    for charge in contract.scheduled_charges:
        lines += scheduled_charge_lines(charge, products[charge.product_id], charge_window)
    for discount in contract.discounts:
        lines += discount_lines(discount, products[discount.product_id], period)
    lines += pro_service_lines(contract.professional_services, products, period, contract.rate_card.fiat_credit_type)

    return assemble_invoices(contract, period, lines)


@dataclass(frozen=True)
class ChargeWindow:
    """The scheduled charge timestamps a period bills: its own [start, end), or, when the contract
    consolidates them onto usage invoices, (start, end] (a charge at a period's end goes on that
    period's USAGE invoice), the first period keeping a charge at the contract's start (it ends no
    usage period, so it stays on a SCHEDULED invoice)."""

    starting_at: datetime
    ending_before: datetime
    consolidated: bool = False
    first: bool = False

    @staticmethod
    def of(contract: Contract, period: Period) -> ChargeWindow:
        return ChargeWindow(
            period.starting_at, period.ending_before, contract.scheduled_charges_on_usage_invoices,
            period.starting_at <= contract.starting_at,
        )

    def contains(self, instant: datetime) -> bool:
        if not self.consolidated:
            return self.starting_at <= instant < self.ending_before
        return self.starting_at < instant <= self.ending_before or (self.first and instant == self.starting_at)


def on_usage_invoice(contract: Contract, period: Period, issued: datetime) -> bool:
    """Whether a scheduled or commit charge issued then is billed on the period's USAGE invoice."""
    return contract.scheduled_charges_on_usage_invoices and issued == period.ending_before


def _on_usage_invoice(line: LinePart, contract: Contract, period: Period, issued: datetime) -> bool:
    consolidated = (line.type is LineType.SCHEDULED and line.scheduled_charge_id is not None) or (
        line.type is LineType.COMMIT_PURCHASE
    )
    return consolidated and on_usage_invoice(contract, period, issued)


def _issued_at(line: LinePart, contract: Contract) -> datetime | None:
    """When a line is billed on its own SCHEDULED invoice: scheduled charges at their timestamp and
    in-advance subscription charges when their service starts (subscriptions.billed_in_advance).
    None: on the period's USAGE invoice, like every usage line."""
    if line.scheduled_at is not None:
        return line.scheduled_at
    if line.type is LineType.SCHEDULED:
        return line.starting_at
    if line.type is LineType.SUBSCRIPTION:
        subscription = next(s for s in contract.subscriptions if s.id == line.subscription_id)
        if not subscription.advance_on_usage_invoice and charge_billed_in_advance(
            subscription, subscription.anchor(contract.billing_anchor), line.starting_at
        ):
            return line.starting_at
    return None


def assemble_invoices(contract: Contract, period: Period, lines: Sequence[LinePart]) -> tuple[Invoice, ...]:
    """The period's USAGE invoice (always, even empty) then one SCHEDULED invoice per issue instant.

    Each invoice is in the rate card's fiat credit type. Lines priced in a custom pricing unit stay
    in that unit, and what they add up to is converted to fiat by one `cpu_conversion` line per
    unit, at the card's `credit_type_conversions` rate (rounded once, like every line). A unit
    without a conversion (not creatable through the API) gets an invoice of its own instead."""
    fiat = contract.rate_card.fiat_credit_type
    usage_lines: list[LinePart] = []
    scheduled: dict[datetime, list[LinePart]] = defaultdict(list)
    for line in lines:
        issued = _issued_at(line, contract)
        if issued is None or _on_usage_invoice(line, contract, period, issued):
            usage_lines.append(line)
        else:
            scheduled[issued].append(line)
    invoices = _in_credit_types(
        contract, fiat, usage_lines, InvoiceType.USAGE, period.starting_at, period.ending_before, always=True
    )
    for issued in sorted(scheduled):
        invoices += _in_credit_types(contract, fiat, scheduled[issued], InvoiceType.SCHEDULED, issued, issued)
    return tuple(invoices)


_KIND_ORDER = {
    LineType.USAGE: 0,
    LineType.SUBSCRIPTION: 1,
    LineType.SCHEDULED: 2,
    LineType.COMMIT_PURCHASE: 3,
    LineType.POSTPAID_TRUEUP: 4,
    LineType.APPLIED_COMMIT_OR_CREDIT: 5,
    LineType.CPU_CONVERSION: 6,
}


def _in_credit_types(
    contract: Contract,
    fiat: CreditType,
    lines: Sequence[LinePart],
    type: InvoiceType,
    starting_at: datetime,
    ending_before: datetime,
    always: bool = False,
) -> list[Invoice]:
    conversions = contract.rate_card.credit_type_conversions
    by_credit_type: dict[CreditType, list[LinePart]] = {fiat: []} if always else {}
    for line in lines:
        home = fiat if line.credit_type.id in conversions else line.credit_type
        by_credit_type.setdefault(home, []).append(line)
    invoices = []
    add = PRICING_CONTEXT.add
    for credit_type in sorted(by_credit_type, key=lambda c: (c != fiat, c.name, c.id)):
        items = _in_line_order(by_credit_type[credit_type], contract.rate_card.product_order)
        if credit_type == fiat:
            items += _conversion_lines(items, fiat, conversions, starting_at, ending_before)
        total = subtotal = ZERO
        for line in items:
            # `is` first: lines share their credit type objects, and comparing them field by field is not free.
            if not (line.credit_type is credit_type or line.credit_type == credit_type):
                continue
            if line.counts_in_total:
                total = add(total, line.total)
                if line.type is not LineType.APPLIED_COMMIT_OR_CREDIT:
                    subtotal = add(subtotal, line.total)
        invoices.append(
            Invoice(
                contract.id, contract.customer_id, credit_type, starting_at, ending_before, LineItems(items), subtotal, total,
                type=type,
            )
        )
    return invoices


def _line_order_key():
    """The order of lines within one (kind, name, product): pricing then presentation group values,
    then start, as a key function over lines and usage rows alike.

    The lines of one usage combination share their group value mappings, so each mapping's sort key
    is computed once. Keyed by identity: the lines keep every mapping alive while the key is used."""
    group_orders: dict[int, tuple] = {}

    def group_order(values: GroupValues | None) -> tuple:
        if not values:
            return ()
        found = group_orders.get(id(values))
        if found is None:
            found = group_orders[id(values)] = _sort_key(values)
        return found

    def key(line: LineItem | UsageRow) -> tuple:
        start = line.span.starting_at if type(line) is UsageRow else line.starting_at  # type: ignore[union-attr]
        return group_order(line.pricing_group_values), group_order(line.presentation_group_values), start

    return key


# Adjustments stay after the charges whatever the rate card's product order says.
_UNORDERED_KINDS = frozenset({LineType.CPU_CONVERSION, LineType.POSTPAID_TRUEUP, LineType.APPLIED_COMMIT_OR_CREDIT})


def _in_line_order(lines: Sequence[LinePart], product_order: Sequence[str] = ()) -> list[LinePart]:
    """Lines by kind, name, product, pricing then presentation group values, and start; the
    charges of the products in the rate card's `product_order` first, in that order.

    The same order as one stable sort on that whole key, for less: lines are gathered per (kind,
    name, product) in their given order, those heads are sorted, and a head's lines are sorted by
    the rest of the key only when they are not in order already. A usage run alone in its head is
    in order by construction; one sharing its head with other lines is taken apart into its lines."""
    rest = _line_order_key()
    heads: dict[tuple, list[LinePart]] = {}
    run: list[LinePart] = []
    previous: LinePart | None = None
    for line in lines:
        if type(line) is UsageRun:
            run = heads.setdefault((line.type, line.name, line.product_id), [])
            run.append(line)
            previous = None
            continue
        # `is`: the lines of one product share its name and id objects; equal ones that are not
        # the same object still meet in `heads`.
        if (
            previous is None
            or line.product_id is not previous.product_id
            or line.name is not previous.name
            or line.type is not previous.type
        ):
            run = heads.setdefault((line.type, line.name, line.product_id), [])
        run.append(line)
        previous = line
    ordered: list[LinePart] = []
    rank = {product_id: index for index, product_id in enumerate(product_order)}
    last = len(rank)

    def head_order(h: tuple) -> tuple:
        placed = last if h[0] in _UNORDERED_KINDS else rank.get(h[2], last)
        return placed, _KIND_ORDER[h[0]], h[1].casefold(), h[1], h[2]

    for head in sorted(heads, key=head_order):
        run = heads[head]
        if len(run) == 1:
            ordered += run
            continue
        items: list[LineItem] = []
        for part in run:
            if type(part) is UsageRun:
                items += part.line_items()
            else:
                items.append(part)  # type: ignore[arg-type]
        if not _in_order(items, rest):
            items.sort(key=rest)
        ordered += items
    return ordered


def _in_order(lines: Sequence[LineItem], rest) -> bool:
    """Whether `rest(line)` never decreases along `lines`. Neighbours sharing their group value
    mappings (one combination's segments) compare by start alone."""
    previous_key = None  # rest(previous), when this loop has computed it
    for previous, line in zip(lines, lines[1:]):
        if (
            line.pricing_group_values is previous.pricing_group_values
            and line.presentation_group_values is previous.presentation_group_values
        ):
            if line.starting_at < previous.starting_at:
                return False
            previous_key = None
        else:
            key = rest(line)
            if key < (rest(previous) if previous_key is None else previous_key):
                return False
            previous_key = key
    return True


def _conversion_lines(
    items: Sequence[LinePart],
    fiat: CreditType,
    conversions: Mapping[str, Decimal],
    starting_at: datetime,
    ending_before: datetime,
) -> list[LineItem]:
    spend: dict[CreditType, Decimal] = {}
    for line in items:
        if line.credit_type is not fiat and line.credit_type != fiat and line.counts_in_total:
            spend[line.credit_type] = spend.get(line.credit_type, Decimal(0)) + line.total
    return [
        line_from_charge(
            price_flat(conversions[unit.id], amount),
            type=LineType.CPU_CONVERSION,
            name=f"{unit.name} conversion",
            product_id="",
            product_type=ProductType.FIXED,
            credit_type=fiat,
            starting_at=starting_at,
            ending_before=ending_before,
            converted_credit_type=unit,
        )
        for unit, amount in sorted(spend.items(), key=lambda kv: (kv[0].name, kv[0].id))
        if amount != 0
    ]


def _composite_edges(
    product: Product, composites: Sequence[Product], composite_segments: Mapping[str, list[_Segment]]
) -> set[datetime]:
    """Edges of the composite segments that may cover this product: its lines must not straddle them."""
    edges: set[datetime] = set()
    for composite in composites:
        if any(
            cv.covers(product.id, pv.tags) for cv in composite.versions for pv in product.versions
        ):
            for segment in composite_segments[composite.id]:
                edges.update((segment.start, segment.end))
    return edges


def _shared_values(
    shared: dict[tuple, dict[str, str | None]], keys: tuple[str, ...], values: tuple[str | None, ...]
) -> dict[str, str | None]:
    """{key: value}, one object per keys and values in one invoice build: the lines of every
    product with these group values share it (never changed once made), so what is derived from a
    mapping (its sort key, its JSON) is derived once, by identity."""
    found = shared.get((keys, values))
    if found is None:
        found = shared[(keys, values)] = dict(zip(keys, values))
    return found


def _combinations(
    usage: UsageSource,
    metric: str,
    keys: tuple[str, ...],
    start: datetime,
    end: datetime,
    segment_quantities: dict[tuple[datetime, datetime], Mapping | None],
    shared: dict[tuple, dict[str, str | None]],
) -> list[tuple[tuple[str | None, ...], dict[str, str | None]]]:
    """Each combination of values of `keys` seen in usage over [start, end), with every key
    present, in `_sort_key` order, as (values in key order, {key: value}). A source answering
    `quantities` gives them as its keys (values in key order), and that answer also prices a
    segment spanning the whole window."""
    if not keys:
        return [((), {})]
    found = segment_quantities[(start, end)] = _quantities_of(usage, metric, keys, start, end)
    if found is None:
        combos = sorted(
            ({key: combo.get(key) for key in keys} for combo in usage.group_values(metric, keys, start, end)),
            key=_sort_key,
        )
        found_values = [tuple(combo.values()) for combo in combos]
        return [(values, _shared_values(shared, keys, values)) for values in found_values]
    # `_sort_key` compares (key, value) pairs in key-name order: values in that order compare alike.
    if len(keys) == 1:
        ordered = sorted(found, key=lambda values: _value_order(values[0]))
    else:
        by_name = sorted(range(len(keys)), key=keys.__getitem__)
        ordered = sorted(found, key=lambda values: tuple(_value_order(values[i]) for i in by_name))
    return [(values, _shared_values(shared, keys, values)) for values in ordered]


@dataclass(frozen=True, slots=True)
class _Billed:
    """A billed segment of one pricing class: the span its lines share, and how they are priced."""

    span: UsageSpan
    bands: tuple[Band, ...]
    flat_price: Decimal | None  # the price of every unit, when the bands are one open band
    rounder: tuple  # the credit type's (quantize, quantum)
    commit_price: Decimal | None  # the rate's commit price (COMMIT_RATE commits), if any
    quantities: Mapping[tuple, Decimal | None] | None  # the source's answer for the whole span, if bulk
    # (grant id or None, target, bands) where commit-specific overrides price a grant's draw
    commit_bands: tuple[tuple[str | None, str, tuple[Band, ...]], ...] = ()


# Past this many pricing classes, a product's spans are its every piece between price changes.
_CLASSES_PLANNED = 64


def _usage_spans(
    product: Product, book: PriceBook, start: datetime, end: datetime, hard: set[datetime]
) -> set[tuple[str, datetime, datetime]]:
    """(metric, start, end) of the usage `_usage_runs` asks for over [start, end): each version
    window, then the billed segments of each pricing class in it. What usage turns out to hold
    changes no span, so a source can read them all before pricing starts."""
    spans: set[tuple[str, datetime, datetime]] = set()
    hard = hard | set(product.version_boundaries)
    classes = book.class_representatives(product.id, _CLASSES_PLANNED)
    for window_start, window_end in split_at(start, end, product.version_boundaries):
        metric = product.at(window_start).billable_metric_id
        if metric is None:
            continue
        spans.add((metric, window_start, window_end))
        if classes is None:
            pieces = split_at(window_start, window_end, book.boundaries(product.id) | hard)
            spans.update((metric, a, b) for a, b in pieces)
            continue
        for pricing_values, presentation_values in classes:
            for segment in _segments(book, product, window_start, window_end, hard, pricing_values, presentation_values):
                if segment.pricing is not None and segment.pricing.entitled:
                    spans.add((metric, segment.start, segment.end))
    return spans


def _usage_runs(
    product: Product,
    book: PriceBook,
    start: datetime,
    end: datetime,
    usage: UsageSource,
    hard: set[datetime],
    shared: dict[tuple, dict[str, str | None]],
) -> list[UsageRun]:
    """The product's usage lines over [start, end), as runs (one per name and credit type)."""
    rows: list[UsageRow] = []
    # Cumulative quantity per group values. Versions may change the group keys, so across windows
    # the values are told apart as a set of (key, value); within one window, by the values alone.
    positions: dict = {}
    hard = hard | set(product.version_boundaries)
    windows = split_at(start, end, product.version_boundaries)
    in_order = len(windows) == 1  # rows come by combination, then start: the line order, unless…
    runs: set[tuple[str, CreditType]] = set()
    add, multiply = PRICING_CONTEXT.add, PRICING_CONTEXT.multiply
    for window_start, window_end in windows:
        version = product.at(window_start)
        metric = version.billable_metric_id
        assert metric is not None, "validated USAGE products name a metric"
        keys = version.group_keys
        pricing_key, presentation_key = version.pricing_group_key, version.presentation_group_key
        segment_quantities: dict[tuple[datetime, datetime], Mapping | None] = {}
        combos = _combinations(usage, metric, keys, window_start, window_end, segment_quantities, shared)
        same_keys = tuple(pricing_key) == tuple(keys)
        converts = version.quantity_conversion is not None or version.quantity_rounding is not None
        # …combinations are sorted by all their values in key name order, the order of the pricing
        # group values only when those are all of them.
        in_order = in_order and same_keys and not presentation_key

        def billed(pricing_values: GroupValues, presentation_values: GroupValues) -> list[_Billed]:
            billed_segments = []
            for segment in _segments(book, product, window_start, window_end, hard, pricing_values, presentation_values):
                pricing = segment.pricing
                if pricing is None or not pricing.entitled:
                    continue  # not on the card, or not entitled: the usage is not billed
                span = (segment.start, segment.end)
                if span not in segment_quantities:
                    segment_quantities[span] = _quantities_of(usage, metric, keys, *span)
                bands, credit_type = pricing.bands, pricing.credit_type
                runs.add((version.name, credit_type))
                billed_segments.append(
                    _Billed(
                        UsageSpan(version.name, product.id, credit_type, segment.start, segment.end,
                                  pricing.list_rate if pricing.overridden else None),
                        bands,
                        bands[0].price if len(bands) == 1 and bands[0].end is None else None,
                        credit_type.rounder(),
                        pricing.list_rate.commit_price,
                        segment_quantities[span],
                        tuple((c.grant_id, c.target.value, c.pricing.bands) for c in segment.commit_pricings),
                    )
                )
            return billed_segments

        # Group values mostly share one price (few have a rate or an override of their own), so the
        # window is cut and priced once per pricing class rather than once per combination.
        by_class: dict[tuple, list[_Billed]] = {}
        alike = book.prices_all_values_alike(product.id)
        for group, values in combos:
            pricing_values = (
                values if same_keys else _shared_values(shared, pricing_key, tuple([values[key] for key in pricing_key]))
            )
            presentation_values = (
                _shared_values(shared, presentation_key, tuple([values[key] for key in presentation_key]))
                if presentation_key
                else _NO_VALUES
            )
            pricing_class = () if alike else book.pricing_class(product.id, pricing_values, presentation_values)
            segments = by_class.get(pricing_class)
            if segments is None:
                segments = by_class[pricing_class] = billed(pricing_values, presentation_values)
            position_key = group if len(windows) == 1 else frozenset(values.items())
            shown_pricing = pricing_values if pricing_key else None
            shown_presentation = presentation_values if presentation_key else None
            for segment in segments:
                known = segment.quantities
                if known is None:
                    raw = usage.quantity(metric, values if keys else None, segment.span.starting_at, segment.span.ending_before)
                else:
                    raw = known.get(group) or ZERO
                quantity = convert_quantity(raw, version) if converts else raw
                if quantity == 0:
                    continue
                position = positions.get(position_key, ZERO)
                positions[position_key] = add(position, quantity)
                price = segment.flat_price
                if price is not None:  # graduated_charge's one-price case, without the Charge
                    unit_price, precise, tiers = price, add(ZERO, multiply(quantity, price)), ()
                else:
                    charge = graduated_charge(segment.bands, position, quantity)
                    unit_price, precise, tiers = charge.unit_price, charge.precise_total, charge.tiers
                quantize, quantum = segment.rounder
                commit_price = segment.commit_price
                rows.append(
                    UsageRow(
                        segment.span,
                        shown_pricing,
                        shown_presentation,
                        quantity,
                        unit_price,
                        quantize(precise, quantum),
                        precise,
                        tiers,
                        None if commit_price is None else quantize(multiply(quantity, commit_price), quantum),
                        tuple(
                            CommitPrice(grant_id, target, quantize(graduated_charge(bands, position, quantity).precise_total, quantum))
                            for grant_id, target, bands in segment.commit_bands
                        )
                        if segment.commit_bands
                        else (),
                    )
                )
    if not rows:
        return []
    if not in_order:
        rows.sort(key=_line_order_key())
    if len(runs) == 1:
        return [UsageRun.of(rows)]
    by_run: dict[tuple[str, CreditType], list[UsageRow]] = {}
    for row in rows:
        by_run.setdefault((row.span.name, row.span.credit_type), []).append(row)
    return [UsageRun.of(run_rows) for run_rows in by_run.values()]


def _composite_lines(
    composite: Product, segments: Sequence[_Segment], usage_runs: Sequence[UsageRun], products: Mapping[str, Product]
) -> list[LineItem]:
    # What the usage lines of each span add up to: a composite segment covers whole spans.
    spent: dict[UsageSpan, Decimal] = {}
    for run in usage_runs:
        for row in run.rows:
            spent[row.span] = PRICING_CONTEXT.add(spent.get(row.span, ZERO), row.total)
    lines: list[LineItem] = []
    # Spend already covered in the period, per credit type: tiered percentages graduate over it.
    positions: dict[CreditType, Decimal] = {}
    for segment in segments:
        pricing = segment.pricing
        if pricing is None or not pricing.entitled:
            continue
        version = composite.at(segment.start)
        spend: dict[CreditType, Decimal] = {}
        for span, total in spent.items():
            if segment.start <= span.starting_at and span.ending_before <= segment.end:
                if version.covers(span.product_id, products[span.product_id].at(span.starting_at).tags):
                    spend[span.credit_type] = PRICING_CONTEXT.add(spend.get(span.credit_type, ZERO), total)
        for credit_type in sorted(spend, key=lambda c: (c.name, c.id)):
            if spend[credit_type] == 0:
                continue
            position = positions.get(credit_type, ZERO)
            positions[credit_type] = PRICING_CONTEXT.add(position, spend[credit_type])
            lines.append(
                line_from_charge(
                    price_percentage(pricing.bands, spend[credit_type], position),
                    type=LineType.USAGE,
                    name=version.name,
                    product_id=composite.id,
                    product_type=ProductType.COMPOSITE,
                    credit_type=credit_type,
                    starting_at=segment.start,
                    ending_before=segment.end,
                    list_price=pricing.list_rate if pricing.overridden else None,
                )
            )
    return lines
