"""Figure 12 of `tally bench`: the current draft of a contract with commits and credits, and the
customer's balances, read in the contract's first month and in its 24th, side by side.

Two customers of the figure 5 catalog (fewer products and models), each with the same contract
shape: a prepaid commit drawn down month by month (one access segment per month, 24 of them) and
a free credit over the 24 months, both paying for every usage product. The old customer's contract
started 23 months before the current period, and each of those periods was finalized by cycle
close (CycleCloseService.finalize), in order, after usage in each. The young customer's contract
starts with the current period. The same usage lands in both current periods.

The current draft is read as GET /v1/customers/<id>/invoices/<id> reads it (InvoiceService.get),
and the balances as getNetBalance reads them (InvoiceService.balances_burn_down), against DynamoDB
in moto in-process: read requests and items (every Query page, GetItem and BatchGetItem), and
process CPU minus the AWS calls' own. Both start from the balance checkpoint cycle close stored
with the last finalization; the baseline of month 24 is the whole replay (every stored invoice
listed and its drawdowns replayed, every period priced: `reuse_settled=False`), checked equal.
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

    def draft(self, customer: _Customer, period_start: datetime, whole: bool = False):
        """The current draft as the API reads it, or (`whole`) as the whole replay reads it: no
        checkpoint, closed periods' usage priced at 0, every stored drawdown replayed, every stored
        record parsed on every read."""
        from tally.adapters.dynamo import invoices as stored
        from tally.billing.pricing import USD_CENTS
        from tally.services.invoices import _NoUsage, invoice_id

        slot = invoice_id(customer.contract_id, period_start, USD_CENTS)
        if not whole:
            return self.world.invoices.get(customer.customer_id, slot).invoice
        with mock.patch.object(_NoUsage, "measures_nothing", False), mock.patch.object(stored, "RECORDS_KEPT", 0):
            return self._whole().get(customer.customer_id, slot).invoice

    def balances(self, customer: _Customer, whole: bool = False):
        """The balances as getNetBalance reads them (from the checkpoint), or by the whole replay."""
        from tally.adapters.dynamo import invoices as stored

        if not whole:
            return self.world.invoices.balances_burn_down(customer.customer_id).balances
        with mock.patch.object(stored, "RECORDS_KEPT", 0):
            return self._whole().burn_down(customer.customer_id).balances

    def _whole(self):
        from tally import wiring
        from tally.services.invoices import InvoiceService
        from tally.services.rating_usage import CounterUsageSource

        return InvoiceService(
            wiring.contract_service(), lambda c: CounterUsageSource(c, wiring.metric_store(), wiring.counter_store()),
            self.world.clock, wiring.grant_book(), wiring.invoice_store(), reuse_settled=False,
        )


def run_history_figure(months: int, repeats: int, progress: Callable[[str], None] = lambda _: None,
                       shape: Shape = SHAPE) -> dict[str, HistoryFigures]:
    """The draft and the balances in month 1, in month `months`, and in that month by the whole
    replay (keys "draft 1", "draft n", "draft whole", "balances 1", ...), measured in one world; the
    checkpointed reads checked equal to the whole replay's."""
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
        reads = {
            "draft": lambda customer, whole: history.draft(customer, current, whole),
            "balances": lambda customer, whole: history.balances(customer, whole),
        }
        figures: dict[str, HistoryFigures] = {}
        with aws.installed():
            for what, read in reads.items():
                for customer, age, whole, name in ((young, 1, False, "1"), (old, months, False, "n"), (old, months, True, "whole")):
                    read(customer, whole)  # warm
                    runs = []
                    for run in range(repeats):
                        with meter.counting() as counted:
                            runs.append(_timed(lambda: read(customer, whole), aws))
                        if run == 0:
                            requests, items = counted.total()
                    answer = runs[0][0]
                    applied = sum(1 for line in answer.line_items if line.commit_id is not None) if what == "draft" else 0
                    figures[f"{what} {name}"] = HistoryFigures(
                        age, requests, items, statistics.median(r[4] for r in runs), answer, applied)
        for what in reads:
            if figures[f"{what} n"].invoice != figures[f"{what} whole"].invoice:
                raise RuntimeError(f"the {what} read from the checkpoint differs from the whole replay's")
        return figures


