"""Invoice breakdowns as a use case: the real InvoiceService (due periods, pricing inputs) over
in-memory contracts and usage, so windows can be checked against the drafts they split."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.pricing import (
    USD_CENTS,
    Contract,
    CreditType,
    LineType,
    Period,
    ProductType,
    Rate,
    RateType,
    ScheduledCharge,
    ScheduleItem,
    Subscription,
)
from tally.billing.pricing.periods import BillingDay, Frequency, UsageStatementSchedule
from tally.billing.pricing.subscriptions import CollectionSchedule
from tally.services import breakdowns as breakdowns_module
from tally.billing.limits import MAX_WINDOWS
from tally.services.breakdowns import BreakdownService
from tally.services.invoices import InvoiceService
from tests.unit.pricing.builders import D, FakeUsage, at, catalog, contract, flat, product, tiered

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
JAN_1, FEB_1, MAR_1 = at(1, 1), at(2, 1), at(3, 1)
TOKENS = CreditType("tokens", "Tokens")

PRODUCTS = catalog(
    product("api", name="API calls"),
    product("seats", ProductType.SUBSCRIPTION, name="Seats"),
    product("setup", ProductType.FIXED, name="Onboarding"),
)


class FakeContracts:
    """The part of ContractService that InvoiceService reads: one customer, in-memory contracts."""

    def __init__(self, *contracts: Contract) -> None:
        self.contracts = {c.id: c for c in contracts}

    def customer(self, customer_id: str) -> Customer:
        if customer_id != "acme":
            raise NotFound(f"customer {customer_id} not found")
        return Customer("acme", "Acme", None, ())

    def list(self, customer_id: str) -> list[dict]:
        return [{"id": c.id} for c in self.contracts.values()]

    def customer_and_contracts(self, customer_id: str) -> tuple[Customer, list[dict]]:
        return self.customer(customer_id), self.list(customer_id)

    def contract(self, document: dict) -> Contract:
        return self.contracts[document["id"]]

    def products(self) -> dict:
        return PRODUCTS


def _services(contract_: Contract, usage: FakeUsage, now: datetime) -> tuple[InvoiceService, BreakdownService]:
    invoices = InvoiceService(FakeContracts(contract_), lambda customer: usage, lambda: now)  # type: ignore[arg-type]
    return invoices, BreakdownService(invoices)


def _all(service: BreakdownService, **params) -> list:
    params.setdefault("customer_id", "acme")
    page, cursor = service.list(**params)
    assert cursor is None
    return page


def _per_window(breakdowns) -> list[tuple[str, Decimal]]:
    return [(b.window.starting_at.strftime("%m-%dT%H"), b.draft.invoice.total) for b in breakdowns]


SEATS = Subscription("sub-1", "seats", CollectionSchedule.ADVANCE, Frequency.MONTHLY, JAN_1, D(2))
SETUP = ScheduledCharge("sc-1", "setup", (ScheduleItem(at(1, 3, 9), D(5000)),))
SEAT_RATE = Rate("seats", at(1, 1, year=2025), RateType.SUBSCRIPTION, price=D(1000), billing_frequency=Frequency.MONTHLY)


def test_daily_windows_split_a_month_and_add_up_to_its_invoices():
    # Given calls on days 1, 2 and 5 at 3 cents, two seats in advance and a setup fee on day 3
    usage = FakeUsage().add(at(1, 1, 10), 4).add(at(1, 2, 23, minute=59), 6).add(at(1, 5, 0), 10)
    contract_ = contract(flat("api", 3), SEAT_RATE, subscriptions=(SEATS,), scheduled_charges=(SETUP,))
    invoices, service = _services(contract_, usage, now=at(1, 20, 12))

    # When January is broken down by day
    breakdowns = _all(service, starting_on=JAN_1, ending_before=FEB_1, window_size="DAY")

    # Then the usage invoice has one breakdown per day and each scheduled invoice one, on its day
    usage_draft, seats_draft, setup_draft = invoices.list("acme")[0]
    by_invoice = lambda draft: [b for b in breakdowns if b.draft.id == draft.id]
    assert [b.window.starting_at for b in by_invoice(usage_draft)] == [JAN_1 + n * DAY for n in range(31)]
    assert [w for w in _per_window(by_invoice(usage_draft)) if w[1]] == [
        ("01-01T00", D("12.00")),  # 4 calls × 3
        ("01-02T00", D("18.00")),  # 6 × 3, the last minute of the day
        ("01-05T00", D("30.00")),  # 10 × 3
    ]
    assert _per_window(by_invoice(seats_draft)) == [("01-01T00", D("2000.00"))]  # 2 seats × 1000, at the start
    assert _per_window(by_invoice(setup_draft)) == [("01-03T00", D("5000.00"))]
    assert len(breakdowns) == 31 + 2
    # And together the breakdowns of an invoice are that invoice
    for draft in (usage_draft, seats_draft, setup_draft):
        parts = by_invoice(draft)
        assert sum(b.draft.invoice.total for b in parts) == draft.invoice.total
        assert {(b.draft.invoice.type, b.draft.invoice.starting_at, b.draft.invoice.ending_before) for b in parts} == {
            (draft.invoice.type, draft.invoice.starting_at, draft.invoice.ending_before)
        }
    for b in breakdowns:
        assert b.draft.invoice.total == b.draft.invoice.subtotal == sum((l.total for l in b.draft.invoice.line_items), D(0))
    # Breakdowns come by window, and within a window as a period's invoices do.
    assert [b.draft.id for b in breakdowns[:2]] == [usage_draft.id, seats_draft.id]


def test_an_arrears_subscription_is_in_the_window_where_its_service_starts():
    seats = replace(SEATS, collection_schedule=CollectionSchedule.ARREARS)
    invoices, service = _services(contract(SEAT_RATE, subscriptions=(seats,)), FakeUsage(), now=at(1, 20))

    breakdowns = _all(service, starting_on=JAN_1, ending_before=at(1, 4), window_size="DAY")

    # Charged on January's usage invoice for the whole month: 2 × 1000, shown from Jan 1.
    assert _per_window(breakdowns) == [("01-01T00", D(2000)), ("01-02T00", D(0)), ("01-03T00", D(0))]
    (draft,) = invoices.list("acme")[0]
    assert {b.draft.id for b in breakdowns} == {draft.id} and draft.invoice.total == D(2000)


def test_no_usage_line_straddles_a_window_and_exact_amounts_are_kept():
    # A price with a fraction of a hundredth of a cent, so every extra line would show a rounding
    # difference if amounts were rounded before the end.
    usage = FakeUsage()
    for minute in range(0, 6 * 60, 7):
        usage.add(JAN_1 + timedelta(minutes=minute), D("1.7"))
    invoices, service = _services(contract(flat("api", "0.0013")), usage, now=at(1, 20))

    breakdowns = _all(service, starting_on=JAN_1, ending_before=at(1, 1, 6), window_size="HOUR")

    assert [b.window.starting_at for b in breakdowns] == [JAN_1 + n * HOUR for n in range(6)]
    for b in breakdowns:
        for line in b.draft.invoice.line_items:
            assert b.window.starting_at <= line.starting_at and line.ending_before <= b.window.ending_before
    (draft,), _ = invoices.list("acme")
    precise = lambda lines: sum((l.precise_total for l in lines), D(0))
    windows = [l for b in breakdowns for l in b.draft.invoice.line_items]
    assert precise(windows) == precise(draft.invoice.line_items)
    assert sum(l.quantity for l in windows) == sum(l.quantity for l in draft.invoice.line_items)
    # Each window line is rounded once, so the windows differ from the invoice by at most half a
    # unit of precision per line.
    bound = D("0.005") * (len(windows) + len(draft.invoice.line_items))
    assert abs(sum(b.draft.invoice.total for b in breakdowns) - draft.invoice.total) <= bound


@pytest.mark.parametrize("window_size", ["DAY", "HOUR"])
def test_tier_positions_carry_across_windows(window_size):
    # 4 units at 4 cents, then 1 cent. 3 calls on Jan 1 at 10:00, 4 on Jan 2 at 10:00.
    usage = FakeUsage().add(at(1, 1, 10), 3).add(at(1, 2, 10), 4)
    _, service = _services(contract(tiered("api", [(4, 4), (1,)])), usage, now=at(1, 20))

    breakdowns = _all(service, starting_on=JAN_1, ending_before=at(1, 3), window_size=window_size)

    charged = [w for w in _per_window(breakdowns) if w[1]]
    # Day 1: 3 × 4 = 12. Day 2 starts at position 3: 1 × 4 + 3 × 1 = 7 (not 4 × 4 = 16).
    hour = "10" if window_size == "HOUR" else "00"
    assert charged == [(f"01-01T{hour}", D("12.00")), (f"01-02T{hour}", D("7.00"))]
    (second,) = [b for b in breakdowns if b.draft.invoice.total == D(7)]
    tiers = second.draft.invoice.line_items[0].sub_line_items[0].tiers
    assert [(t.quantity, t.price) for t in tiers] == [(D(1), D(4)), (D(3), D(1))]


def test_windows_are_clipped_to_the_period_and_the_range():
    # Periods anchored at the contract start, 14:00 on Jan 1: [Jan 1 14:00, Feb 1 14:00), ...
    schedule = UsageStatementSchedule(day=BillingDay.CONTRACT_START)
    start = at(1, 1, 14)
    contract_ = contract(flat("api", 1), start=start, usage_statement_schedule=schedule)
    usage = FakeUsage().add(at(1, 31, 9), 1).add(at(2, 1, 15), 2).add(at(2, 2, 1), 3)
    _, service = _services(contract_, usage, now=at(2, 10))

    breakdowns = _all(service, starting_on=at(1, 31), ending_before=at(2, 3), window_size="DAY")

    seen = [(b.draft.invoice.starting_at, b.window.starting_at, b.window.ending_before, b.draft.invoice.total) for b in breakdowns]
    assert seen == [
        (start, at(1, 31), at(2, 1), D(1)),
        (start, at(2, 1), at(2, 1, 14), D(0)),  # January's invoice ends at 14:00 on Feb 1
        (at(2, 1, 14), at(2, 1, 14), at(2, 2), D(2)),  # February's starts there
        (at(2, 1, 14), at(2, 2), at(2, 3), D(3)),
    ]


def test_newest_first_reverses_periods_and_windows():
    usage = FakeUsage().add(at(1, 31, 9), 1).add(at(2, 1, 9), 2)
    _, service = _services(contract(flat("api", 1)), usage, now=at(2, 10))
    params = dict(starting_on=at(1, 30), ending_before=at(2, 2), window_size="DAY")

    ascending = _all(service, **params)
    descending = _all(service, **params, newest_first=True)

    assert [b.window for b in descending] == [b.window for b in reversed(ascending)]
    assert [b.window.starting_at for b in ascending] == [at(1, 30), at(1, 31), at(2, 1)]


def test_pages_price_each_of_their_periods_once_and_join_up(monkeypatch):
    usage = FakeUsage().add(at(1, 31, 9), 1).add(at(2, 1, 9), 2).add(at(3, 2, 9), 3)
    _, service = _services(contract(flat("api", 1)), usage, now=at(3, 5))
    priced: list[Period] = []
    real = breakdowns_module.build_draft_invoices

    def counting(contract_, products, period, usage_, cuts=frozenset()):
        priced.append(period)
        return real(contract_, products, period, usage_, cuts=cuts)

    monkeypatch.setattr(breakdowns_module, "build_draft_invoices", counting)
    params = dict(customer_id="acme", starting_on=at(1, 1), ending_before=at(3, 5), window_size="DAY")

    everything = _all(service, **params)
    assert priced == [Period(JAN_1, FEB_1), Period(FEB_1, MAR_1), Period(MAR_1, at(4, 1))]
    assert len(everything) == 31 + 28 + 4

    priced.clear()
    pages, cursor = [], None
    while True:
        page, cursor = service.list(**params, cursor=cursor, limit=20)
        pages.append(page)
        if cursor is None:
            break
    assert [len(p) for p in pages] == [20, 20, 20, 3]
    assert [b.window for p in pages for b in p] == [b.window for b in everything]
    # Each page prices the periods it reaches into, once each: Jan | Jan Feb | Feb Mar | Mar.
    jan, feb, mar = Period(JAN_1, FEB_1), Period(FEB_1, MAR_1), Period(MAR_1, at(4, 1))
    assert priced == [jan, jan, feb, feb, mar, mar]


def test_custom_unit_spend_is_converted_to_fiat_per_window():
    # Calls cost 2 tokens; a token is worth 40 cents. 5 calls on Jan 1, 3 on Jan 2.
    usage = FakeUsage().add(at(1, 1, 10), 5).add(at(1, 2, 10), 3)
    contract_ = contract(flat("api", 2, credit_type=TOKENS))
    contract_ = replace(contract_, rate_card=replace(contract_.rate_card, credit_type_conversions={"tokens": D(40)}))
    invoices, service = _services(contract_, usage, now=at(1, 20))

    breakdowns = _all(service, starting_on=JAN_1, ending_before=at(1, 3), window_size="DAY")

    # 10 tokens × 40 = 400 cents on day 1; 6 × 40 = 240 on day 2; the invoice converts 16: 640.
    assert _per_window(breakdowns) == [("01-01T00", D(400)), ("01-02T00", D(240))]
    conversions = [l for b in breakdowns for l in b.draft.invoice.line_items if l.type is LineType.CPU_CONVERSION]
    assert [(l.starting_at, l.ending_before, l.total) for l in conversions] == [
        (JAN_1, at(1, 2), D(400)), (at(1, 2), at(1, 3), D(240))
    ]
    (draft,) = invoices.list("acme")[0]
    assert draft.invoice.total == D(640)


def test_a_unit_without_conversion_has_its_own_breakdowns_and_can_be_filtered():
    usage = FakeUsage().add(at(1, 2, 10), 5)
    _, service = _services(contract(flat("api", 2, credit_type=TOKENS)), usage, now=at(1, 20))
    params = dict(starting_on=JAN_1, ending_before=at(1, 3), window_size="DAY")

    both = _all(service, **params)
    assert [(b.window.starting_at, b.draft.invoice.credit_type.id, b.draft.invoice.total) for b in both] == [
        (JAN_1, USD_CENTS.id, D(0)),  # the fiat usage invoice is in every window, even empty
        (at(1, 2), USD_CENTS.id, D(0)),
        (at(1, 2), "tokens", D(10)),  # another credit type only where it has charges
    ]
    assert [b.draft.invoice.total for b in _all(service, **params, credit_type_id="tokens")] == [D(10)]


def test_nothing_is_finalized_yet_and_unknown_customers_are_not_found():
    _, service = _services(contract(flat("api", 1)), FakeUsage(), now=at(1, 20))
    params = dict(starting_on=JAN_1, ending_before=at(1, 2))
    assert service.list("acme", **params, status="FINALIZED") == ([], None)
    assert len(service.list("acme", **params, status="draft")[0]) == 1
    with pytest.raises(NotFound):
        service.list("nobody", **params)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"starting_on": None}, "starting_on"),
        ({"ending_before": None}, "ending_before"),
        ({"ending_before": JAN_1}, "ending_before"),
        ({"ending_before": at(1, 1) - DAY}, "ending_before"),
        ({"window_size": "WEEK"}, "window_size"),
        ({"starting_on": at(1, 1, 1)}, "starting_on"),
        ({"ending_before": at(1, 2, 12)}, "ending_before"),
        ({"window_size": "HOUR", "starting_on": at(1, 1, 0, minute=30)}, "starting_on"),
        ({"window_size": "HOUR", "ending_before": JAN_1 + (MAX_WINDOWS + 1) * HOUR}, "ending_before"),
        ({"ending_before": JAN_1 + (MAX_WINDOWS + 1) * DAY}, "ending_before"),
        ({"status": "PAID"}, "status"),
        ({"cursor": "7"}, "next_page"),
    ],
    ids=[
        "no start", "no end", "an empty range", "a range ending before it starts", "an unknown window size",
        "a day window starting off midnight", "a day window ending off midnight", "an hour window off the hour",
        "more hour windows than the cap", "more day windows than the cap", "an unknown status",
        "a cursor this API never returned",
    ],
)
def test_bad_requests_are_refused_naming_the_field(changes, field):
    _, service = _services(contract(flat("api", 1)), FakeUsage(), now=at(1, 20))
    params = dict(customer_id="acme", starting_on=JAN_1, ending_before=at(1, 3), window_size="DAY") | changes
    with pytest.raises(InvalidInput) as raised:
        service.list(**params)
    assert raised.value.field == field


def test_the_window_cap_itself_is_allowed():
    _, service = _services(contract(flat("api", 1)), FakeUsage(), now=at(1, 20))
    page, _ = service.list("acme", starting_on=JAN_1, ending_before=JAN_1 + MAX_WINDOWS * HOUR, window_size="HOUR", limit=5)
    assert len(page) == 5
