"""Draft invoices: usage, composite, subscription and scheduled lines, checked to the cent by hand.

Prices are in USD (cents): a price of 10 is $0.10. Line totals keep two places of a cent.
Unless a case says otherwise: contract from 2026-01-01, monthly periods, the January invoice.
"""

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.billing.pricing import (
    USD_CENTS,
    CollectionSchedule,
    ConversionOperation,
    CreditType,
    Frequency,
    InvoiceType,
    LineType,
    Override,
    OverrideSpecifier,
    OverrideType,
    OverwriteRate,
    Period,
    ProductType,
    QuantityChange,
    QuantityConversion,
    QuantityRounding,
    Rate,
    RateCard,
    RateType,
    Contract,
    RoundingMethod,
    ScheduledCharge,
    ScheduleItem,
    Subscription,
    build_draft_invoices,
)
from tests.unit.pricing.builders import (
    FEB, JAN, D, FakeUsage, all_invoices, all_lines, at, catalog, contract, flat, invoice, product, summary, tiered,
)

API = product("api", name="API calls", tags=("billable",))


def usage(*events):
    """events: (when, value) or (when, value, {properties})"""
    fake = FakeUsage()
    for event in events:
        fake.add(event[0], event[1], **(event[2] if len(event) > 2 else {}))
    return fake


USAGE_CASES = [
    ("a flat price over the whole period is one line",
     [API], [flat("api", "0.25")], usage((at(1, 3), 1000), (at(1, 20), 234)),
     [("api", "01-01T00", D(1234), D("308.50"))]),
    ("usage outside the period is not on the invoice",
     [API], [flat("api", 2)], usage((at(12, 31, 23, year=2025), 7), (at(1, 31, 23), 5), (at(2, 1), 9)),
     [("api", "01-01T00", D(5), D("10.00"))]),
    ("a rate change mid-period splits usage at the hour",
     [API], [flat("api", 10, end=at(1, 15, 12)), flat("api", 12, start=at(1, 15, 12))],
     usage((at(1, 15, 11, minute=59), 100), (at(1, 15, 12), 50)),
     [("api", "01-01T00", D(100), D("1000.00")), ("api", "01-15T12", D(50), D("600.00"))]),
    ("graduated tiers span three tiers in one line",
     [API], [tiered("api", [(10, 100), (5, 900), (1,)])], usage((at(1, 2), 1500)),
     [("api", "01-01T00", D(1500), D("6000.00"))]),
    ("graduated tiers carry the period's cumulative usage across a rate change",
     [API], [tiered("api", [(10, 100), (5,)], end=at(1, 15)), tiered("api", [(8, 100), (4,)], start=at(1, 15))],
     usage((at(1, 2), 80), (at(1, 20), 50)),
     [("api", "01-01T00", D(80), D("800.00")), ("api", "01-15T00", D(50), D("280.00"))]),
    ("quantity is converted, then rounded up, then priced",
     [product("api", quantity_conversion=QuantityConversion(D(1024), ConversionOperation.DIVIDE),
              quantity_rounding=QuantityRounding(0, RoundingMethod.ROUND_UP))],
     [flat("api", 100)], usage((at(1, 2), 3000)),
     [("api", "01-01T00", D(3), D("300.00"))]),
    ("quantity is multiplied, then rounded half up to two places",
     [product("api", quantity_conversion=QuantityConversion(D("0.001"), ConversionOperation.MULTIPLY),
              quantity_rounding=QuantityRounding(2, RoundingMethod.ROUND_HALF_UP))],
     [flat("api", 10)], usage((at(1, 2), 12345)),
     [("api", "01-01T00", D("12.35"), D("123.50"))]),
    ("group values are priced by their own rate, or the default one",
     [product("api", pricing_group_key=("region",))],
     [flat("api", 10), flat("api", 12, pricing_group_values={"region": "us-east"})],
     usage((at(1, 2), 10, {"region": "us-east"}), (at(1, 3), 5, {"region": "eu"})),
     [("api", "01-01T00", D(5), D("50.00")), ("api", "01-01T00", D(10), D("120.00"))]),
    ("presentation groups split lines and each counts its own tiers",
     [product("api", presentation_group_key=("project",))], [tiered("api", [(10, 100), (5,)])],
     usage((at(1, 2), 150, {"project": "p1"}), (at(1, 3), 50, {"project": "p2"})),
     [("api", "01-01T00", D(150), D("1250.00")), ("api", "01-01T00", D(50), D("500.00"))]),
    ("a product not entitled is not billed",
     [API], [flat("api", 10, entitled=False)], usage((at(1, 2), 100)), []),
]


