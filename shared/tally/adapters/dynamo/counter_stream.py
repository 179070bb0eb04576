"""Parsing DynamoDB stream records of the counters table: which (ingest key, metric) changed."""

from __future__ import annotations

from dataclasses import dataclass, field

_PREFIX, _KEY = "m#", "#k#"


def counter_identity(pk: str) -> tuple[str, str]:
    """(metric id, ingest key) of a counter's partition key `m#<metric id>#k#<ingest key>`.
    Metric ids never hold `#k#`; an ingest key may, so the first one splits."""
    if not pk.startswith(_PREFIX) or _KEY not in pk:
        raise ValueError(f"not a counter partition key: {pk!r}")
    metric_id, ingest_key = pk[len(_PREFIX) :].split(_KEY, 1)
    return metric_id, ingest_key


@dataclass
class CounterChanges:
    """What a batch of counter records changed, and where each ingest key first appeared."""

    metrics_by_key: dict[str, set[str]] = field(default_factory=dict)
    first_sequence: dict[str, str] = field(default_factory=dict)
    unreadable_at: str | None = None  # sequence number of the first record that could not be read


def counter_changes(records: list[dict]) -> CounterChanges:
    changes = CounterChanges()
    for record in records:
        sequence = record["dynamodb"]["SequenceNumber"]
        if record.get("eventName") == "REMOVE":
            continue  # a counter that goes away crosses nothing
        try:
            pk = record["dynamodb"]["Keys"]["pk"]["S"]
            if not pk.startswith(_PREFIX):
                continue  # the table's other items (quarantined pairs, `q#<metric>`): no usage moved
            metric_id, ingest_key = counter_identity(pk)
        except (KeyError, ValueError):
            changes.unreadable_at = changes.unreadable_at or sequence
            break  # the stream resumes here; nothing after it counts as seen
        changes.metrics_by_key.setdefault(ingest_key, set()).add(metric_id)
        changes.first_sequence.setdefault(ingest_key, sequence)
    return changes
