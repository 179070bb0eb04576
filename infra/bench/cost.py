"""What a million accepted events cost on AWS, all-in, from the units one run measured (units.py)
and the list prices of one region (prices.py): the breakdown `tally bench` prints.

Per million events at `events_per_post` events a post: API Gateway requests; Lambda requests and
GB-seconds of ingest, aggregation and alerts at the deployed memory (infra/settings.py); DynamoDB
write and read request units by path; 34 days of the raw events' storage and of their
point-in-time-recovery backup (the stack enables it); the streams' reads (free: Lambda triggers);
SNS publishes. DynamoDB's reads and writes are priced two ways: on-demand, per request unit; and
provisioned with auto scaling, per capacity unit-hour at the units/s the load asks for over the
target utilization (infra/settings.py), which assumes a steady load above the tables' least
units (a load that swings leaves capacity idle while auto scaling catches up). Not per event, so
left out: the API function's other routes, the counters' storage (it grows with customers ×
metrics × time buckets, not with events: reported beside), cycle close (Step Functions, once per
due period), CloudWatch Logs and X-Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from infra.bench import prices
from infra.bench.plan import batch_factor
from infra.bench.plan import steady_events_per_batch as plan_steady_batch
from infra.bench.units import ONE_VCPU_MB, PATHS, WRITES_TABLE, Units
from infra.settings import ScaleSettings

MILLION = Decimal(1_000_000)
STORAGE_DAYS = 34  # transaction ids are deduplicated for 34 days; raw events expire then (TTL deletes are free)
DAYS_PER_MONTH = Decimal("30.4375")  # 365.25 / 12: a GB-month is a GB kept for an average month
GIB = Decimal(2**30)
COST_GOAL_USD = Decimal("0.80")
SECONDS_PER_HOUR = Decimal(3600)
MODES = ("on_demand", "provisioned")
MODE_NAMES = {"on_demand": "on-demand tables", "provisioned": "provisioned tables, auto scaled"}
# Paths whose calls and units are per stream batch (the measured ones at the measured batches).
PER_BATCH_PATHS = ("aggregation", "alerts")


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


def cost_per_million(units: Units, mode: str = "on_demand", settings: ScaleSettings | None = None) -> list[Line]:
    """The cost of one million accepted events, line by line, in USD (precise, unrounded).

    `mode` prices DynamoDB's reads and writes: "on_demand" per request unit, or "provisioned" per
    capacity unit-hour, the capacity auto scaling keeps at the target utilization for the measured
    rate (capacity = units/s ÷ utilization; above the tables' least units, which a steady 1k
    events/s passes). The aggregator's and the alerts' per-batch units are taken at the batches the
    capacity plan finds once the events table holds its 34 days (plan.batch_factor)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    settings = settings or ScaleSettings.defaults()
    utilization = Decimal(settings.table_target_utilization_percent) / 100
    factor = _d(batch_factor(units, settings))
    lines: list[Line] = []

    def add(service: str, item: str, quantity: Decimal, price: prices.Price) -> None:
        lines.append(Line(service, item, quantity, price.short or price.unit, quantity * price.usd))

    def per_event(path: str, measured: float) -> Decimal:
        """Per-batch paths' units at the steady batches; ingest's are per post, as measured."""
        return _d(measured) * (factor if path in PER_BATCH_PATHS else 1)

    def steady(path: str) -> str:
        return f", × {factor:.2f} at steady batches" if path in PER_BATCH_PATHS and factor != 1 else ""

    def dynamodb(path: str, what: str, request_units: Decimal, on_demand: prices.Price,
                 provisioned: prices.Price) -> None:
        if mode == "on_demand":
            add("DynamoDB", what, MILLION * request_units, on_demand)
        else:  # a unit-hour serves 3,600 request units at 100 %
            add("DynamoDB", f"{what}, provisioned at {settings.table_target_utilization_percent} %",
                MILLION * request_units / utilization / SECONDS_PER_HOUR, provisioned)

    posts = MILLION / units.events_per_post
    add("API Gateway", f"HTTP API requests, one per {units.events_per_post}-event post", posts,
        prices.API_GATEWAY_HTTP_REQUEST)
    for path in PATHS:
        invocations = MILLION * per_event(path, units.invocations_per_event[path])
        if not invocations:
            continue
        memory, ms = units.memory_mb[path], _d(units.lambda_ms(path))
        add("Lambda", f"{path} requests{steady(path)}", invocations, prices.LAMBDA_REQUEST)
        # Billed per 1 ms, rounded up: the median call's duration, whole milliseconds.
        billed_ms = ms.to_integral_value(rounding="ROUND_CEILING")
        gb_seconds = invocations * billed_ms / 1000 * Decimal(memory) / 1024
        add("Lambda", f"{path} duration, {memory} MB × {billed_ms} ms{steady(path)}", gb_seconds,
            prices.LAMBDA_GB_SECOND)
    for path in PATHS:
        if units.wru_per_event.get(path):
            dynamodb(path, f"{path} writes ({WRITES_TABLE[path]} table), {units.wru_per_event[path]:.3f} WRU/event"
                     f"{steady(path)}", per_event(path, units.wru_per_event[path]),
                     prices.DYNAMODB_WRITE_REQUEST_UNIT, prices.DYNAMODB_WRITE_CAPACITY_UNIT_HOUR)
    for path in PATHS:
        if units.rru_per_event.get(path):
            dynamodb(path, f"{path} reads, {units.rru_per_event[path]:.3f} RRU/event{steady(path)}",
                     per_event(path, units.rru_per_event[path]),
                     prices.DYNAMODB_READ_REQUEST_UNIT, prices.DYNAMODB_READ_CAPACITY_UNIT_HOUR)
    gb_months = MILLION * _d(units.event_item_bytes) / GIB * STORAGE_DAYS / DAYS_PER_MONTH
    add("DynamoDB", f"storage, raw events ({units.event_item_bytes:.0f} B each) for {STORAGE_DAYS} days", gb_months,
        prices.DYNAMODB_STORAGE_GB_MONTH)
    if units.events_pitr:  # -c events_point_in_time_recovery=false leaves it out
        add("DynamoDB", f"point-in-time recovery of them, {STORAGE_DAYS} days", gb_months, prices.DYNAMODB_PITR_GB_MONTH)
    stream_batches = MILLION * (per_event("aggregation", units.invocations_per_event["aggregation"])
                                + per_event("alerts", units.invocations_per_event["alerts"]))
    add("DynamoDB Streams", "GetRecords by the two Lambda mappings (at least one per batch)", stream_batches,
        prices.DYNAMODB_STREAM_READ_BY_LAMBDA)
    add("SNS", "alert publishes", MILLION * _d(units.sns_publishes_per_event), prices.SNS_PUBLISH)
    return lines