@pytest.mark.parametrize("products,rates,events,lines", [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES])
def test_usage_lines(products, rates, events, lines):
    draft = invoice(contract(*rates), catalog(*products), events)
    assert summary(draft) == lines
    assert draft.total == draft.subtotal == sum((l.total for l in draft.line_items), D(0))


MODELS = product("llm", billable_metric_id="tokens", pricing_group_key=("model",), presentation_group_key=("project",))


def test_models_on_the_default_rate_share_a_price_without_sharing_it_with_models_priced_on_their_own():
    """Given models on the default rate priced first (m-a, m-z), a model with its own rate (m-big), one
    with a multiplier on its pricing group value from the 15th (m-half) and a project with an
    overwrite on its presentation group value (p-free), each is priced by its own rule."""
    half = Override("half", at(1, 15), type=OverrideType.MULTIPLIER, multiplier=D("0.5"),
                    override_specifiers=(OverrideSpecifier(pricing_group_values={"model": "m-half"}),))
    free = Override("free", at(1, 1), type=OverrideType.OVERWRITE, overwrite_rate=OverwriteRate(RateType.FLAT, D(1)),
                    override_specifiers=(OverrideSpecifier(presentation_group_values={"project": "p-free"}),))
    rates = (flat("llm", 10), flat("llm", 20, pricing_group_values={"model": "m-big"}))
    fake = FakeUsage()
    for when, model, project in [(at(1, 2), "m-a", "p1"), (at(1, 3), "m-a", "p-free"), (at(1, 4), "m-big", "p1"),
                                 (at(1, 5), "m-half", "p1"), (at(1, 20), "m-half", "p1"), (at(1, 6), "m-z", "p1")]:
        fake.add(when, 10, metric="tokens", model=model, project=project)

    draft = invoice(contract(*rates, overrides=(half, free)), catalog(MODELS), fake)

    assert [
        (l.pricing_group_values["model"], l.presentation_group_values["project"], l.starting_at.strftime("%m-%dT%H"),
         l.total, l.list_price is not None)
        for l in draft.line_items
    ] == [
        ("m-a", "p-free", "01-01T00", D("10.00"), True),
        ("m-a", "p1", "01-01T00", D("100.00"), False),  # the override edge on the 15th does not cut it
        ("m-big", "p1", "01-01T00", D("200.00"), False),
        ("m-half", "p1", "01-01T00", D("100.00"), False),
        ("m-half", "p1", "01-15T00", D("50.00"), True),
        ("m-z", "p1", "01-01T00", D("100.00"), False),
    ]


def test_a_contract_starting_mid_period_bills_usage_only_from_its_start():
    draft = invoice(contract(flat("api", 1), start=at(1, 10)), catalog(API), usage((at(1, 9, 23), 40), (at(1, 10), 2)))
    assert summary(draft) == [("api", "01-10T00", D(2), D("2.00"))]
    assert (draft.line_items[0].starting_at, draft.line_items[0].ending_before) == (at(1, 10), at(2, 1))


def test_a_tiered_line_details_its_tiers_from_the_cumulative_position():
    products = catalog(API)
    rates = (tiered("api", [(10, 100), (5,)], end=at(1, 15)), tiered("api", [(8, 100), (4,)], start=at(1, 15)))
    draft = invoice(contract(*rates), products, usage((at(1, 2), 80), (at(1, 20), 50)))
    second = draft.line_items[1]
    assert second.unit_price is None
    [sub] = second.sub_line_items
    assert [(t.starting_at, t.quantity, t.price, t.subtotal) for t in sub.tiers] == [(0, 20, 8, 160), (100, 30, 4, 120)]


def test_an_override_ending_mid_period_splits_the_line_and_records_the_list_price():
    half = Override("half", at(1, 1), at(1, 10), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D("0.5"))
    draft = invoice(contract(flat("api", 10), overrides=(half,)), catalog(API), usage((at(1, 5), 100), (at(1, 20), 100)))
    assert summary(draft) == [("api", "01-01T00", D(100), D("500.00")), ("api", "01-10T00", D(100), D("1000.00"))]
    assert [l.unit_price for l in draft.line_items] == [D(5), D(10)]
    assert draft.line_items[0].list_price == flat("api", 10) and draft.line_items[1].list_price is None


