"""Quarantine: a (record, metric) pair the aggregator could not count, kept with its reason so
that nothing is lost and nothing blocks the batch it came in.

A pair is quarantined in one of two places:
- before any counter is touched, when its contribution breaks a rule a counter depends on (group
  values longer than a counter key holds, a SUM value off the exact grid): every counter the event
  lands in misses it;
- when a counter refused it (a SUM that would leave the exact range, a UNIQUE counter past 400 KB):
  only that counter misses it, and the counter's high-water mark moves past it in the same
  transaction, so a replay of the record never counts it there.
Either way `buckets` names the counters that miss the pair, and re-applying it adds it to exactly
those, in one transaction with the pair's move from pending to applied: counted once, ever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tally.billing import exact_json
from tally.billing.events import UsageEvent
from tally.billing.limits import MAX_GROUP_JSON_BYTES, sum_value_problem
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.time import format_rfc3339, parse_rfc3339

PENDING = "pending"
APPLIED = "applied"


@dataclass(frozen=True, slots=True)
class QuarantinedPair:
    metric_id: str
    event: UsageEvent
    buckets: tuple[str, ...]  # the counters (tally.billing.counters buckets) that miss the pair
    reason: str
    sequence: str = ""  # the stream record's, when it came from the stream
    state: str = PENDING
    quarantined_at: datetime | None = None

    @property
    def transaction_id(self) -> str:
        return self.event.transaction_id


def group_json(group: tuple[str | None, ...]) -> str:
    """A counter's group values as its sort key holds them (compact JSON, characters as they are)."""
    return json.dumps(list(group), separators=(",", ":"), ensure_ascii=False)


def group_problem(metric: BillableMetric, group: tuple[str | None, ...]) -> str | None:
    """Why no counter key can hold these group values (None when one can)."""
    size = len(group_json(group).encode("utf-8"))
    if size <= MAX_GROUP_JSON_BYTES:
        return None
    return (
        f"the group values of {', '.join(metric.dimensions)} take {size:,} bytes as JSON; "
        f"a counter key holds {MAX_GROUP_JSON_BYTES:,}"
    )


def value_problem(metric: BillableMetric, value: Decimal | str) -> str | None:
    """Why this value cannot be added to the metric's counters exactly (None when it can)."""
    if metric.aggregation_type is not Aggregation.SUM:
        return None
    problem = sum_value_problem(value)  # type: ignore[arg-type]
    return None if problem is None else f"{metric.aggregation_key} = {value} {problem}"


def event_json(event: UsageEvent) -> str:
    return exact_json.dumps(
        {
            "transaction_id": event.transaction_id,
            "customer_id": event.customer_id,
            "event_type": event.event_type,
            "timestamp": format_rfc3339(event.timestamp),
            "properties": event.properties,
        }
    )


def event_from_json(text: str) -> UsageEvent:
    data = exact_json.loads(text)
    return UsageEvent(
        data["transaction_id"], data["customer_id"], data["event_type"], parse_rfc3339(data["timestamp"]), data["properties"]
    )