def total(lines: list[Line]) -> Decimal:
    return sum((line.usd for line in lines), Decimal(0))


def cents(usd: Decimal, places: str = "0.001") -> str:
    return str((usd * 100).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def _largest_first(line: Line) -> tuple:
    """Largest first by the cents as printed, then by name: the same order whatever the caller's
    decimal context (the local stack sets 38 digits, a fresh process has 28, and two lines equal as
    printed may differ in their last digits either way)."""
    return (-(line.usd * 100).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP), line.service, line.item)


def breakdown_rows(lines: list[Line]) -> list[tuple[str, str, str, str, str]]:
    """(service, item, quantity per million events, cents, share) rows, largest first, then the total."""
    whole = total(lines)
    rows = []
    for line in sorted(lines, key=_largest_first):
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


MEMORY_CHOICES_MB = (256, 512, 1024, 1769)


def lambda_cents_at(units: Units, path: str, memory_mb: int, settings: ScaleSettings | None = None
                    ) -> tuple[Decimal, Decimal]:
    """(billed ms, cents per million events) of `path`'s duration were it deployed with
    `memory_mb`: the measured CPU at that memory's share of a vCPU, plus the measured waits (at the
    steady batches, as cost_per_million)."""
    share = min(Decimal(1), Decimal(memory_mb) / ONE_VCPU_MB)
    ms = (_d(units.cpu_ms_per_invocation[path]) / share + _d(units.moto_ms_per_invocation[path])).to_integral_value(
        rounding="ROUND_CEILING")
    invocations = MILLION * _d(units.invocations_per_event[path])
    if path in PER_BATCH_PATHS:
        invocations *= _d(batch_factor(units, settings))
    return ms, invocations * ms / 1000 * Decimal(memory_mb) / 1024 * prices.LAMBDA_GB_SECOND.usd * 100