def test_an_entitlement_override_bills_a_product_off_the_card():
    on = Override("on", at(1, 1), product_id="api", entitled=True)
    draft = invoice(contract(flat("api", 10, entitled=False), overrides=(on,)), catalog(API), usage((at(1, 2), 3)))
    assert summary(draft) == [("api", "01-01T00", D(3), D("30.00"))]
    assert draft.line_items[0].list_price is None


STORAGE = product("storage", billable_metric_id="gb", tags=("billable",))
INTERNAL = product("internal", billable_metric_id="internal")
SUPPORT = product("support", ProductType.COMPOSITE, name="Support", composite_tags=("billable",))


def percentage(fraction, start=at(1, 1, year=2025), end=None):
    return Rate("support", start, RateType.PERCENTAGE, price=D(fraction), ending_before=end)


def test_a_composite_line_prices_a_fraction_of_the_spend_it_covers():
    events = usage((at(1, 2), 1000), (at(1, 3), 100))
    events.add(at(1, 4), 7, metric="gb").add(at(1, 4), 1, metric="internal")
    rates = (flat("api", "0.333"), flat("storage", "1.5"), flat("internal", 100), percentage("0.1"))
    draft = invoice(contract(*rates), catalog(API, STORAGE, INTERNAL, SUPPORT), events)
    assert summary(draft) == [
        ("api", "01-01T00", D(1100), D("366.30")),
        ("internal", "01-01T00", D(1), D("100.00")),
        ("storage", "01-01T00", D(7), D("10.50")),
        ("support", "01-01T00", D("376.80"), D("37.68")),  # 10% of 366.30 + 10.50; internal is not billable
    ]
    composite = draft.line_items[-1]
    assert composite.product_type is ProductType.COMPOSITE and composite.unit_price == D("0.1")
    assert draft.total == D("514.48")


def test_a_composite_rate_change_splits_the_lines_it_covers():
    rates = (flat("api", 1), percentage("0.1", end=at(1, 15)), percentage("0.2", start=at(1, 15)))
    draft = invoice(contract(*rates), catalog(API, SUPPORT), usage((at(1, 2), 100), (at(1, 20), 100)))
    assert summary(draft) == [
        ("api", "01-01T00", D(100), D("100.00")),
        ("api", "01-15T00", D(100), D("100.00")),
        ("support", "01-01T00", D(100), D("10.00")),
        ("support", "01-15T00", D(100), D("20.00")),
    ]


SEATS = product("seats", ProductType.SUBSCRIPTION, name="Seats")
SEAT_RATES = (
    Rate("seats", at(1, 1, year=2025), RateType.SUBSCRIPTION, price=D(1000), billing_frequency=Frequency.MONTHLY),
    Rate("seats", at(1, 1, year=2025), RateType.SUBSCRIPTION, price=D(12000), billing_frequency=Frequency.ANNUAL),
)


def seats(schedule, start=at(1, 1), quantity=3, updates=(), frequency=Frequency.MONTHLY, prorated=True, end=None):
    return Subscription(
        "sub", "seats", schedule, frequency, start, D(quantity), prorated, end,
        tuple(QuantityChange(when, D(q)) for when, q in updates),
    )


