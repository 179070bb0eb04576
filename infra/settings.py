"""The deployed settings that decide how far Tally scales and what it costs, read from CDK context in
this one place: `cdk deploy -c ingest_memory_mb=1024 -c events_billing_mode=provisioned ...`.

Every setting is one flat context key with a default that fits the capacity plan (`tally capacity`,
README "Scale and cost"): 100k events/s in 100-event posts. `SETTINGS` is the list the README's
table is generated from; `ScaleSettings.from_node` is what the stack reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# Hard bounds of the services, so a bad `-c` fails at synthesis rather than at deploy time.
LAMBDA_MEMORY_MB = (128, 10_240)
STREAM_BATCH_SIZE = (1, 10_000)  # DynamoDB stream event source mappings
BATCHING_WINDOW_S = (0, 300)
PARALLELIZATION_FACTOR = (1, 10)
SQS_MAX_CONCURRENCY = (2, 1_000)
BILLING_MODES = ("on_demand", "provisioned")
# DynamoDB auto scaling's target tracking accepts 20..90 % (Application Auto Scaling, DynamoDB).
TARGET_UTILIZATION_PERCENT = (20, 90)
TABLE_UNIT_QUOTA = 40_000  # DynamoDB's default per-table quota, provisioned or on-demand
TABLES = ("events", "counters", "billing")


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    meaning: str
    parse: Callable[[str, Any], Any]


def _int_in(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"context {key}={value!r} is not a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"context {key}={number} is outside {low}..{high}")
        return number

    return parse


def _optional_int(low: int, high: int) -> Callable[[str, Any], int | None]:
    whole = _int_in(low, high)

    def parse(key: str, value: Any) -> int | None:
        if value is None or str(value).strip().lower() in ("", "none", "off"):
            return None
        return whole(key, value)

    return parse


def _flag(key: str, value: Any) -> bool:
    # `cdk -c key=value` passes strings; cdk.json passes JSON booleans.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"context {key}={value!r} is not true or false")


def _mode(key: str, value: Any) -> str:
    mode = str(value).strip().lower().replace("-", "_")
    if mode not in BILLING_MODES:
        raise ValueError(f"context {key}={value!r} is not one of {', '.join(BILLING_MODES)}")
    return mode


_memory = _int_in(*LAMBDA_MEMORY_MB)
_reserved = _optional_int(0, 100_000)
_units = _int_in(1, 40_000)  # DynamoDB's default per-table quota
_optional_units = _optional_int(1, 1_000_000)

SETTINGS: tuple[Setting, ...] = (
    # Lambda memory (CPU grows with it: 1,769 MB is one vCPU). GB-seconds are priced per memory.
    Setting("ingest_memory_mb", 512, "ingest function memory (MB); one 100-event post per call", _memory),
    Setting("api_memory_mb", 1024, "API function memory (MB)", _memory),
    # The stream consumers' calls mostly wait on DynamoDB: half a vCPU bills fewer GB-seconds than a
    # whole one for a call a third longer (figure 10's note: the measured call at each size), and a
    # batch every few seconds per shard leaves the time. Ingest keeps 512 MB: a client waits on it.
    Setting("aggregate_memory_mb", 512, "aggregator memory (MB); one batch of the events stream per call", _memory),
    Setting("alerts_memory_mb", 512, "alerts function memory (MB); one batch of the counters stream per call", _memory),
    Setting("delivery_memory_mb", 512, "invoice delivery function memory (MB)", _memory),
    Setting("backfill_memory_mb", 1024, "backfill function memory (MB); one scan page of the events table per call",
            _memory),
    # Cycle close (Step Functions tasks): runs once per due period, not per event.
    Setting("find_due_memory_mb", 512, "cycle close: the function that lists the due periods (MB)", _memory),
    Setting("finalize_memory_mb", 1024, "cycle close: the function that finalizes a period's invoices (MB)", _memory),
    Setting("publish_memory_mb", 512, "cycle close: the function that publishes invoice.finalized (MB)", _memory),
    Setting("notify_memory_mb", 512, "cycle close: the function that delivers lifecycle notifications (MB)", _memory),
    # Reserved concurrency: unset leaves a function on the account's shared pool (1,000 by default).
    Setting("ingest_reserved_concurrency", None, "reserved concurrency of the ingest function (unset: shared pool)", _reserved),
    Setting("api_reserved_concurrency", None, "reserved concurrency of the API function (unset: shared pool)", _reserved),
    # The events stream → aggregator mapping. Its parallelization factor is fixed at 1 (see
    # constructs/aggregator.py): the exactly-once high-water marks need one batch per shard at a time.
    Setting("aggregate_batch_size", 100, "events-stream records per aggregator batch (counter writes are per batch)",
            _int_in(*STREAM_BATCH_SIZE)),
    # Once the events table holds its 34 days, its size spreads it over so many partitions (and stream
    # shards) that each shard sees about 10 events/s at any rate (`tally capacity`): 10 s fill a
    # batch of about 100 events, so the counter writes per event stay those of full batches.
    Setting("aggregate_batching_window_s", 10, "seconds the aggregator's mapping waits to fill a batch: about 100 "
            "events per shard once the events table is full; usage shows up to this much later",
            _int_in(*BATCHING_WINDOW_S)),
    # The counters stream → alerts mapping.
    Setting("alerts_batch_size", 100, "counters-stream records per alerts batch", _int_in(*STREAM_BATCH_SIZE)),
    Setting("alerts_batching_window_s", 0, "seconds the alerts mapping waits to fill a batch (0: alert at once)",
            _int_in(*BATCHING_WINDOW_S)),
    Setting("alerts_parallelization_factor", 1, "concurrent alerts batches per counters-stream shard",
            _int_in(*PARALLELIZATION_FACTOR)),
    # Invoice delivery calls the billing provider (Stripe's default limit is 100 requests/s).
    Setting("delivery_max_concurrency", 10, "most concurrent invoice delivery calls (SQS event source)",
            _int_in(*SQS_MAX_CONCURRENCY)),
    # The HTTP API stage: the plan's 100k events/s is 1,000 posts/s of 100 events, plus API calls.
    Setting("api_rate_limit", 2_000, "HTTP API stage throttle, requests/s (account quota: 10,000)", _int_in(1, 1_000_000)),
    Setting("api_burst_limit", 4_000, "HTTP API stage burst (account burst: 5,000)", _int_in(1, 1_000_000)),
    # Tables. on_demand is the default: it bills per request, costs nothing idle and takes a burst at
    # once, which fits a small or spiky deployment. provisioned bills per unit-hour whether used or
    # not, with auto scaling (a target-tracking policy) following the load within minutes: at a
    # steady 1k events/s and up it costs about 60 % less per event (`tally capacity`, README
    # "Scale and cost"), but a burst faster than auto scaling is throttled until it catches up.
    Setting("events_billing_mode", "on_demand",
            "events table: on_demand (per request; fits small or spiky loads) or provisioned (per unit-hour, "
            "auto scaled; cheaper at a steady 1k events/s and up)", _mode),
    Setting("counters_billing_mode", "on_demand", "counters table: on_demand or provisioned", _mode),
    Setting("billing_billing_mode", "on_demand", "billing table: on_demand or provisioned", _mode),
    Setting("events_read_units", 5, "events table read capacity units, if provisioned: the start and auto "
            "scaling's least", _units),
    Setting("events_write_units", 100, "events table write capacity units, if provisioned: the start and auto "
            "scaling's least", _units),
    Setting("counters_read_units", 50, "counters table read capacity units, if provisioned: the start and auto "
            "scaling's least", _units),
    Setting("counters_write_units", 50, "counters table write capacity units, if provisioned: the start and auto "
            "scaling's least", _units),
    Setting("billing_read_units", 50, "billing table and each of its indexes: read capacity units, if provisioned: "
            "the start and auto scaling's least", _units),
    Setting("billing_write_units", 10, "billing table and each of its indexes: write capacity units, if provisioned: "
            "the start and auto scaling's least", _units),
    # The most units/s a table may use. On-demand: a ceiling (OnDemandThroughput), a cost guard,
    # unset for none. Provisioned: auto scaling's maximum, unset for the per-table quota; equal to
    # the least units, the capacity is fixed (no auto scaling).
    Setting("events_max_write_units", None, "events table: most write units/s, the on-demand ceiling (unset: none) "
            f"or auto scaling's maximum (unset: {TABLE_UNIT_QUOTA:,}, the table quota)", _optional_units),
    Setting("events_max_read_units", None, "events table: most read units/s, likewise", _optional_units),
    Setting("counters_max_write_units", None, "counters table: most write units/s, likewise", _optional_units),
    Setting("counters_max_read_units", None, "counters table: most read units/s, likewise", _optional_units),
    Setting("billing_max_write_units", None, "billing table and each of its indexes: most write units/s, likewise",
            _optional_units),
    Setting("billing_max_read_units", None, "billing table and each of its indexes: most read units/s, likewise",
            _optional_units),
    Setting("table_target_utilization_percent", 70,
            "provisioned tables' auto scaling target, consumed / provisioned units (%): lower leaves more headroom "
            "for bursts and costs more", _int_in(*TARGET_UTILIZATION_PERCENT)),
    # Continuous backups of the events table are billed on its size: 34 days of raw events (the cost
    # breakdown prices them). The counters and billing tables keep theirs whatever this says.
    Setting("events_point_in_time_recovery", True, "point-in-time recovery of the events table", _flag),
)


@dataclass(frozen=True)
class ScaleSettings:
    ingest_memory_mb: int
    api_memory_mb: int
    aggregate_memory_mb: int
    alerts_memory_mb: int
    delivery_memory_mb: int
    backfill_memory_mb: int
    find_due_memory_mb: int
    finalize_memory_mb: int
    publish_memory_mb: int
    notify_memory_mb: int
    ingest_reserved_concurrency: int | None
    api_reserved_concurrency: int | None
    aggregate_batch_size: int
    aggregate_batching_window_s: int
    alerts_batch_size: int
    alerts_batching_window_s: int
    alerts_parallelization_factor: int
    delivery_max_concurrency: int
    api_rate_limit: int
    api_burst_limit: int
    events_billing_mode: str
    counters_billing_mode: str
    billing_billing_mode: str
    events_read_units: int
    events_write_units: int
    counters_read_units: int
    counters_write_units: int
    billing_read_units: int
    billing_write_units: int
    events_max_write_units: int | None
    events_max_read_units: int | None
    counters_max_write_units: int | None
    counters_max_read_units: int | None
    billing_max_write_units: int | None
    billing_max_read_units: int | None
    table_target_utilization_percent: int
    events_point_in_time_recovery: bool

    # The aggregator's parallelization factor is not a setting (see SETTINGS); the plan reads it here.
    aggregate_parallelization_factor = 1

    @classmethod
    def defaults(cls) -> "ScaleSettings":
        return cls(**{s.key: s.default for s in SETTINGS})

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> "ScaleSettings":
        """`get(key)` is the context lookup (`node.try_get_context`); None means unset."""
        values = {}
        for setting in SETTINGS:
            given = get(setting.key)
            values[setting.key] = setting.default if given is None else setting.parse(setting.key, given)
        settings = cls(**values)
        if settings.api_burst_limit < settings.api_rate_limit:
            raise ValueError(
                f"context api_burst_limit={settings.api_burst_limit} is below api_rate_limit={settings.api_rate_limit}"
            )
        for name in TABLES:
            if getattr(settings, f"{name}_billing_mode") != "provisioned":
                continue
            for kind in ("read", "write"):
                least, most = getattr(settings, f"{name}_{kind}_units"), getattr(settings, f"{name}_max_{kind}_units")
                if most is not None and most < least:
                    raise ValueError(f"context {name}_max_{kind}_units={most} is below {name}_{kind}_units={least}")
        return settings

    @classmethod
    def from_node(cls, node: Any) -> "ScaleSettings":
        return cls.from_context(node.try_get_context)

    def provisioned_units(self, name: str, kind: str) -> tuple[int, int]:
        """(least, most) `kind` ("read" or "write") units of table `name` were it provisioned."""
        least, most = getattr(self, f"{name}_{kind}_units"), getattr(self, f"{name}_max_{kind}_units")
        return least, TABLE_UNIT_QUOTA if most is None else most

    def table(self, name: str) -> dict[str, Any]:
        """`events`, `counters` or `billing`: its billing mode and units. On-demand: the ceilings
        (None: none). Provisioned: per kind ("read", "write") the least and most units (the least is
        also the start; equal, no auto scaling) and the auto scaling target (%)."""
        mode = getattr(self, f"{name}_billing_mode")
        if mode == "provisioned":
            units = {kind: dict(zip(("least", "most"), self.provisioned_units(name, kind)))
                     for kind in ("read", "write")}
            return {"mode": mode, **units, "target_percent": self.table_target_utilization_percent}
        return {"mode": mode, "max_read_units": getattr(self, f"{name}_max_read_units"),
                "max_write_units": getattr(self, f"{name}_max_write_units")}


def settings_table() -> str:
    """The README's table of the settings: key, default, meaning (`python -m infra.settings`)."""
    lines = ["| context key | default | what it sets |", "|---|---|---|"]
    for setting in SETTINGS:
        if setting.default is None:
            default = "unset"
        elif isinstance(setting.default, bool):
            default = str(setting.default).lower()
        elif isinstance(setting.default, int):
            default = f"{setting.default:,}"
        else:
            default = setting.default
        lines.append(f"| `{setting.key}` | {default} | {setting.meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
