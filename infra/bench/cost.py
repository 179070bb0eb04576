"""What a million accepted events cost on AWS, all-in, from the units one run measured (units.py)
and the list prices of one region (prices.py): the breakdown `tally bench` prints.

Per million events at `events_per_post` events a post: API Gateway requests; Lambda requests and
GB-seconds of ingest, aggregation and alerts at the deployed memory (infra/settings.py); DynamoDB
write and read request units by path; 34 days of the raw events' storage and of their
point-in-time-recovery backup (the stack enables it); the streams' reads (free: Lambda triggers);
SNS publishes. Not per event, so left out: the API function's other routes, the counters' storage
(it grows with customers × metrics × time buckets, not with events: reported beside), cycle close
(Step Functions, once per due period), CloudWatch Logs and X-Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from infra.bench import prices
from infra.bench.units import PATHS, WRITES_TABLE, Units

MILLION = Decimal(1_000_000)
STORAGE_DAYS = 34  # transaction ids are deduplicated for 34 days; raw events expire then (TTL deletes are free)
DAYS_PER_MONTH = Decimal("30.4375")  # 365.25 / 12: a GB-month is a GB kept for an average month
GIB = Decimal(2**30)
COST_GOAL_USD = Decimal("0.80")


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: Decimal  # per million events, in `unit`s
    unit: str  # short
    usd: Decimal

    @property
    def cents(self) -> Decimal:
        return self.usd * 100


def _d(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def cost_per_million(units: Units) -> list[Line]:
    """The cost of one million accepted events, line by line, in USD (precise, unrounded)."""
    lines: list[Line] = []

    def add(service: str, item: str, quantity: Decimal, price: prices.Price) -> None:
        lines.append(Line(service, item, quantity, price.short or price.unit, quantity * price.usd))

    posts = MILLION / units.events_per_post
    add("API Gateway", f"HTTP API requests, one per {units.events_per_post}-event post", posts,
        prices.API_GATEWAY_HTTP_REQUEST)
    for path in PATHS:
        invocations = MILLION * _d(units.invocations_per_event[path])
        if not invocations:
            continue
        memory, ms = units.memory_mb[path], _d(units.lambda_ms(path))
        add("Lambda", f"{path} requests", invocations, prices.LAMBDA_REQUEST)
        # Billed per 1 ms, rounded up: the median call's duration, whole milliseconds.
        billed_ms = ms.to_integral_value(rounding="ROUND_CEILING")
        gb_seconds = invocations * billed_ms / 1000 * Decimal(memory) / 1024
        add("Lambda", f"{path} duration, {memory} MB × {billed_ms} ms", gb_seconds, prices.LAMBDA_GB_SECOND)
    for path in PATHS:
        if units.wru_per_event.get(path):
            add("DynamoDB", f"{path} writes ({WRITES_TABLE[path]} table), {units.wru_per_event[path]:.3f} WRU/event",
                MILLION * _d(units.wru_per_event[path]), prices.DYNAMODB_WRITE_REQUEST_UNIT)
    for path in PATHS:
        if units.rru_per_event.get(path):
            add("DynamoDB", f"{path} reads, {units.rru_per_event[path]:.3f} RRU/event",
                MILLION * _d(units.rru_per_event[path]), prices.DYNAMODB_READ_REQUEST_UNIT)
    gb_months = MILLION * _d(units.event_item_bytes) / GIB * STORAGE_DAYS / DAYS_PER_MONTH
    add("DynamoDB", f"storage, raw events ({units.event_item_bytes:.0f} B each) for {STORAGE_DAYS} days", gb_months,
        prices.DYNAMODB_STORAGE_GB_MONTH)
    if units.events_pitr:  # -c events_point_in_time_recovery=false leaves it out
        add("DynamoDB", f"point-in-time recovery of them, {STORAGE_DAYS} days", gb_months, prices.DYNAMODB_PITR_GB_MONTH)
    stream_batches = MILLION * (_d(units.invocations_per_event["aggregation"]) + _d(units.invocations_per_event["alerts"]))
    add("DynamoDB Streams", "GetRecords by the two Lambda mappings (at least one per batch)", stream_batches,
        prices.DYNAMODB_STREAM_READ_BY_LAMBDA)
    add("SNS", "alert publishes", MILLION * _d(units.sns_publishes_per_event), prices.SNS_PUBLISH)
    return lines


def total(lines: list[Line]) -> Decimal:
    return sum((line.usd for line in lines), Decimal(0))


def cents(usd: Decimal, places: str = "0.001") -> str:
    return str((usd * 100).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def breakdown_rows(lines: list[Line]) -> list[tuple[str, str, str, str, str]]:
    """(service, item, quantity per million events, cents, share) rows, largest first, then the total."""
    whole = total(lines)
    rows = []
    for line in sorted(lines, key=lambda line: line.usd, reverse=True):
        share = f"{line.usd / whole * 100:.1f} %" if whole else ""
        rows.append((line.service, line.item, f"{line.quantity:,.2f} {line.unit}",
                     f"{cents(line.usd)}¢", share))
    rows.append(("Total", "per million events", "", f"{cents(whole)}¢", "100 %"))
    return rows


def floor_per_million(units: Units) -> Decimal:
    """The floor to compare with: each event written once by a standard write (1 WRU) and kept its
    34 days, nothing else (no API, no Lambda, no counters, no backup)."""
    gb_months = MILLION * _d(units.event_item_bytes) / GIB * STORAGE_DAYS / DAYS_PER_MONTH
    return MILLION * prices.DYNAMODB_WRITE_REQUEST_UNIT.usd + gb_months * prices.DYNAMODB_STORAGE_GB_MONTH.usd


def figure_cost(report: Any, quick: bool) -> None:
    """Figure 10 of `tally bench`: measure the units (units.py), save them for `tally capacity`, and
    report the cost per million events against the floor of storing each event once."""
    from infra.bench.report import Row
    from infra.bench.units import UNITS_FILE, measure_units

    units = measure_units(quick)
    units.save()
    lines = cost_per_million(units)
    whole, floor = total(lines), floor_per_million(units)
    report.figures |= {
        "cost_usd_per_million_events": float(whole),
        "cost_floor_usd_per_million_events": float(floor),
        "cost_vs_floor": float(whole / floor),
        **{f"wru_per_event_{path}": units.wru_per_event.get(path, 0.0) for path in PATHS},
    }
    report.rows.append(
        Row(f"10 cost per million events, {units.events_per_post}-event posts", f"${whole:.3f}",
            f"floor (1 WRU + 34 days stored) ${floor:.3f}", f"{whole / floor:.2f}×",
            f"≤ ${COST_GOAL_USD}", "met" if whole <= COST_GOAL_USD else "missed")
    )
    where = "; ".join(f"{line.service} {line.item}: {cents(line.usd)}¢" for line in
                      sorted(lines, key=lambda line: line.usd, reverse=True) if line.usd)
    ms = ", ".join(f"{path} {units.cpu_ms_per_invocation[path]:.1f} ms CPU + {units.moto_ms_per_invocation[path]:.1f} "
                   f"in moto → {units.lambda_ms(path):.0f} ms at {units.memory_mb[path]} MB"
                   for path in PATHS if path in units.cpu_ms_per_invocation)
    report.notes.append(
        f"10: us-east-1 list prices of {prices.TAKEN_ON} (infra/bench/prices.py) × units measured with the real "
        f"handlers on in-process moto, {units.events:,} events in {units.events_per_post}-event posts, DynamoDB "
        f"capacity by the bench's meter (infra/bench/units.py). Where each cent goes: {where}. "
        f"Median warm call: {ms} (handler CPU at the memory's CPU share, 1 vCPU at 1,769 MB; moto's CPU "
        f"stands in for the waits on DynamoDB). Counters take {units.counter_bytes_total / 1024:.1f} KB for this "
        f"run's one customer: they grow with customers × metrics × buckets, not events, and are left out. "
        f"Units saved to {UNITS_FILE.relative_to(UNITS_FILE.parents[2])}: `tally capacity` prints the plan for "
        f"1k, 10k and 100k events/s from them."
    )
