"""Audit log entries: who changed what through the API, and when (Metronome's GET /v1/auditLogs).

An entry is made per API request that wrote something, and is stored in the same DynamoDB
transaction as each of the request's writes (adapters/dynamo/audit.py), so a change never exists
without its entry, nor an entry without a change. Pure: no clock, no store.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH
from tally.billing.time import format_rfc3339, parse_rfc3339

Sort = Literal["date_asc", "date_desc"]

# The resource each route family is about (longest prefix first); its id is then the one the
# request names (`<type>_id`, or `id`), else the created item of that type the request writes.
ROUTE_RESOURCES = (
    ("/v2/contracts/commits/", "commit"),
    ("/v2/contracts/credits/", "credit"),
    ("/v1/contracts/customerCommits/", "commit"),
    ("/v1/contracts/customerCredits/", "credit"),
    ("/v1/contracts/", "contract"),
    ("/v2/contracts/", "contract"),
    ("/v1/customers", "customer"),
    ("/v1/customer-alerts/", "alert"),
    ("/v1/alerts/", "alert"),
    ("/v1/contract-pricing/products/", "product"),
    ("/v1/contract-pricing/rate-cards/", "rate_card"),
    ("/v1/billable-metrics/", "billable_metric"),
    ("/v1/credit-types/", "credit_type"),
    ("/v1/customFields/", "custom_field_key"),
    ("/v1/packages/", "package"),
    ("/v1/invoices/", "invoice"),
)
# Items the API writes, by the prefix of their partition key: an item `<prefix>#<id>` with the
# single-item sort key is that resource. Claims, counters, edit records and indexes are not.
RESOURCE_PREFIXES = {
    "customer": "customer",
    "contract": "contract",
    "product": "product",
    "ratecard": "rate_card",
    "creditType": "credit_type",
    "alert": "alert",
    "invoice": "invoice",
    "grant": "commit_or_credit",  # a customer-level commit or credit
    "package": "package",
    "named_schedule": "named_schedule",
    "cfkey": "custom_field_key",
}
SINGLE_ITEM_SORT_KEY = "#"
METRICS_PARTITION = "metrics"  # billable metrics: one partition, the metric's id as sort key

@dataclass(frozen=True, slots=True)
class Resource:
    type: str
    id: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    timestamp: datetime
    actor_id: str  # the API key's id, never the key
    request_id: str
    method: str
    route: str  # the route's template, e.g. /v1/customers/{customer_id}/setName
    action: str
    ip: str | None = None
    user_agent: str | None = None
    resource: Resource | None = None

    def to_api(self) -> dict:
        """The entry as GET /v1/auditLogs answers it (metronome AuditLogListResponse)."""
        request: dict = {"id": self.request_id}
        if self.ip:
            request["ip"] = self.ip
        if self.user_agent:
            request["user_agent"] = self.user_agent
        answer: dict = {
            "id": self.id,
            "timestamp": format_rfc3339(self.timestamp),
            "request": request,
            "actor": {"id": self.actor_id, "name": f"API key {self.actor_id}"},
            "action": self.action,
            "description": f"{self.method} {self.route}",
            "status": "success",  # an entry exists only with a change that was made
        }
        if self.resource is not None:
            answer["resource_type"] = self.resource.type
            answer["resource_id"] = self.resource.id
        return answer

    def to_stored(self) -> dict:
        stored = self.to_api() | {"method": self.method, "route": self.route}
        return stored

    @classmethod
    def from_stored(cls, stored: dict) -> "AuditEntry":
        resource = Resource(stored["resource_type"], stored["resource_id"]) if "resource_type" in stored else None
        return cls(
            id=stored["id"], timestamp=parse_rfc3339(stored["timestamp"]), actor_id=stored["actor"]["id"],
            request_id=stored["request"]["id"], method=stored["method"], route=stored["route"], action=stored["action"],
            ip=stored["request"].get("ip"), user_agent=stored["request"].get("user_agent"), resource=resource,
        )


def format_instant(at: datetime) -> str:
    """Fixed width, so that text order is time order (the store's sort keys rely on it)."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def route_template(path: str) -> str:
    """Powertools' `/v1/customers/<customer_id>` as OpenAPI's `/v1/customers/{customer_id}`."""
    return path.replace("<", "{").replace(">", "}")


def action_of(method: str, route: str) -> str:
    """What the request did, from its route: the last literal segment (`archive`, `setValues`,
    `edit`), `create` for a POST to a collection, `delete` for a DELETE."""
    if method.upper() == "DELETE":
        return "delete"
    segments = [s for s in route.strip("/").split("/") if s and not s.startswith("{")]
    last = segments[-1] if segments else route
    if method.upper() == "POST" and route.rstrip("/").endswith(last) and len(segments) == 2:
        return "create"  # POST /v1/customers
    return last


def resource_of_key(pk: str, sk: str) -> Resource | None:
    """The resource a written item is, from its key; None for claims, counters and indexes."""
    if pk == METRICS_PARTITION:
        return Resource("billable_metric", sk)
    prefix, _, rest = pk.partition("#")
    if sk != SINGLE_ITEM_SORT_KEY or not rest:
        return None
    kind = RESOURCE_PREFIXES.get(prefix)
    return None if kind is None else Resource(kind, rest)


@dataclass(frozen=True, slots=True)
class RequestNames:
    """What a request says about its resource, before it writes anything."""

    expected: str | None = None  # the resource type of the route's family
    named: Resource | None = None  # the resource the path or body names as the one changed
    customer: Resource | None = None  # the customer it names, when nothing better is known

    def choose(self, written: list[Resource]) -> tuple[Resource | None, bool]:
        """The request's resource given what a write wrote, and whether it is final: the one named,
        else the written item of the route's type, else (until a write tells better) the first
        resource written, else the customer named."""
        if self.named is not None:
            return self.named, True
        for resource in written:
            if resource.type == self.expected or (
                resource.type == "commit_or_credit" and self.expected in ("commit", "credit")
            ):
                return Resource(self.expected, resource.id), True
        if written:
            return written[0], False
        return self.customer, False


def names_of_request(route: str, path_parameters: dict, body: object) -> RequestNames:
    fields = body if isinstance(body, dict) else {}

    def given(name: str) -> str | None:
        # An id is at most MAX_ID_LENGTH characters wherever the models check it; anything else
        # is not an id (and must not make a key DynamoDB refuses).
        value = path_parameters.get(name) or fields.get(name)
        return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH else None

    customer = given("customer_id")
    weak = Resource("customer", customer) if customer else None
    entity, entity_id = given("entity"), given("entity_id")
    if entity and entity_id:  # /v1/customFields/setValues and deleteValues
        return RequestNames(None, Resource(entity, entity_id), weak)
    expected = next((kind for prefix, kind in ROUTE_RESOURCES if route.startswith(prefix)), None)
    if expected is None:
        return RequestNames(None, None, weak)
    named = given(f"{expected}_id") or given("id")
    return RequestNames(expected, Resource(expected, named) if named else None, weak)


# -- pages ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuditQuery:
    """One page's question: a window [starting_on, ending_before), an order, an optional resource,
    and (from a cursor) the position after which the page starts."""

    sort: Sort
    limit: int
    starting_on: datetime | None = None
    ending_before: datetime | None = None
    resource: Resource | None = None
    after: str | None = None  # the position (store sort key) of the last entry already returned

    def cursor(self, position: str) -> str:
        body = {
            "s": self.sort, "p": position,
            "a": None if self.starting_on is None else format_instant(self.starting_on),
            "b": None if self.ending_before is None else format_instant(self.ending_before),
            "r": None if self.resource is None else [self.resource.type, self.resource.id],
        }
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str, limit: int) -> "AuditQuery":
        try:
            body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            resource = None if body["r"] is None else Resource(str(body["r"][0]), str(body["r"][1]))
            parts = [str(body["p"]), *([] if resource is None else [resource.type, resource.id])]
            if any(not 0 < len(part) <= MAX_ID_LENGTH for part in parts):  # keys DynamoDB takes
                raise ValueError("a part of the cursor is out of bounds")
            return cls(
                sort=_sort(body["s"]), limit=limit, after=str(body["p"]), resource=resource,
                starting_on=None if body["a"] is None else parse_instant(body["a"]),
                ending_before=None if body["b"] is None else parse_instant(body["b"]),
            )
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error, InvalidInput) as exc:
            raise InvalidInput("next_page", "is not a cursor this API returned") from exc


def _sort(value: object) -> Sort:
    if value not in ("date_asc", "date_desc"):
        raise InvalidInput("sort", "must be date_asc or date_desc")
    return value  # type: ignore[return-value]