def figure_history(report: Report, quick: bool, progress: Callable[[str], None] = lambda _: None) -> None:
    """Figure 12 rows of `tally bench` (registered in report.OFFLINE_FIGURES)."""
    months = 2 if quick else 24
    shape = QUICK_SHAPE if quick else SHAPE
    figures = run_history_figure(months, 1 if quick else 5, progress, shape)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "n/a"

    def verdict(a: float, b: float, goal: float) -> str:
        return "met" if a <= goal * b else "missed"

    for what in ("draft", "balances"):
        first, last = figures[f"{what} 1"], figures[f"{what} n"]
        report.figures |= {
            f"history_{what}_month_1_read_requests": first.requests,
            f"history_{what}_month_n_read_requests": last.requests,
            f"history_{what}_month_1_items_read": first.items,
            f"history_{what}_month_n_items_read": last.items,
            f"history_{what}_month_n_whole_items_read": figures[f"{what} whole"].items,
            f"history_{what}_month_1_cpu_ms": first.cpu_ms,
            f"history_{what}_month_n_cpu_ms": last.cpu_ms,
            f"history_{what}_month_n_whole_cpu_ms": figures[f"{what} whole"].cpu_ms,
        }
    rows = []
    for letter, what, title in (("a", "draft", "current draft with commits and credits"), ("e", "balances", "balances (getNetBalance)")):
        first, last, whole = figures[f"{what} 1"], figures[f"{what} n"], figures[f"{what} whole"]
        base = "month 1:"
        rows += [
            Row(f"12{letter} {title}, month {months}: items read", f"{last.items}", f"{base} {first.items}",
                ratio(last.items, first.items), "≤ 1.1× month 1", verdict(last.items, first.items, 1.1)),
            Row(f"12{chr(ord(letter) + 1)}  DynamoDB read requests", f"{last.requests}", f"{base} {first.requests}",
                ratio(last.requests, first.requests), "≤ 1.1× month 1", verdict(last.requests, first.requests, 1.1)),
            Row(f"12{chr(ord(letter) + 2)}  CPU excl. AWS calls", f"{last.cpu_ms:,.1f} ms", f"{base} {first.cpu_ms:,.1f} ms",
                ratio(last.cpu_ms, first.cpu_ms), "≤ 1.1× month 1", verdict(last.cpu_ms, first.cpu_ms, 1.1)),
            Row(f"12{chr(ord(letter) + 3)}  month {months}, whole replay (no checkpoint)",
                f"{whole.items} items, {whole.cpu_ms:,.1f} ms", f"{base} {first.items} items, {first.cpu_ms:,.1f} ms",
                ratio(whole.cpu_ms, first.cpu_ms), "", ""),
        ]
    report.rows += rows
    report.notes.append(
        f"12: a contract of {shape.products} USAGE products × {shape.models} models with a prepaid commit of one access "
        f"segment per month and a free credit over {months} months, both for every product, read in its first month "
        f"and, for another customer, in its {months}th, the {months - 1} periods before finalized by cycle close "
        "(CycleCloseService.finalize, which stores the balance checkpoint with each finalization) after the same usage "
        "in each. The current draft is read as GET /v1/customers/<id>/invoices/<id> reads it (InvoiceService.get), the "
        "balances as getNetBalance does (InvoiceService.balances_burn_down): read requests and items, and process CPU "
        f"minus the AWS calls' own, median of {1 if quick else 5} warm calls. From the checkpoint a read lists only the "
        "stored invoices of periods from its instant (none here: one more item, the checkpoint's, against month 1) and "
        f"prices only those periods. 12d/12h read month {months} by the whole replay (no checkpoint: every stored "
        "invoice listed and its drawdowns replayed, every period priced), checked equal."
    )