ADVANCE, ARREARS = CollectionSchedule.ADVANCE, CollectionSchedule.ARREARS
SUBSCRIPTION_CASES = [
    ("in advance, a whole month at the start", seats(ADVANCE), {}, JAN,
     [("01-01T00", "02-01T00", D(3), D("3000.00"), False)]),
    ("in advance, a partial first month is prorated by exact time (21 of 31 days)", seats(ADVANCE, start=at(1, 11)), {},
     JAN, [("01-11T00", "02-01T00", D(3), D("2032.26"), True)]),
    ("in advance, without proration a partial month costs a whole one",
     seats(ADVANCE, start=at(1, 11), prorated=False), {}, JAN, [("01-11T00", "02-01T00", D(3), D("3000.00"), False)]),
    ("in advance, an increase is charged when it happens for the rest of the month",
     seats(ADVANCE, quantity=2, updates=[(at(1, 21), 4)]), {}, JAN,
     [("01-01T00", "02-01T00", D(2), D("2000.00"), False), ("01-21T00", "02-01T00", D(2), D("709.68"), True)]),
    ("in advance, a decrease is not refunded and a later increase pays only above the most charged",
     seats(ADVANCE, quantity=5, updates=[(at(1, 11), 3), (at(1, 21), 6)]), {}, JAN,
     [("01-01T00", "02-01T00", D(5), D("5000.00"), False), ("01-21T00", "02-01T00", D(1), D("354.84"), True)]),
    ("in arrears, each stretch of constant quantity is prorated and rounded on its own line",
     seats(ARREARS, quantity=2, updates=[(at(1, 21), 4)]), {}, JAN,
     [("01-01T00", "01-21T00", D(2), D("1290.32"), True), ("01-21T00", "02-01T00", D(4), D("1419.35"), True)]),
    ("in arrears, a contract ending mid-month bills a partial last period",
     seats(ARREARS, quantity=2), {"ending_before": at(1, 21)}, JAN,
     [("01-01T00", "01-21T00", D(2), D("1290.32"), True)]),
    ("an annual subscription in advance lands whole on the first monthly invoice",
     seats(ADVANCE, quantity=1, frequency=Frequency.ANNUAL), {}, JAN,
     [("01-01T00", "01-01T00", D(1), D("12000.00"), False)]),
    ("an annual subscription in advance is not charged again the next month",
     seats(ADVANCE, quantity=1, frequency=Frequency.ANNUAL), {}, FEB, []),
    ("an annual subscription in arrears is not on a monthly invoice before the year ends",
     seats(ARREARS, quantity=1, frequency=Frequency.ANNUAL), {}, JAN, []),
]


@pytest.mark.parametrize("subscription,fields,period,lines", [c[1:] for c in SUBSCRIPTION_CASES],
                         ids=[c[0] for c in SUBSCRIPTION_CASES])
def test_subscription_lines(subscription, fields, period, lines):
    drafts = all_invoices(contract(*SEAT_RATES, subscriptions=(subscription,), **fields), catalog(SEATS), FakeUsage(), period)
    found = [line for d in drafts for line in d.line_items]
    assert [
        (l.starting_at.strftime("%m-%dT%H"), l.ending_before.strftime("%m-%dT%H"), l.quantity, l.total, l.is_prorated)
        for l in found
    ] == lines
    assert all(l.type is LineType.SUBSCRIPTION and l.subscription_id == "sub" for l in found)
    # in advance: billed on a SCHEDULED invoice issued when the service starts; in arrears: on the usage invoice
    for draft in drafts:
        for line in draft.line_items:
            if subscription.collection_schedule is ADVANCE:
                assert (draft.type, draft.starting_at) == (InvoiceType.SCHEDULED, line.starting_at)
            else:
                assert draft.type is InvoiceType.USAGE


def test_an_annual_subscription_in_arrears_lands_on_the_invoice_of_the_period_it_ends_in():
    dec = build_draft_invoices(
        contract(*SEAT_RATES, subscriptions=(seats(ARREARS, quantity=1, frequency=Frequency.ANNUAL),)),
        catalog(SEATS), Period(at(12, 1), at(1, 1, year=2027)), FakeUsage(),
    )[0]
    assert [(l.starting_at, l.ending_before, l.total) for l in dec.line_items] == [(at(1, 1), at(1, 1, year=2027), D("12000.00"))]


def test_a_subscription_overwrite_prices_seats_and_records_the_list_price():
    cheaper = Override("deal", at(1, 1), type=OverrideType.MULTIPLIER, product_id="seats", multiplier=D("0.9"))
    [line] = all_lines(contract(*SEAT_RATES, subscriptions=(seats(ADVANCE),), overrides=(cheaper,)), catalog(SEATS))
    assert (line.unit_price, line.total, line.list_price) == (D(900), D("2700.00"), SEAT_RATES[0])


SETUP = product("setup", ProductType.FIXED, name="Onboarding")