def figure_cost(report: Any, quick: bool) -> None:
    """Figure 10 of `tally bench`: measure the units (units.py), save them for `tally capacity`, and
    report the cost per million events on on-demand tables against the floor of storing each event
    once (10), and on provisioned, auto-scaled tables against on-demand (10b), each against the goal."""
    from infra.bench.report import Row
    from infra.bench.units import UNITS_FILE, measure_units

    units = measure_units(quick)
    units.save()
    settings = ScaleSettings.defaults()
    by_mode = {mode: cost_per_million(units, mode, settings) for mode in MODES}
    on_demand, provisioned = total(by_mode["on_demand"]), total(by_mode["provisioned"])
    floor = floor_per_million(units)
    report.figures |= {
        "cost_usd_per_million_events": float(on_demand),
        "cost_provisioned_usd_per_million_events": float(provisioned),
        "cost_floor_usd_per_million_events": float(floor),
        "cost_vs_floor": float(on_demand / floor),
        "cost_provisioned_vs_on_demand": float(provisioned / on_demand),
        **{f"wru_per_event_{path}": units.wru_per_event.get(path, 0.0) for path in PATHS},
    }
    target = settings.table_target_utilization_percent
    report.rows += [
        Row(f"10 cost per million events, {units.events_per_post}-event posts, on-demand tables", f"${on_demand:.3f}",
            f"floor (1 WRU + 34 days stored) ${floor:.3f}", f"{on_demand / floor:.2f}×",
            f"≤ ${COST_GOAL_USD}", "met" if on_demand <= COST_GOAL_USD else "missed"),
        Row(f"10b the same, provisioned tables auto scaled at {target} %", f"${provisioned:.3f}",
            f"on-demand ${on_demand:.3f}", f"{provisioned / on_demand:.2f}×",
            f"≤ ${COST_GOAL_USD}", "met" if provisioned <= COST_GOAL_USD else "missed"),
    ]
    where = {mode: "; ".join(f"{line.service} {line.item}: {cents(line.usd)}¢" for line in
                             sorted(lines, key=_largest_first) if line.usd)
             for mode, lines in by_mode.items()}
    ms = ", ".join(f"{path} {units.cpu_ms_per_invocation[path]:.1f} ms CPU + {units.moto_ms_per_invocation[path]:.1f} "
                   f"in moto → {units.lambda_ms(path):.0f} ms at {units.memory_mb[path]} MB"
                   for path in PATHS if path in units.cpu_ms_per_invocation)
    memory = "; ".join(
        f"{path} " + ", ".join(f"{mb} MB {ms_at} ms {cents_at:.2f}¢" for mb in MEMORY_CHOICES_MB
                               for ms_at, cents_at in [lambda_cents_at(units, path, mb, settings)])
        for path in PATHS if path in units.cpu_ms_per_invocation)
    met = [MODE_NAMES[mode] for mode, whole in (("on_demand", on_demand), ("provisioned", provisioned))
           if whole <= COST_GOAL_USD]
    report.notes.append(
        f"10: us-east-1 list prices of {prices.TAKEN_ON} (infra/bench/prices.py) × units measured with the real "
        f"handlers on in-process moto, {units.events:,} events in {units.events_per_post}-event posts, DynamoDB "
        f"capacity by the bench's meter (infra/bench/units.py). The goal of ${COST_GOAL_USD} is met with "
        f"{' and '.join(met) or 'neither table mode'}. The aggregator's and alerts' units are per stream batch: "
        f"measured at {units.events_per_aggregation_batch:.0f}-event batches, priced at the "
        f"{plan_steady_batch(units, settings):.0f}-event batches the capacity plan finds once the events table "
        f"holds its 34 days (× {batch_factor(units, settings):.2f}). Provisioned: capacity = units/s ÷ {target} % "
        f"(auto scaling's target), per unit-hour, for a steady load. "
        f"Where each cent goes, on-demand: {where['on_demand']}. "
        f"Provisioned: {where['provisioned']}. "
        f"Median warm call: {ms} (handler CPU at the memory's CPU share, 1 vCPU at 1,769 MB; moto's CPU "
        f"stands in for the waits on DynamoDB). Duration at other memory sizes, per million events: {memory}. "
        f"Counters take {units.counter_bytes_total / 1024:.1f} KB for this "
        f"run's one customer: they grow with customers × metrics × buckets, not events, and are left out. "
        f"Units saved to {UNITS_FILE.relative_to(UNITS_FILE.parents[2])}: `tally capacity` prints the plan for "
        f"1k, 10k and 100k events/s from them."
    )
