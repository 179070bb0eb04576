"""Usage events and usage read-back for the system tests: ids, instants, event bodies, windows.

The local stack is shared by the whole session, so every name a test creates is unique, and every
test reads usage only for the customers and metrics it created itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def current_hour() -> datetime:
    """Events are stamped inside this hour: never more than 24 h ahead, never 34 days old."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage_event(transaction_id: str, customer_id: str, event_type: str, timestamp: datetime, **properties: Any) -> dict:
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "event_type": event_type,
        "timestamp": rfc3339(timestamp),
        "properties": properties,
    }


def usage_value(sdk, customer_id: str, metric_id: str, starting_on: datetime, ending_before: datetime):
    """The metric's value for one customer over one window (None means no data, for MAX and LATEST)."""
    page = sdk.v1.usage.list(
        starting_on=starting_on,
        ending_before=ending_before,
        window_size="NONE",
        customer_ids=[customer_id],
        billable_metrics=[{"id": metric_id}],
    )
    (window,) = page.data
    assert (window.customer_id, window.billable_metric_id) == (customer_id, metric_id)
    return window.value


def searched_transactions(api, transaction_ids: list[str]) -> list[dict]:
    """Raw /v1/events/search results, 100 ids per request (the API's limit)."""
    found: list[dict] = []
    for start in range(0, len(transaction_ids), 100):
        response = api.post("/v1/events/search", json={"transactionIds": transaction_ids[start : start + 100]})
        assert response.status_code == 200, response.text
        found.extend(response.json())
    return found