def test_scheduled_charges_land_on_a_scheduled_invoice_issued_at_their_timestamp():
    charge = ScheduledCharge("sc", "setup", (ScheduleItem(at(1, 10), D(50000)), ScheduleItem(at(2, 10), D(2500), D(4))))
    fixed = contract(flat("api", 1), scheduled_charges=(charge,))
    jan, feb = (all_invoices(fixed, catalog(API, SETUP), FakeUsage().add(at(1, 3), 7), period) for period in (JAN, FEB))
    assert [(d.type, d.starting_at, d.ending_before, d.total) for d in jan] == [
        (InvoiceType.USAGE, at(1, 1), at(2, 1), D("7.00")),
        (InvoiceType.SCHEDULED, at(1, 10), at(1, 10), D("50000.00")),
    ]
    assert [(l.name, l.quantity, l.unit_price, l.total, l.type) for l in jan[1].line_items] == [
        ("Onboarding", 1, 50000, D("50000.00"), LineType.SCHEDULED)
    ]
    assert [(d.type, [(l.quantity, l.total) for l in d.line_items]) for d in feb] == [
        (InvoiceType.USAGE, []), (InvoiceType.SCHEDULED, [(4, D("10000.00"))])
    ]


def test_spend_in_a_custom_pricing_unit_is_converted_to_fiat_on_the_same_invoice():
    units = CreditType("cu", "Compute units", precision=4)
    card = RateCard("rc1", "Standard", (flat("api", "0.00125", credit_type=units), flat("seats_api", 2)),
                    credit_type_conversions={"cu": D("40")})
    fixed = Contract("c1", "acme", at(1, 1), card)
    usage_ = usage((at(1, 2), 3)).add(at(1, 3), 5, metric="other")
    [draft] = build_draft_invoices(fixed, catalog(API, product("seats_api", billable_metric_id="other")), JAN, usage_)
    assert [(l.type, l.credit_type.id, l.quantity, l.unit_price, l.total) for l in draft.line_items] == [
        (LineType.USAGE, "cu", D(3), D("0.00125"), D("0.0038")),
        (LineType.USAGE, USD_CENTS.id, D(5), D(2), D("10.00")),
        (LineType.CPU_CONVERSION, USD_CENTS.id, D("0.0038"), D(40), D("0.15")),  # 0.152 cents, rounded once
    ]
    assert draft.credit_type == USD_CENTS and draft.total == D("10.15")


def test_a_custom_pricing_unit_without_a_conversion_gets_its_own_invoice_after_the_fiat_one():
    units = CreditType("cu", "Compute units", precision=4)
    drafts = build_draft_invoices(
        contract(flat("api", "0.00125", credit_type=units)), catalog(API), JAN, usage((at(1, 2), 3))
    )
    assert [(d.credit_type, d.total) for d in drafts] == [(USD_CENTS, 0), (units, D("0.0038"))]


def test_one_invoice_reads_each_segment_once_and_every_line_is_hour_aligned():
    calls = []

    class Recording(FakeUsage):
        def quantity(self, metric_id, group_values, start, end):
            calls.append((start, end))
            return super().quantity(metric_id, group_values, start, end)

    rates = (flat("api", 10, end=at(1, 15, 12)), flat("api", 12, start=at(1, 15, 12)))
    invoice(contract(*rates), catalog(API), Recording().add(at(1, 2), 1))
    assert calls == [(at(1, 1), at(1, 15, 12)), (at(1, 15, 12), at(2, 1))]


# --- properties ---------------------------------------------------------------------------------

hours = st.integers(min_value=1, max_value=30 * 24)
amounts = st.decimals(min_value=0, max_value=100_000, places=3)


@st.composite
def scenarios(draw):
    """A month of usage in two regions, a tiered rate changing at a random hour, a random discount."""
    change = at(1, 1) + timedelta(hours=draw(hours))
    first = [(draw(st.decimals(0, 50, places=4)), draw(st.decimals(1, 500, places=1))) for _ in range(draw(st.integers(0, 2)))]
    second = [(draw(st.decimals(0, 50, places=4)), draw(st.decimals(1, 500, places=1))) for _ in range(draw(st.integers(0, 2)))]
    rates = (
        tiered("api", [*first, (draw(st.decimals(0, 50, places=4)),)], end=change),
        tiered("api", [*second, (draw(st.decimals(0, 50, places=4)),)], start=change),
    )
    fake = FakeUsage()
    for _ in range(draw(st.integers(0, 12))):
        fake.add(at(1, 1) + timedelta(minutes=draw(st.integers(0, 31 * 24 * 60 - 1))), draw(amounts),
                 region=draw(st.sampled_from(["eu", "us"])))
    start = at(1, 1) + timedelta(hours=draw(hours))
    discount = Override("d", start, start + timedelta(hours=draw(hours)), type=OverrideType.MULTIPLIER,
                        product_id="api", multiplier=draw(st.decimals(0, 2, places=3)))
    return rates, fake, discount


