"""The capacity plan for 1k, 10k and 100k events/s, from the units one run measured (units.py), the
deployed settings (infra/settings.py) and AWS's default quotas (prices.py): what each rate asks of
API Gateway, the tables, their streams and Lambda, and which quota to raise first.

Model, beyond the measured units:
- A table's partitions: enough for its write units at 1,000 per second and its read units at 3,000
  per second, and for its data at 10 GB each once 34 days of events are kept. A stream has about one
  shard per partition, and a mapping runs at most (shards × parallelization factor) batches at once.
- Per shard, events arrive at rate / shards; a batch holds what one batching window gathers, at
  least one record and at most the batch size. The measured counter writes are per batch (one
  customer's batch writes each of its counters once), so fewer events per batch cost more writes
  per event.
- Lambda concurrency is arrivals × duration (Little's law) at the measured median durations, capped
  by the mapping's bound for the stream consumers.
- Provisioned tables (auto scaled): each table's capacity is its units/s over the target
  utilization, at least its least units (infra/settings.py); each index of the billing table at
  least its least units too (the writes an index takes are not metered: alert states, 0.002 WRU an
  event, are the only per-event billing writes). The reads of all paths are counted on both the
  counters and billing tables, an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.bench import prices
from infra.bench.units import WRITES_TABLE, Units
from infra.settings import ScaleSettings

RATES = (1_000, 10_000, 100_000)
STORAGE_DAYS = 34
PARTITION_BYTES = 10 * 2**30  # see PARTITION_SIZE_SOURCE
PARTITION_SIZE_SOURCE = (
    "10 GB per partition: NOT CONFIRMED on a current AWS page (older DynamoDB guide "
    "'Guidelines for tables', as cited by third parties)"
)


@dataclass(frozen=True)
class Plan:
    rate: int  # events/s
    posts_per_s: float
    events_wru_per_s: float
    events_rru_per_s: float
    events_partitions_throughput: int
    events_partitions_size: int
    counters_wru_per_s: float
    counters_rru_per_s: float
    counters_partitions: int
    billing_wru_per_s: float
    billing_rru_per_s: float
    events_per_batch: float
    aggregator_max_concurrency: int
    aggregator_concurrency: float
    alerts_max_concurrency: int
    alerts_concurrency: float
    ingest_concurrency: float

    @property
    def events_partitions(self) -> int:
        return max(self.events_partitions_throughput, self.events_partitions_size)

    @property
    def lambda_concurrency(self) -> float:
        return self.ingest_concurrency + self.aggregator_concurrency + self.alerts_concurrency


def _partitions(wru: float, rru: float) -> int:
    return max(1, math.ceil(wru / prices.DYNAMODB_PARTITION_WCU.value + rru / prices.DYNAMODB_PARTITION_RCU.value))


def steady_events_per_batch(units: Units, settings: ScaleSettings | None = None) -> float:
    """Events per aggregator batch once the events table holds its 34 days: about the same at any
    planned rate, as the table's size, not the rate, sets its shards (the plan's 1k events/s)."""
    return plan(units, RATES[0], settings).events_per_batch


def batch_factor(units: Units, settings: ScaleSettings | None = None) -> float:
    """How many times the measured per-batch units (the aggregator's and the alerts' calls, writes
    and reads per event) the steady batches cost: measured events per batch ÷ steady ones."""
    measured = units.events_per_aggregation_batch
    return measured / steady_events_per_batch(units, settings) if measured else 1.0


def plan(units: Units, rate: int, settings: ScaleSettings | None = None) -> Plan:
    settings = settings or ScaleSettings.defaults()
    posts = rate / units.events_per_post
    events_wru = rate * units.wru_per_event.get("ingest", 0.0)
    events_rru = 0.0
    stored = rate * 86_400 * STORAGE_DAYS * units.event_item_bytes
    by_throughput = _partitions(events_wru, events_rru)
    by_size = max(1, math.ceil(stored / PARTITION_BYTES))
    shards = max(by_throughput, by_size)
    # Events per aggregator batch at this rate. The aggregator's and the alerts' units are per batch
    # (one customer's batch writes each of its counters once): measured at the measured batches,
    # they scale by measured ÷ these.
    per_shard = rate / shards
    window = max(settings.aggregate_batching_window_s, 1)  # with no window a poll gathers about 1 s
    batch = min(float(settings.aggregate_batch_size), max(1.0, per_shard * window))
    factor = (units.events_per_aggregation_batch or batch) / batch

    def per_event(path: str, measured: dict[str, float]) -> float:
        return measured.get(path, 0.0) * (factor if path in ("aggregation", "alerts") else 1.0)

    # Each path writes one table (WRITES_TABLE): ingest events, aggregation counters, alerts billing.
    # No path reads the events table; the paths' reads go to the counters and billing tables, all
    # counted on both as an upper bound.
    reads = rate * sum(per_event(path, units.rru_per_event) for path in WRITES_TABLE)
    counters_wru = rate * per_event("aggregation", units.wru_per_event)
    counters_partitions = _partitions(counters_wru, reads)
    aggregate_invocations = rate / batch
    alerts_per_batch = (units.invocations_per_event["alerts"] / units.invocations_per_event["aggregation"]
                        if units.invocations_per_event.get("aggregation") else 0.0)
    aggregator_max = shards * settings.aggregate_parallelization_factor
    alerts_max = counters_partitions * settings.alerts_parallelization_factor

    def busy(invocations: float, path: str, cap: float) -> float:
        return min(cap, invocations * units.lambda_ms(path) / 1000)

    return Plan(
        rate=rate,
        posts_per_s=posts,
        events_wru_per_s=events_wru,
        events_rru_per_s=events_rru,
        events_partitions_throughput=by_throughput,
        events_partitions_size=by_size,
        counters_wru_per_s=counters_wru,
        counters_rru_per_s=reads,
        counters_partitions=counters_partitions,
        billing_wru_per_s=rate * per_event("alerts", units.wru_per_event),
        billing_rru_per_s=reads,
        events_per_batch=batch,
        aggregator_max_concurrency=aggregator_max,
        aggregator_concurrency=busy(aggregate_invocations, "aggregation", aggregator_max),
        alerts_max_concurrency=alerts_max,
        alerts_concurrency=busy(aggregate_invocations * alerts_per_batch, "alerts", alerts_max),
        ingest_concurrency=busy(posts, "ingest", math.inf),
    )


BILLING_INDEXES = 2  # infra/constructs/tables.py: gsi1, gsi2


@dataclass(frozen=True)
class Provisioned:
    """Capacity units per table at the target utilization (auto scaling's steady state)."""

    wcu: dict[str, int]  # table -> write capacity units
    rcu: dict[str, int]
    index_wcu: int  # each index of the billing table
    index_rcu: int

    @property
    def account_wcu(self) -> int:
        return sum(self.wcu.values()) + BILLING_INDEXES * self.index_wcu

    @property
    def account_rcu(self) -> int:
        return sum(self.rcu.values()) + BILLING_INDEXES * self.index_rcu


def provisioned(p: Plan, settings: ScaleSettings | None = None) -> Provisioned:
    settings = settings or ScaleSettings.defaults()
    target = settings.table_target_utilization_percent / 100
    consumed = {"events": (p.events_wru_per_s, p.events_rru_per_s),
                "counters": (p.counters_wru_per_s, p.counters_rru_per_s),
                "billing": (p.billing_wru_per_s, p.billing_rru_per_s)}
    wcu, rcu = {}, {}
    for table, (wru, rru) in consumed.items():
        wcu[table] = max(getattr(settings, f"{table}_write_units"), math.ceil(wru / target))
        rcu[table] = max(getattr(settings, f"{table}_read_units"), math.ceil(rru / target))
    return Provisioned(wcu, rcu, settings.billing_write_units, settings.billing_read_units)


def quotas_to_raise_provisioned(p: Plan, settings: ScaleSettings | None = None) -> list[str]:
    """Provisioned tables: the per-table and per-account capacity quotas, and auto scaling's most
    units (the settings) where the plan needs more."""
    settings = settings or ScaleSettings.defaults()
    units = provisioned(p, settings)
    raise_ = []
    for kind, by_table in (("write", units.wcu), ("read", units.rcu)):
        short = "WCU" if kind == "write" else "RCU"
        for table, needed in by_table.items():
            if needed > prices.DYNAMODB_TABLE_WCU.value:
                raise_.append(f"DynamoDB {table} table {short} to {needed:,}")
            if needed > settings.provisioned_units(table, kind)[1]:
                raise_.append(f"-c {table}_max_{kind}_units to {needed:,}")
    if units.account_wcu > prices.DYNAMODB_ACCOUNT_WCU.value:
        raise_.append(f"DynamoDB account WCU to {units.account_wcu:,}")
    if units.account_rcu > prices.DYNAMODB_ACCOUNT_RCU.value:
        raise_.append(f"DynamoDB account RCU to {units.account_rcu:,}")
    return raise_


def quotas_to_raise(p: Plan, settings: ScaleSettings | None = None) -> list[str]:
    settings = settings or ScaleSettings.defaults()
    raise_ = []
    if p.posts_per_s > settings.api_rate_limit:
        raise_.append(f"stage throttle -c api_rate_limit (now {settings.api_rate_limit:,}/s)")
    if p.posts_per_s > prices.API_GATEWAY_ACCOUNT_RPS.value:
        raise_.append("API Gateway account requests/s")
    for table, wru in (("events", p.events_wru_per_s), ("counters", p.counters_wru_per_s),
                       ("billing", p.billing_wru_per_s)):
        if wru > prices.DYNAMODB_TABLE_WRU_PER_S.value:
            raise_.append(f"DynamoDB {table} table WRU/s")
    if p.events_rru_per_s > prices.DYNAMODB_TABLE_RRU_PER_S.value:
        raise_.append("DynamoDB events table RRU/s")
    if p.lambda_concurrency > prices.LAMBDA_CONCURRENCY.value:
        raise_.append("Lambda concurrent executions")
    return raise_


def _n(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:,.1f}"


def plan_rows(units: Units, settings: ScaleSettings | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one column per rate, one row per figure, as printed and as in the README."""
    settings = settings or ScaleSettings.defaults()
    plans = [plan(units, rate, settings) for rate in RATES]
    api_quota = prices.API_GATEWAY_ACCOUNT_RPS.value
    table_quota = prices.DYNAMODB_TABLE_WRU_PER_S.value
    lambda_quota = prices.LAMBDA_CONCURRENCY.value

    def pct(value: float, quota: float) -> str:
        return f"{_n(value)} ({value / quota:.0%})"

    rows = [
        [f"API Gateway requests/s (account quota {api_quota:,}; stage {settings.api_rate_limit:,})",
         *(pct(p.posts_per_s, api_quota) for p in plans)],
        [f"events table WRU/s (table quota {table_quota:,})", *(pct(p.events_wru_per_s, table_quota) for p in plans)],
        ["events table RRU/s", *(_n(p.events_rru_per_s) for p in plans)],
        ["events partitions: by throughput / by 34 days of data",
         *(f"{p.events_partitions_throughput:,} / {p.events_partitions_size:,}" for p in plans)],
        ["events stream shards (≈ partitions)", *(f"{p.events_partitions:,}" for p in plans)],
        ["events per aggregator batch", *(_n(p.events_per_batch) for p in plans)],
        [f"counters table WRU/s (table quota {table_quota:,})", *(pct(p.counters_wru_per_s, table_quota) for p in plans)],
        ["counters partitions = stream shards", *(f"{p.counters_partitions:,}" for p in plans)],
        ["billing table WRU/s / RRU/s", *(f"{_n(p.billing_wru_per_s)} / {_n(p.billing_rru_per_s)}" for p in plans)],
        [f"aggregator concurrency: busy / most (shards × {settings.aggregate_parallelization_factor})",
         *(f"{_n(p.aggregator_concurrency)} / {p.aggregator_max_concurrency:,}" for p in plans)],
        [f"alerts concurrency: busy / most (shards × {settings.alerts_parallelization_factor})",
         *(f"{_n(p.alerts_concurrency)} / {p.alerts_max_concurrency:,}" for p in plans)],
        ["ingest concurrency", *(_n(p.ingest_concurrency) for p in plans)],
        [f"Lambda concurrency, busy (account limit {lambda_quota:,})",
         *(pct(p.lambda_concurrency, lambda_quota) for p in plans)],
        ["quotas to raise, on-demand tables", *("; ".join(quotas_to_raise(p, settings)) or "none" for p in plans)],
        *_provisioned_rows(plans, settings),
    ]
    return ["", *(f"{rate:,} events/s" for rate in RATES)], rows


def _provisioned_rows(plans: list[Plan], settings: ScaleSettings) -> list[list[str]]:
    """The same rates on provisioned tables, auto scaled at the target utilization."""
    target = settings.table_target_utilization_percent
    table_quota, account_quota = prices.DYNAMODB_TABLE_WCU.value, prices.DYNAMODB_ACCOUNT_WCU.value
    units = [provisioned(p, settings) for p in plans]

    def pct(value: int, quota: int) -> str:
        return f"{value:,} ({value / quota:.0%})"

    return [
        [f"provisioned at {target} %: events table WCU / RCU (table quota {table_quota:,} each)",
         *(f"{pct(u.wcu['events'], table_quota)} / {u.rcu['events']:,}" for u in units)],
        ["provisioned: counters table WCU / RCU", *(f"{pct(u.wcu['counters'], table_quota)} / "
                                                   f"{pct(u.rcu['counters'], table_quota)}" for u in units)],
        [f"provisioned: billing table WCU / RCU (and each of its {BILLING_INDEXES} indexes, at least)",
         *(f"{u.wcu['billing']:,} / {pct(u.rcu['billing'], table_quota)} ({u.index_wcu:,} / {u.index_rcu:,})"
           for u in units)],
        [f"provisioned: all tables and indexes, WCU / RCU (account quota {account_quota:,} each)",
         *(f"{pct(u.account_wcu, account_quota)} / {pct(u.account_rcu, account_quota)}" for u in units)],
        ["quotas and settings to raise, provisioned tables",
         *("; ".join(quotas_to_raise_provisioned(p, settings)) or "none" for p in plans)],
    ]


def units_rows(units: Units) -> list[list[str]]:
    """The measured units the plan and the cost come from, one row per path."""
    rows = []
    for path in ("ingest", "aggregation", "alerts"):
        rows.append([
            path,
            f"{units.invocations_per_event.get(path, 0.0):.4f}",
            f"{units.lambda_ms(path):.0f}",
            str(units.memory_mb.get(path, "")),
            f"{units.wru_per_event.get(path, 0.0):.3f}",
            f"{units.rru_per_event.get(path, 0.0):.3f}",
        ])
    return rows


UNITS_HEADER = ["path", "invocations/event", "billed ms/invocation", "memory MB", "WRU/event", "RRU/event"]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(units: Units, settings: ScaleSettings | None = None) -> str:
    """The README's "Scale and cost" tables: the measured units, the plan, and the cost breakdown."""
    from infra.bench.cost import MODE_NAMES, MODES, breakdown_rows, cost_per_million

    header, rows = plan_rows(units, settings)
    tables = [_markdown_table(UNITS_HEADER, units_rows(units)), _markdown_table(header, rows)]
    for mode in MODES:
        cost = [list(row) for row in breakdown_rows(cost_per_million(units, mode, settings))]
        tables.append(f"Cost per million events, {MODE_NAMES[mode]}:\n\n"
                      + _markdown_table(["service", "item", "per million events", "cost", "share"], cost))
    return "\n\n".join(tables)
