"""Load for `tally bench`: realistic usage events, an HTTP client of the local stack, a counter of
the DynamoDB writes the functions send, and the bare-moto baseline writer."""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

CUSTOMER_ALIAS = "bench-acme"
FRESHNESS_ALIAS = "bench-fresh"
MODELS = ("small", "medium", "large")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
USERS = 50  # UNIQUE counts distinct users: a realistic, low cardinality


def usage_events(count: int, customer_id: str, now: datetime, rng: random.Random) -> list[dict]:
    """`count` LLM-API-call events of one customer within the current hour, fresh transaction ids."""
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    spread = min(60.0, (now - hour_start).total_seconds())
    events = []
    for _ in range(count):
        at = now - timedelta(seconds=rng.uniform(0, spread))
        events.append(
            {
                "transaction_id": str(uuid.uuid4()),
                "customer_id": customer_id,
                "event_type": "api_call",
                "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
                "properties": {
                    "tokens": rng.randint(1, 4_000),
                    "latency_ms": round(rng.uniform(5, 900), 1),
                    "model": rng.choice(MODELS),
                    "region": rng.choice(REGIONS),
                    "user_id": f"user-{rng.randrange(USERS)}",
                },
            }
        )
    return events


# Five metrics that all match every event above, with no group keys.
METRICS = {
    "COUNT": {"name": "bench api calls", "aggregation_type": "COUNT",
              "event_type_filter": {"in_values": ["api_call"]}},
    "SUM": {"name": "bench tokens", "aggregation_type": "SUM", "aggregation_key": "tokens",
            "event_type_filter": {"in_values": ["api_call"]},
            "property_filters": [{"name": "tokens", "exists": True}]},
    "MAX": {"name": "bench peak latency", "aggregation_type": "MAX", "aggregation_key": "latency_ms",
            "event_type_filter": {"in_values": ["api_call"]}},
    "UNIQUE": {"name": "bench active users", "aggregation_type": "UNIQUE", "aggregation_key": "user_id",
               "event_type_filter": {"in_values": ["api_call"]}},
    "LATEST": {"name": "bench last tokens", "aggregation_type": "LATEST", "aggregation_key": "tokens",
               "event_type_filter": {"in_values": ["api_call"]}},
}


class TallyClient:
    """The public HTTP API of a running local stack, as a customer's code would use it."""

    def __init__(self, base_url: str, api_key: str) -> None:
        import httpx

        self._base_url = base_url
        self._headers = {"authorization": f"Bearer {api_key}"}
        self._http = httpx.Client(base_url=base_url, headers=self._headers, timeout=60.0)
        self.rng = random.Random(7)
        self.metric_ids: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)

    def _post(self, path: str, body: Any, http=None) -> dict:
        response = (http or self._http).post(path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def ingest(self, events: list[dict], http=None) -> int:
        return self._post("/v1/ingest", events, http)["accepted"]

    def create_customer(self, name: str, alias: str) -> str:
        return self._post("/v1/customers", {"name": name, "ingest_aliases": [alias]})["data"]["id"]

    def setup_metrics(self) -> None:
        self.create_customer("bench acme", CUSTOMER_ALIAS)
        for aggregation, body in METRICS.items():
            self.metric_ids[aggregation] = self._post("/v1/billable-metrics/create", body)["data"]["id"]

    def usage(self, customer_id: str, metric_id: str) -> Decimal:
        hour = self.now().replace(minute=0, second=0, microsecond=0)
        body = {
            "customer_ids": [customer_id],
            "billable_metrics": [{"id": metric_id}],
            "starting_on": (hour - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ending_before": (hour + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window_size": "NONE",
        }
        data = self._post("/v1/usage", body)["data"]
        return Decimal(str(data[0]["value"] or 0)) if data else Decimal(0)

    def post_concurrently_then_drain(self, posts: list[list[dict]], threads: int, pump) -> float:
        """Seconds from the first post until every counter update is applied."""
        import httpx

        clients = [httpx.Client(base_url=self._base_url, headers=self._headers, timeout=60.0) for _ in range(threads)]
        try:
            for client in clients:  # open the connections before the clock starts
                client.get("/v1/billable-metrics")
            shares = [posts[i::threads] for i in range(threads)]
            began = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                accepted = sum(pool.map(lambda i: sum(self.ingest(p, clients[i]) for p in shares[i]), range(threads)))
            pump.drain()
            elapsed = time.perf_counter() - began
        finally:
            for client in clients:
                client.close()
        expected = sum(len(p) for p in posts)
        if accepted != expected:
            raise RuntimeError(f"expected {expected} accepted events, got {accepted}")
        return elapsed


class WriteCounter:
    """Counts the write requests the functions send to the events and counters tables, at the
    shared boto3 DynamoDB client (every in-process handler uses it), conditional failures included."""

    def __init__(self, stack) -> None:
        self._events = stack.table("EventsTableName")
        self._counters = stack.table("CountersTableName")
        self._lock = threading.Lock()
        self.raw = 0
        self.raw_wcu = 0  # transactional writes cost 2 WCU per item (1 KB items)
        self.counters = 0

    @property
    def total(self) -> int:
        return self.raw + self.counters

    def _count(self, table: str, items: int, transactional: bool = False) -> None:
        with self._lock:
            if table == self._events:
                self.raw += items
                self.raw_wcu += items * (2 if transactional else 1)
            elif table == self._counters:
                self.counters += items

    def _before_call(self, params: dict, model, **_: Any) -> None:
        operation = model.name
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            self._count(params["TableName"], 1)
        elif operation == "TransactWriteItems":
            for action in params["TransactItems"]:
                for kind in ("Put", "Update", "Delete"):
                    if kind in action:
                        self._count(action[kind]["TableName"], 1, transactional=True)
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                self._count(table, len(requests))

    def __enter__(self) -> "WriteCounter":
        from tally.adapters.dynamo.client import dynamodb

        self._client = dynamodb()
        self._client.meta.events.register("before-parameter-build.dynamodb", self._before_call)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client.meta.events.unregister("before-parameter-build.dynamodb", self._before_call)


# -- the baseline of figure 3 -----------------------------------------------------------------------
BARE_TABLE = "tally-bench-bare-events"


def create_bare_table(client) -> str:
    """A table with the events table's keys and no stream: what storing raw events alone costs."""
    client.create_table(
        TableName=BARE_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return BARE_TABLE


def build_raw_items(events: list[dict]) -> list[dict]:
    """The stored form of these events, built by the events adapter itself."""
    from tally.adapters.dynamo.events import ORIGINAL, event_item, stamps
    from tally.billing.events import parse_usage_batch

    now = datetime.now(timezone.utc)
    ingested, expires_at = stamps(now)
    items = []
    for start in range(0, len(events), 100):
        for event in parse_usage_batch(events[start : start + 100], now):
            items.append(event_item(event, ingested, expires_at, ORIGINAL, uuid.uuid4().hex))
    return items


def bare_batch_write(client, table: str, items: list[dict]) -> float:
    """Seconds to write `items` with BatchWriteItem, 25 at a time, retrying unprocessed ones."""
    began = time.perf_counter()
    for start in range(0, len(items), 25):
        pending = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return time.perf_counter() - began