REGIONAL = product("api", presentation_group_key=("region",))


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_the_total_is_the_sum_of_lines_each_rounded_once(scenario):
    rates, fake, discount = scenario
    draft = invoice(contract(*rates, overrides=(discount,)), catalog(REGIONAL), fake)
    assert draft.total == draft.subtotal == sum((l.total for l in draft.line_items), D(0))
    for line in draft.line_items:
        assert line.total == USD_CENTS.round(line.precise_total)
        for sub in line.sub_line_items:
            assert sum((t.subtotal for t in sub.tiers), D(0)) == line.precise_total  # tiers stay exact


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_a_multiplier_of_one_changes_no_line(scenario):
    rates, fake, discount = scenario
    one = Override("one", at(1, 1), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D(1))
    plain = invoice(contract(*rates), catalog(REGIONAL), fake)
    with_one = invoice(contract(*rates, overrides=(one,)), catalog(REGIONAL), fake)
    fields = lambda inv: [(l.starting_at, l.ending_before, l.quantity, l.precise_total, l.total) for l in inv.line_items]
    assert fields(with_one) == fields(plain)


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_cutting_the_period_where_the_price_does_not_change_changes_no_exact_amount(scenario):
    rates, fake, _ = scenario
    whole = replace(rates[0], ending_before=None)
    noop = Override("noop", at(1, 7), at(1, 21), type=OverrideType.MULTIPLIER, product_id="api", multiplier=D(1))
    plain = invoice(contract(whole), catalog(REGIONAL), fake)
    cut = invoice(contract(whole, overrides=(noop,)), catalog(REGIONAL), fake)
    assert sum((l.precise_total for l in cut.line_items), D(0)) == sum((l.precise_total for l in plain.line_items), D(0))


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.lists(hours, max_size=5))
def test_extra_cuts_split_lines_at_the_cuts_without_changing_any_exact_amount(scenario, cut_hours):
    rates, fake, discount = scenario
    cuts = frozenset(at(1, 1) + timedelta(hours=h) for h in cut_hours)
    fixed = contract(*rates, overrides=(discount,))
    plain = invoice(fixed, catalog(REGIONAL), fake)
    cut = build_draft_invoices(fixed, catalog(REGIONAL), JAN, fake, cuts=cuts)[0]
    assert sum((l.precise_total for l in cut.line_items), D(0)) == sum((l.precise_total for l in plain.line_items), D(0))
    for line in cut.line_items:
        assert not any(line.starting_at < c < line.ending_before for c in cuts)


def test_a_usage_line_carries_its_total_at_the_rate_commit_price_for_commit_rate_commits():
    draft = invoice(contract(flat("api", 10, commit_price=D("7.5"))), catalog(API), usage((at(1, 2), 3)))
    [line] = draft.line_items
    assert (line.total, line.commit_total) == (D("30.00"), D("22.50"))
    plain = invoice(contract(flat("api", 10)), catalog(API), usage((at(1, 2), 3)))
    assert plain.line_items[0].commit_total is None


class BulkFakeUsage(FakeUsage):
    """The same usage, also answering `quantities` (every combination of a segment at once), as the
    counters source does; it must never ask `quantity` again for a segment it answered."""

    def __init__(self, base: FakeUsage) -> None:
        super().__init__(list(base.events))
        self.per_line = 0

    def quantity(self, metric_id, group_values, start, end):
        self.per_line += 1
        return super().quantity(metric_id, group_values, start, end)

    def quantities(self, metric_id, group_keys, start, end):
        combos = self.group_values(metric_id, group_keys, start, end)
        return {tuple(c.values()): FakeUsage.quantity(self, metric_id, c, start, end) for c in combos}


