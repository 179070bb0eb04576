"""Grant validation (each rule names its field) and recurring invoice schedules."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from tally.billing.balances import (
    AccessSegment,
    AmountDistribution,
    InvoiceItem,
    RecurringFrequency,
    RecurringSchedule,
    Specifier,
    check_manual_entry,
    expand_recurring_schedule,
    validate_grant,
)
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS
from tally.billing.pricing.money import PRICING_CONTEXT
from tests.unit.balances.builders import CATALOG, CREDIT, D, POSTPAID, PREPAID, at, charge, grant, manual

KNOWN = set(CATALOG) | {"fixed"}
SEGMENTS = "commits[0].access_schedule.schedule_items"
INVOICES = "commits[0].invoice_schedule.schedule_items"


def two_segments(**second):
    first = AccessSegment("s0", D(10), at(1), at(2))
    return (first, replace(AccessSegment("s1", D(10), at(2), at(3)), **second))


INVALID = [
    ("an access segment off the hour", grant("g", segments=two_segments(starting_at=at(2) + timedelta(minutes=30))),
     f"{SEGMENTS}[1].starting_at"),
    ("an access segment without a timezone", grant("g", segments=two_segments(starting_at=datetime(2026, 2, 1))),
     f"{SEGMENTS}[1].starting_at"),
    ("a segment ending where it starts", grant("g", segments=two_segments(ending_before=at(2))),
     f"{SEGMENTS}[1].ending_before"),
    ("overlapping segments", grant("g", segments=two_segments(starting_at=at(1, 20))), f"{SEGMENTS}[1].starting_at"),
    ("a negative segment amount", grant("g", segments=two_segments(amount=D(-1))), f"{SEGMENTS}[1].amount"),
    ("a float segment amount", grant("g", segments=two_segments(amount=1.5)), f"{SEGMENTS}[1].amount"),
    ("a segment id used twice", grant("g", segments=two_segments(id="s0")), f"{SEGMENTS}[1].id"),
    ("no access segment at all", replace(grant("g"), access_schedule=()), SEGMENTS),
    ("a postpaid commit with two invoice items",
     grant("g", POSTPAID, invoice_schedule=(InvoiceItem("i0", at(2), D(50)), InvoiceItem("i1", at(3), D(50)))),
     INVOICES),
    ("a postpaid commit without an invoice item", grant("g", POSTPAID, invoice_schedule=()), INVOICES),
    ("a postpaid invoice amount that differs from its access amount",
     grant("g", POSTPAID, invoice_schedule=(InvoiceItem("i0", at(2), D(90)),)), f"{INVOICES}[0].amount"),
    ("a postpaid true-up before access ends",
     grant("g", POSTPAID, invoice_schedule=(InvoiceItem("i0", at(1, 20), D(100)),)), f"{INVOICES}[0].timestamp"),
    ("a postpaid commit with two access segments",
     grant("g", POSTPAID, segments=two_segments(), invoice_schedule=(InvoiceItem("i0", at(3), D(20)),)), SEGMENTS),
    ("a credit with an invoice schedule", grant("g", CREDIT, invoice_schedule=(InvoiceItem("i0", at(1), D(1)),)),
     "commits[0].invoice_schedule"),
    ("a negative invoice amount", grant("g", invoice_schedule=(InvoiceItem("i0", at(1), D(-1)),)),
     f"{INVOICES}[0].amount"),
    ("an invoice amount that is not quantity × unit price",
     grant("g", invoice_schedule=(InvoiceItem("i0", at(1), D(100), D(3), D(30)),)), f"{INVOICES}[0].amount"),
    ("an applicable product that is not in the catalog",
     grant("g", applicable_product_ids=("api", "nope")), "commits[0].applicable_product_ids[1]"),
    ("a specifier naming an unknown product",
     grant("g", specifiers=(Specifier(product_id="nope"),)), "commits[0].specifiers[0].product_id"),
    ("a specifier that names nothing", grant("g", specifiers=(Specifier(),)), "commits[0].specifiers[0]"),
    ("specifiers together with applicable products",
     grant("g", applicable_product_ids=("api",), specifiers=(Specifier(product_id="api"),)), "commits[0].specifiers"),
    ("a rollover fraction above one", grant("g", rollover_fraction=D("1.01")), "commits[0].rollover_fraction"),
    ("a negative rollover fraction", grant("g", rollover_fraction=D("-0.1")), "commits[0].rollover_fraction"),
    ("a commit invoiced under an unknown product", replace(grant("g"), product_id="nope"), "commits[0].product_id"),
    ("a float priority", grant("g", priority=1.0), "commits[0].priority"),
]


@pytest.mark.parametrize("bad,field", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_an_invalid_grant_names_its_field(bad, field):
    with pytest.raises(InvalidInput) as raised:
        validate_grant(bad, KNOWN, "commits[0]")
    assert raised.value.field == field


VALID = [
    ("a paid prepaid commit over two segments", grant("g", segments=two_segments())),
    ("a complimentary prepaid commit", grant("g", paid=False)),
    ("a postpaid commit trued up when access ends", grant("g", POSTPAID)),
    ("a credit limited by tags and rolled over in full",
     grant("g", CREDIT, applicable_product_tags=("compute",), rollover_fraction=D(1))),
    ("a commit with specifiers", grant("g", specifiers=(Specifier(product_tags=("compute",)),))),
    ("an access window in another offset, on the hour",
     grant("g", start=datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))))),
]


@pytest.mark.parametrize("good", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_a_valid_grant_passes(good):
    validate_grant(good, KNOWN, "commits[0]")


def test_without_a_prefix_fields_are_top_level():
    with pytest.raises(InvalidInput) as raised:
        validate_grant(grant("g", rollover_fraction=D(2)), KNOWN)
    assert raised.value.field == "rollover_fraction"


def recurring(distribution, **fields):
    fields = {"amount": D(10000), **fields}
    return RecurringSchedule(
        AmountDistribution(distribution),
        fields.pop("frequency", RecurringFrequency.MONTHLY),
        fields.pop("starting_at", at(1)),
        fields.pop("ending_before", at(4)),
        **fields,
    )


def test_divided_rounded_splits_to_the_precision_and_the_last_item_takes_the_rest():
    items = expand_recurring_schedule(recurring("DIVIDED_ROUNDED"), "rc", USD_CENTS)
    assert [(i.id, i.timestamp, i.amount) for i in items] == [
        ("rc:0", at(1), D("3333.33")),
        ("rc:1", at(2), D("3333.33")),
        ("rc:2", at(3), D("3333.34")),
    ]


def test_divided_splits_exactly_and_sums_to_the_total():
    items = expand_recurring_schedule(recurring("DIVIDED", amount=D(100)), "rc", USD_CENTS)
    third = PRICING_CONTEXT.divide(D(100), D(3))
    assert items[0].amount == items[1].amount == third
    assert PRICING_CONTEXT.add(PRICING_CONTEXT.add(items[0].amount, items[1].amount), items[2].amount) == 100
    assert all(i.quantity == 1 and i.unit_price == i.amount for i in items)


def test_each_repeats_quantity_times_unit_price_on_every_item():
    items = expand_recurring_schedule(
        recurring("EACH", amount=None, quantity=D(2), unit_price=D(50), frequency=RecurringFrequency.QUARTERLY,
                  ending_before=at(12, 31)),
        "rc",
        USD_CENTS,
    )
    assert [(i.timestamp, i.amount, i.quantity, i.unit_price) for i in items] == [
        (at(month), D(100), D(2), D(50)) for month in (1, 4, 7, 10)
    ]


def test_month_steps_count_from_the_start_so_month_ends_do_not_drift():
    items = expand_recurring_schedule(
        recurring("EACH", starting_at=at(1, 31), ending_before=at(5)), "rc", USD_CENTS
    )
    assert [i.timestamp for i in items] == [at(1, 31), at(2, 28), at(3, 31), at(4, 30)]


def test_semi_annual_and_annual_steps():
    semi = expand_recurring_schedule(
        recurring("EACH", frequency=RecurringFrequency.SEMI_ANNUAL, ending_before=at(1, year=2027)), "rc", USD_CENTS
    )
    annual = expand_recurring_schedule(
        recurring("EACH", frequency=RecurringFrequency.ANNUAL, ending_before=at(1, 2, year=2028)), "rc", USD_CENTS
    )
    assert [i.timestamp for i in semi] == [at(1), at(7)]
    assert [i.timestamp for i in annual] == [at(1), at(1, year=2027), at(1, year=2028)]


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"quantity": D(1), "unit_price": D(1)}, "invoice_schedule.recurring_schedule.amount"),
        ({"amount": None}, "invoice_schedule.recurring_schedule.amount"),
        ({"amount": D(-1)}, "invoice_schedule.recurring_schedule.amount"),
        ({"ending_before": at(1)}, "invoice_schedule.recurring_schedule.ending_before"),
    ],
    ids=[
        "an amount and a unit price together",
        "neither an amount nor a unit price",
        "a negative amount",
        "a schedule that ends where it starts",
    ],
)
def test_an_invalid_recurring_schedule_names_its_field(fields, field):
    with pytest.raises(InvalidInput) as raised:
        expand_recurring_schedule(recurring("DIVIDED", **fields), "rc", USD_CENTS)
    assert raised.value.field == field


def check(entry, grants=None, charges=(), entries=()):
    grants = grants or [grant("c", CREDIT, "10")]
    check_manual_entry(entry, grants, charges, entries, CATALOG)


MANUAL_REFUSED = [
    ("a draw larger than the balance at its timestamp", manual("c", -11, at(1, 5)), (), (), "amount"),
    ("a draw larger than what usage left", manual("c", -5, at(1, 20)), [charge("x", 8)], (), "amount"),
    ("a draw that starves a later draw", manual("c", -5, at(1, 3)), (), [manual("c", -6, at(1, 9))], "amount"),
    ("an unknown commit or credit", manual("nope", 1, at(1, 5), segment_id="c/s"), (), (), "id"),
    ("a segment of another grant", manual("c", 1, at(1, 5), segment_id="other"), (), (), "segment_id"),
    ("a timestamp outside the segment", manual("c", 1, at(2)), (), (), "timestamp"),
    ("a float amount", replace(manual("c", 1, at(1, 5)), amount=1.0), (), (), "amount"),
    ("an empty reason", manual("c", 1, at(1, 5), reason=" "), (), (), "reason"),
]


@pytest.mark.parametrize(
    "entry,charges,entries,field", [c[1:] for c in MANUAL_REFUSED], ids=[c[0] for c in MANUAL_REFUSED]
)
def test_a_manual_entry_is_refused_before_it_is_stored(entry, charges, entries, field):
    with pytest.raises(InvalidInput) as raised:
        check(entry, charges=charges, entries=entries)
    assert raised.value.field == field


def test_a_manual_entry_within_the_balance_is_accepted():
    check(manual("c", -2, at(1, 20)), charges=[charge("x", 8)])
    check(manual("c", 5, at(1, 3)), entries=[manual("c", -14, at(1, 9))])


def test_a_manual_entry_may_target_a_rollover_segment():
    grants = [grant("p", PREPAID, "10", rollover_fraction=D(1))]
    check(manual("p", -10, at(2, 5), segment_id="p/s:rollover"), grants=grants)
    with pytest.raises(InvalidInput):
        check(manual("p", D("-10.01"), at(2, 5), segment_id="p/s:rollover"), grants=grants)
