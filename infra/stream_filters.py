"""The filter criteria of the two stream mappings, apart from the constructs so that code without
the CDK (the cost measurement, infra/bench/cost.py) delivers exactly what the mappings deliver."""

from __future__ import annotations

# First receipts only: duplicate receipts share the events table under sort keys `dup#...`, and TTL
# expiries arrive as REMOVE.
REAL_EVENT_INSERTS = {"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["event"]}}}}
# Counter writes only: a counter never goes away, and a REMOVE would cross nothing.
COUNTER_WRITES = {"eventName": ["INSERT", "MODIFY"]}