def test_a_source_that_answers_whole_segments_prices_exactly_like_one_asked_line_by_line():
    half = Override("half", at(1, 15), type=OverrideType.MULTIPLIER, multiplier=D("0.5"),
                    override_specifiers=(OverrideSpecifier(pricing_group_values={"model": "m-half"}),))
    rates = (tiered("llm", [(15, 3), (5,)], end=at(1, 20, 7)), flat("llm", 7, start=at(1, 20, 7)),
             flat("llm", 20, pricing_group_values={"model": "m-big"}))
    fake = FakeUsage()
    for day, model, project in [(2, "m-a", "p1"), (3, "m-a", "p2"), (4, "m-big", "p1"), (5, "m-half", "p1"),
                                (21, "m-half", "p1"), (22, "m-z", "p1"), (16, "m-a", "p1")]:
        fake.add(at(1, day, 9), day, metric="tokens", model=model, project=project)
    the_contract, the_catalog = contract(*rates, overrides=(half,)), catalog(MODELS)

    bulk = BulkFakeUsage(fake)
    assert invoice(the_contract, the_catalog, bulk) == invoice(the_contract, the_catalog, fake)
    assert bulk.per_line == 0


def _whole_key_order(lines):
    """The line order as one stable sort on the whole key: what _in_line_order must equal."""
    from tally.billing.pricing.invoices import _KIND_ORDER, _sort_key

    def groups(values):
        return _sort_key(values) if values else ()

    return sorted(lines, key=lambda l: (_KIND_ORDER[l.type], l.name.casefold(), l.name, l.product_id,
                                        groups(l.pricing_group_values), groups(l.presentation_group_values), l.starting_at))


_ORDER_MAPPINGS = [None, {"model": "a"}, {"model": "B"}, {"model": None}, {"model": "a", "region": "eu"},
                   {"region": "eu", "model": "a"}, {"region": "us"}]


@st.composite
def _lines_to_order(draw):
    """Lines that share name, product and mapping objects the way an invoice's lines do, and equal
    ones that are distinct objects; in any order, with runs kept together or not."""
    from tally.billing.pricing.lines import LineItem

    mappings = [None if m is None else dict(m) for m in _ORDER_MAPPINGS]
    mappings += [None if m is None else dict(m) for m in _ORDER_MAPPINGS]  # equal, not identical
    names = ["API", "api", "Storage", "".join(["AP", "I"])]  # the last equals the first, another object
    lines = []
    for index in range(draw(st.integers(0, 40))):
        line_type = draw(st.sampled_from([LineType.USAGE, LineType.USAGE, LineType.SUBSCRIPTION, LineType.SCHEDULED]))
        pricing = draw(st.sampled_from(mappings))
        lines.append(LineItem(
            line_type, draw(st.sampled_from(names)), draw(st.sampled_from(["p1", "p2"])), ProductType.USAGE, USD_CENTS,
            D(index), None, D(index), D(index), at(draw(st.integers(1, 3)), draw(st.integers(1, 3))), None,
            pricing, draw(st.sampled_from(mappings)),
        ))
    if draw(st.booleans()):
        lines = draw(st.permutations(lines))
    return lines


@settings(max_examples=300, deadline=None)
@given(_lines_to_order())
def test_lines_come_in_the_order_of_one_sort_on_the_whole_key(lines):
    from tally.billing.pricing.invoices import _in_line_order

    assert [id(l) for l in _in_line_order(lines)] == [id(l) for l in _whole_key_order(lines)]


def _line_value(line):
    """A line as comparable values (quantities are unique per generated line)."""
    groups = lambda values: None if values is None else tuple(values.items())
    return (line.type, line.name, line.product_id, line.quantity, line.starting_at,
            groups(line.pricing_group_values), groups(line.presentation_group_values))


@st.composite
def _parts_to_order(draw):
    """Loose lines as above, and usage runs: rows of one name and product, sharing spans and
    mapping objects, put in line order as rating makes them. A run may share its head with loose
    lines of the same name and product, or with another run."""
    from tally.billing.pricing.lines import UsageRow, UsageRun, UsageSpan

    parts = list(draw(_lines_to_order()))
    mappings = [None if m is None else dict(m) for m in _ORDER_MAPPINGS]
    for run_index in range(draw(st.integers(0, 3))):
        name, product_id = draw(st.sampled_from(["API", "api", "Storage"])), draw(st.sampled_from(["p1", "p2"]))
        spans = [UsageSpan(name, product_id, USD_CENTS, at(1, day), at(1, day + 1), None) for day in (1, 2, 3)]
        rows = [
            UsageRow(draw(st.sampled_from(spans)), draw(st.sampled_from(mappings)), draw(st.sampled_from(mappings)),
                     D(1000 * (run_index + 1) + index), None, D(index), D(index), (), None)
            for index in range(draw(st.integers(1, 8)))
        ]
        rows = _rows_in_line_order(rows)
        parts.insert(draw(st.integers(0, len(parts))), UsageRun.of(rows))
    return parts


