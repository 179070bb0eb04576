"""Figure 12 of `tally bench`: the current draft of a contract with commits and credits, read in
the contract's first month and in its 24th, side by side.

Two customers of the figure 5 catalog (fewer products and models), each with the same contract
shape: a prepaid commit drawn down month by month (one access segment per month, 24 of them) and
a free credit over the 24 months, both paying for every usage product. The old customer's contract
started 23 months before the current period, and each of those periods was finalized by cycle
close (CycleCloseService.finalize), in order, after usage in each. The young customer's contract
starts with the current period. The same usage lands in both current periods.

The current draft is read as GET /v1/customers/<id>/invoices/<id> reads it (InvoiceService.get),
against DynamoDB in moto in-process: read requests and items (every Query page, GetItem and
BatchGetItem), and process CPU minus the AWS calls' own.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable
from unittest import mock

from infra.bench.invoice import (
    SETUP_AT,
    SHARD_MARK,
    Clock,
    EmulatedAwsTime,
    InvoiceWorld,
    ReadMeter,
    Shape,
    _timed,
    faithful_moto_queries,
    moto_tables,
    wired,
)
from infra.bench.report import Report, Row

UTC = timezone.utc
OLD_START = datetime(2026, 9, 1, tzinfo=UTC)  # after the catalog's products exist (SETUP_AT)
GRACE = timedelta(hours=24)
SHAPE = Shape(families=2, levels=3, models=10)
QUICK_SHAPE = Shape(families=1, levels=2, models=3)


def _month(start: datetime, months: int) -> datetime:
    total = start.month - 1 + months
    return start.replace(year=start.year + total // 12, month=total % 12 + 1)


def _rfc(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class HistoryFigures:
    months: int
    requests: int
    items: int
    cpu_ms: float
    invoice: Any
    applied_lines: int


@dataclass
class _Customer:
    customer_id: str
    alias: str
    contract_id: str
    start: datetime


class HistoryWorld:
    """The figure 5 world, with a FIXED product for commits and credits and customers whose
    contracts draw on both."""

    def __init__(self, world: InvoiceWorld) -> None:
        from tally.billing.pricing import ProductType, ProductVersion
        from tally import wiring

        self.world = world
        self.fixed_id = world.catalog.create_product(ProductType.FIXED, ProductVersion(SETUP_AT, "Prepaid usage")).product.id
        self.cycle_close = wiring.cycle_close_service()

    def open(self, name: str, start: datetime, months: int) -> _Customer:
        from tally.api.contract_models import ContractCreate

        world = self.world
        customer = world.customers.create(f"Bench history customer {name}", [name], None, {})
        segments = [{"amount": 40_000, "starting_at": _rfc(_month(start, n)), "ending_before": _rfc(_month(start, n + 1))}
                    for n in range(months)]
        body = ContractCreate.model_validate({
            "customer_id": customer.id, "rate_card_id": world.rate_card_id, "starting_at": _rfc(start),
            "name": "Inference with commitments",
            "usage_statement_schedule": {"frequency": "MONTHLY", "day": "FIRST_OF_MONTH"},
            "commits": [{"product_id": self.fixed_id, "type": "PREPAID", "name": "Monthly commitment",
                         "access_schedule": {"schedule_items": segments}}],
            "credits": [{"product_id": self.fixed_id, "name": "Launch credit", "access_schedule": {"schedule_items": [
                {"amount": 150_000, "starting_at": _rfc(start), "ending_before": _rfc(_month(start, months))}]}}],
        })
        contract = world.contracts.create(body.to_document())
        return _Customer(customer.id, name, contract["id"], start)

    def use(self, customer: _Customer, month_start: datetime) -> None:
        """The same usage in every month: each product and model, in the month's first hour."""
        from tally.billing.counters import CounterRow, event_counters, part_values
        from tally.billing.metrics import Aggregation

        shape = self.world.shape
        for product in range(shape.products):
            rows = []
            for bucket, part in event_counters(Aggregation.SUM, month_start):
                for model in range(shape.models):
                    units = Decimal(30_000 * (model + 1) * (product + 1))
                    rows.append(CounterRow(bucket, (shape.model(model),), units, parts=part_values(bucket, {part: units})))
            self.world.counters.put_rows(self.world.metric_ids[product], customer.alias, rows, SHARD_MARK)

    def close(self, customer: _Customer, period_start: datetime) -> None:
        as_of = _month(period_start, 1) + GRACE
        self.world.clock.now = as_of
        self.cycle_close.finalize(customer.customer_id, customer.contract_id, period_start, as_of)

    def draft(self, customer: _Customer, period_start: datetime, repriced: bool = False):
        """The current draft as the API reads it, or (`repriced`) as every period priced again reads
        it: closed periods' usage priced at 0, every stored drawdown replayed, every stored record
        parsed on every read (the reading before this figure's work)."""
        from tally import wiring
        from tally.adapters.dynamo import invoices as stored
        from tally.billing.pricing import USD_CENTS
        from tally.services.invoices import InvoiceService, _NoUsage, invoice_id
        from tally.services.rating_usage import CounterUsageSource

        slot = invoice_id(customer.contract_id, period_start, USD_CENTS)
        if not repriced:
            return self.world.invoices.get(customer.customer_id, slot).invoice
        service = InvoiceService(
            wiring.contract_service(), lambda c: CounterUsageSource(c, wiring.metric_store(), wiring.counter_store()),
            self.world.clock, wiring.grant_book(), wiring.invoice_store(), reuse_settled=False,
        )
        with mock.patch.object(_NoUsage, "measures_nothing", False), mock.patch.object(stored, "RECORDS_KEPT", 0):
            return service.get(customer.customer_id, slot).invoice