def _rows_in_line_order(rows):
    lines = [row.line_item() for row in rows]
    index_of = {id(line): index for index, line in enumerate(lines)}
    return [rows[index_of[id(line)]] for line in _whole_key_order(lines)]


@settings(max_examples=300, deadline=None)
@given(_parts_to_order())
def test_usage_runs_and_lines_come_in_the_order_of_one_sort_on_the_whole_key(parts):
    from tally.billing.pricing.invoices import _in_line_order
    from tally.billing.pricing.lines import LineItems

    every_line = list(LineItems(parts))
    ordered = LineItems(_in_line_order(parts))
    assert len(ordered) == len(every_line)
    assert [_line_value(l) for l in ordered] == [_line_value(l) for l in _whole_key_order(every_line)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 31 * 24 - 1), st.sampled_from(["eu", "us", None]), st.sampled_from(["m-a", "m-b", None])),
             max_size=12),
    st.integers(1, 31 * 24 - 1),
    st.booleans(),
)
def test_rated_lines_come_in_the_order_of_one_sort_on_the_whole_key(events, change_hour, renamed):
    """Rating puts each product's usage rows in line order itself (a run is not sorted again): here
    priced by region and shown by model, so combinations, which come sorted by all their values in
    key name order (model first), are not in line order; and with a product version mid-month."""
    from tally.billing.pricing import ProductVersion

    change = at(1, 1) + timedelta(hours=change_hour)
    api = product("api", pricing_group_key=("region",), presentation_group_key=("model",))
    if renamed:
        api = api.updated(ProductVersion(change, "API v2", "calls", pricing_group_key=("region",),
                                         presentation_group_key=("model",)))
    fake = FakeUsage()
    for hour, region, model in events:
        fake.add(at(1, 1) + timedelta(hours=hour), 1, region=region, model=model)
    rates = (flat("api", 3, end=change), tiered("api", [(2, 2), (1,)], start=change))
    lines = list(invoice(contract(*rates), catalog(api), fake).line_items)
    assert len(lines) == len({(l.name, l.starting_at, _line_value(l)[5:]) for l in lines})
    assert [_line_value(l) for l in lines] == [_line_value(l) for l in _whole_key_order(lines)]


def test_tiers_carry_per_group_values_across_a_product_version_change():
    """Given the llm product renamed on the 15th, keeping model and project as group keys but in the
    other order, each model and project's tiers continue from its own position before the change."""
    from tally.billing.pricing import ProductVersion

    renamed = MODELS.updated(ProductVersion(at(1, 15), "LLM v2", "tokens", pricing_group_key=("model",),
                                            presentation_group_key=("project",)))
    renamed = renamed.updated(ProductVersion(at(1, 20), "LLM v3", "tokens", pricing_group_key=("project",),
                                             presentation_group_key=("model",)))
    rates = (tiered("llm", [(10, 100), (5,)]),)
    fake = FakeUsage()
    for when, model, project, tokens in [(at(1, 2), "m-a", "p1", 80), (at(1, 3), "m-b", "p1", 150),
                                         (at(1, 16), "m-a", "p1", 50), (at(1, 17), "m-b", "p1", 10),
                                         (at(1, 21), "m-a", "p1", 5)]:
        fake.add(when, tokens, metric="tokens", model=model, project=project)

    draft = invoice(contract(*rates), catalog(renamed), fake)

    assert [(l.name, l.starting_at.day, l.quantity, l.total) for l in draft.line_items] == [
        ("llm", 1, D(80), D("800.00")),
        ("llm", 1, D(150), D("1250.00")),  # 100 at 10, 50 at 5
        ("LLM v2", 15, D(50), D("350.00")),  # m-a goes on from 80: 20 at 10, 30 at 5
        ("LLM v2", 15, D(10), D("50.00")),  # m-b goes on from 150: all at 5
        ("LLM v3", 20, D(5), D("25.00")),  # m-a from 130, its keys in another order
    ]