def run_history_figure(months: int, repeats: int, progress: Callable[[str], None] = lambda _: None,
                       shape: Shape = SHAPE) -> tuple[HistoryFigures, HistoryFigures, HistoryFigures]:
    """(the draft in month 1, in month `months`, and that one read re-pricing every period),
    measured in one world; the last two checked equal."""
    current = _month(OLD_START, months - 1)
    now = _month(current, 1) - timedelta(minutes=30)
    clock = Clock(SETUP_AT)
    with moto_tables() as tables, wired(tables, clock), faithful_moto_queries():
        world = InvoiceWorld(shape, clock, tables)
        world.set_up_catalog()
        history = HistoryWorld(world)
        old = history.open("bench-history-old", OLD_START, months)
        young = history.open("bench-history-young", current, months)
        began = time.perf_counter()
        for n in range(months - 1):
            history.use(old, _month(OLD_START, n))
            history.close(old, _month(OLD_START, n))
        progress(f"finalized {months - 1} periods in {time.perf_counter() - began:.0f} s")
        history.use(old, current)
        history.use(young, current)
        clock.now = now
        gc.collect()
        meter, aws = ReadMeter(world.client), EmulatedAwsTime()
        with aws.installed():
            figures = []
            for customer, age, repriced in ((young, 1, False), (old, months, False), (old, months, True)):
                history.draft(customer, current, repriced)  # warm
                runs = []
                for run in range(repeats):
                    with meter.counting() as reads:
                        runs.append(_timed(lambda: history.draft(customer, current, repriced), aws))
                    if run == 0:
                        requests, items = reads.total()
                invoice = runs[0][0]
                figures.append(HistoryFigures(
                    age, requests, items, statistics.median(r[4] for r in runs), invoice,
                    sum(1 for line in invoice.line_items if line.commit_id is not None),
                ))
        if figures[1].invoice != figures[2].invoice:
            raise RuntimeError("the draft read reusing settled periods differs from the one re-pricing them")
        return figures[0], figures[1], figures[2]


def figure_history(report: Report, quick: bool, progress: Callable[[str], None] = lambda _: None) -> None:
    """Figure 12 rows of `tally bench` (registered in report.OFFLINE_FIGURES)."""
    months = 2 if quick else 24
    shape = QUICK_SHAPE if quick else SHAPE
    first, last, repriced = run_history_figure(months, 1 if quick else 3, progress, shape)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "n/a"

    report.figures |= {
        "history_draft_month_1_read_requests": first.requests,
        "history_draft_month_n_read_requests": last.requests,
        "history_draft_month_1_items_read": first.items,
        "history_draft_month_n_items_read": last.items,
        "history_draft_month_1_cpu_ms": first.cpu_ms,
        "history_draft_month_n_cpu_ms": last.cpu_ms,
        "history_draft_month_n_repriced_cpu_ms": repriced.cpu_ms,
        "history_draft_cpu_month_n_vs_1": last.cpu_ms / first.cpu_ms,
    }
    base = "month 1:"
    report.rows += [
        Row(f"12a draft with commits and credits, month {months}: DynamoDB read requests", f"{last.requests}",
            f"{base} {first.requests}", ratio(last.requests, first.requests), "as month 1",
            "met" if last.requests <= first.requests else "missed"),
        Row("12b  items read (one more per stored invoice)", f"{last.items}", f"{base} {first.items}",
            ratio(last.items, first.items), "as month 1", "met" if last.items <= first.items else "missed"),
        Row("12c  CPU excl. AWS calls", f"{last.cpu_ms:,.1f} ms", f"{base} {first.cpu_ms:,.1f} ms",
            ratio(last.cpu_ms, first.cpu_ms), "as month 1 (≤ 1.2×)", "met" if last.cpu_ms <= 1.2 * first.cpu_ms else "missed"),
        Row(f"12d  month {months}, reuse off (settled periods priced, drawdowns replayed)", f"{repriced.cpu_ms:,.1f} ms",
            f"{base} {first.cpu_ms:,.1f} ms", ratio(repriced.cpu_ms, first.cpu_ms), "", ""),
    ]
    report.notes.append(
        f"12: a contract of {shape.products} USAGE products × {shape.models} models with a prepaid commit of one access "
        f"segment per month and a free credit over {months} months, both for every product, read in its first month "
        f"and, for another customer, in its {months}th, the {months - 1} periods before finalized by cycle close "
        "(CycleCloseService.finalize) after the same usage in each. The current draft is read as GET /v1/customers/"
        "<id>/invoices/<id> reads it (InvoiceService.get): read requests and items, and process CPU minus the AWS "
        f"calls' own, median of {1 if quick else 3} warm calls. 12d reads the month-{months} draft as before: every "
        "closed period's usage priced again (at 0), every stored drawdown replayed, every stored record parsed; "
        "the two drafts are checked equal. What still grows: the stored invoices are listed (one item each, "
        "their documents kept parsed by a warm function, RECORDS_KEPT), and each period's slots are named."
    )
