"""The HTTP contract, with raw requests: authentication, ingest validation, status codes, error
bodies and exact decimals. Every rejected request must leave nothing behind."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import httpx
import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, searched_transactions, unique, usage_event

pytestmark = pytest.mark.system


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    return body


def _json(payload) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture(scope="module")
def customer(api) -> str:
    response = api.post("/v1/customers", json={"name": unique("contract")})
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def _sum_metric(api, tag: str) -> str:
    response = api.post(
        "/v1/billable-metrics/create",
        json={"name": tag, "aggregation_type": "SUM", "aggregation_key": "tokens", "event_type_filter": {"in_values": [tag]}},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


def _usage(api, customer_id: str, metric_id: str) -> dict:
    hour = current_hour()
    response = api.post(
        "/v1/usage",
        json={
            "starting_on": rfc3339(hour - DAY),
            "ending_before": rfc3339(hour + HOUR),
            "window_size": "NONE",
            "customer_ids": [customer_id],
            "billable_metrics": [{"id": metric_id}],
        },
    )
    assert response.status_code == 200, response.text
    # Numbers parse as Decimal: this is the wire value, not a float's rounding of it.
    (window,) = json.loads(response.text, parse_float=Decimal)["data"]
    return window


# -- authentication ----------------------------------------------------------------------------
# "{key}" stands for the session's valid key.
BAD_CREDENTIALS = {
    "no Authorization header": {},
    "an unknown key": {"Authorization": "Bearer tally_not_a_key_this_deployment_issued"},
    "the right key under the Basic scheme": {"Authorization": "Basic {key}"},
    "the right key with no scheme": {"Authorization": "{key}"},
    "Bearer with no key": {"Authorization": "Bearer"},
}


@pytest.mark.parametrize("headers", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_a_request_without_a_valid_api_key_is_rejected_and_stores_nothing(local_stack, api, customer, headers):
    tag = unique("unauthenticated")
    events = [usage_event(f"{tag}-{i}", customer, tag, current_hour(), tokens=1) for i in range(2)]
    headers = {name: value.replace("{key}", local_stack.api_key) for name, value in headers.items()}
    with httpx.Client(base_url=local_stack.base_url, headers=headers, timeout=60) as anonymous:
        _error(anonymous.post("/v1/ingest", json=events), 401)
        _error(anonymous.post("/v1/ingest", content=b"{not json"), 401)  # authentication comes first
        _error(anonymous.post("/v1/customers", json={"name": tag, "ingest_aliases": [tag]}), 401)
        _error(anonymous.get(f"/v1/customers/{customer}"), 401)
        _error(anonymous.post("/v1/usage", json={}), 401)

    assert searched_transactions(api, [e["transaction_id"] for e in events]) == []
    assert api.get("/v1/customers", params={"ingest_alias": tag}).json()["data"] == []


# -- ingest validation -------------------------------------------------------------------------
def _batch_with_bad_second_event(tag: str, customer: str, change) -> list[dict]:
    events = [usage_event(f"{tag}-{i}", customer, tag, current_hour(), tokens=i + 1) for i in range(3)]
    change(events[1])
    return events


BAD_SECOND_EVENT = {
    "timestamp without a timezone": (lambda e: e.update(timestamp="2026-01-01T10:00:00"), "usage[1].timestamp"),
    "timestamp that is a date only": (lambda e: e.update(timestamp=rfc3339(current_hour())[:10]), "usage[1].timestamp"),
    "timestamp in words": (lambda e: e.update(timestamp="yesterday at noon"), "usage[1].timestamp"),
    "timestamp as epoch seconds": (lambda e: e.update(timestamp=1767261600), "usage[1].timestamp"),
    "timestamp more than 24 hours ahead": (
        lambda e: e.update(timestamp=rfc3339(current_hour() + 26 * HOUR)), "usage[1].timestamp"
    ),
    "timestamp 35 days old": (lambda e: e.update(timestamp=rfc3339(current_hour() - 35 * DAY)), "usage[1].timestamp"),
    "missing timestamp": (lambda e: e.pop("timestamp"), "usage[1].timestamp"),
    "missing event_type": (lambda e: e.pop("event_type"), "usage[1].event_type"),
    "missing customer_id": (lambda e: e.pop("customer_id"), "usage[1].customer_id"),
    "missing transaction_id": (lambda e: e.pop("transaction_id"), "usage[1].transaction_id"),
    "empty transaction_id": (lambda e: e.update(transaction_id=""), "usage[1].transaction_id"),
    "customer_id that is a number": (lambda e: e.update(customer_id=42), "usage[1].customer_id"),
    "properties that are a list": (lambda e: e.update(properties=[1, 2]), "usage[1].properties"),
}


@pytest.mark.parametrize("change, field", BAD_SECOND_EVENT.values(), ids=BAD_SECOND_EVENT.keys())
def test_one_bad_event_rejects_the_whole_batch_naming_its_index_and_field(api, customer, change, field):
    tag = unique("bad-event")
    events = _batch_with_bad_second_event(tag, customer, change)

    body = _error(api.post("/v1/ingest", json=events), 400)

    assert body["field"] == field
    assert field in body["message"]
    # The good events at index 0 and 2 were not stored either.
    assert searched_transactions(api, [f"{tag}-{i}" for i in range(3)]) == []


def _events(tag: str, customer: str, count: int) -> list[dict]:
    return [usage_event(f"{tag}-{i}", customer, tag, current_hour(), tokens=1) for i in range(count)]


BAD_BODIES = {
    "101 events": (lambda tag, c: _json(_events(tag, c, 101)), "usage"),
    "no events": (lambda tag, c: _json([]), "usage"),
    "an object instead of an array": (lambda tag, c: _json({"usage": _events(tag, c, 3)}), "usage"),
    "a single event, not in an array": (lambda tag, c: _json(_events(tag, c, 1)[0]), "usage"),
    "invalid JSON": (lambda tag, c: _json(_events(tag, c, 3))[:-5], "body"),
    "an empty body": (lambda tag, c: b"", "body"),
    "a NaN property": (lambda tag, c: _json(_events(tag, c, 3)).replace(b'"tokens": 1', b'"tokens": NaN'), "body"),
}


@pytest.mark.parametrize("make_body, field", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_malformed_ingest_body_is_rejected_and_stores_nothing(api, customer, make_body, field):
    tag = unique("bad-body")
    body = _error(api.post("/v1/ingest", content=make_body(tag, customer), headers={"content-type": "application/json"}), 400)
    assert body["field"] == field
    assert searched_transactions(api, [f"{tag}-{i}" for i in range(101)]) == []


def test_a_gzip_body_is_accepted_and_counted(api, customer, settle):
    tag = unique("gzip")
    metric = _sum_metric(api, tag)
    hour = current_hour()
    events = [usage_event(f"{tag}-{i}", customer, tag, hour, tokens=tokens) for i, tokens in enumerate([3, 4])]

    response = api.post(
        "/v1/ingest",
        content=gzip.compress(_json(events)),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2, "duplicates": 0}
    settle()
    assert _usage(api, customer, metric)["value"] == 7


# -- status codes ------------------------------------------------------------------------------
def test_unknown_customers_and_metrics_are_404(api, customer):
    hour = current_hour()
    window = {"starting_on": rfc3339(hour), "ending_before": rfc3339(hour + HOUR), "window_size": "HOUR"}
    metric = _sum_metric(api, unique("known"))
    nobody, nothing = unique("no-such-customer"), unique("no-such-metric")

    _error(api.get(f"/v1/customers/{nobody}"), 404)
    _error(api.get(f"/v1/billable-metrics/{nothing}"), 404)
    _error(api.get(f"/v1/customers/{nobody}/billable-metrics"), 404)
    _error(api.post(f"/v1/customers/{nobody}/setIngestAliases", json={"ingest_aliases": []}), 404)
    _error(api.post("/v1/billable-metrics/archive", json={"id": nothing}), 404)
    _error(api.post("/v1/usage", json=window | {"customer_ids": [nobody]}), 404)
    _error(api.post("/v1/usage", json=window | {"customer_ids": [customer], "billable_metrics": [{"id": nothing}]}), 404)
    groups = window | {"customer_id": customer, "billable_metric_id": metric}
    _error(api.post("/v1/usage/groups", json=groups | {"billable_metric_id": nothing}), 404)
    _error(api.post("/v1/usage/groups", json=groups | {"customer_id": nobody}), 404)


def test_an_ingest_alias_belongs_to_one_customer_and_a_conflict_is_409(api):
    tag = unique("conflict")
    owner = api.post("/v1/customers", json={"name": tag, "ingest_aliases": [f"{tag}-shared"]})
    assert owner.status_code == 200, owner.text
    owner_id = owner.json()["data"]["id"]

    _error(api.post("/v1/customers", json={"name": f"{tag} 2", "ingest_aliases": [f"{tag}-new", f"{tag}-shared"]}), 409)
    _error(api.post("/v1/customers", json={"name": f"{tag} 3", "external_id": f"{tag}-shared"}), 409)
    other = api.post("/v1/customers", json={"name": f"{tag} 4"}).json()["data"]["id"]
    _error(api.post(f"/v1/customers/{other}/setIngestAliases", json={"ingest_aliases": [f"{tag}-shared"]}), 409)

    # Nothing of the refused requests was written: not the customer, not its other alias.
    assert [c["id"] for c in api.get("/v1/customers", params={"ingest_alias": f"{tag}-shared"}).json()["data"]] == [owner_id]
    assert api.get("/v1/customers", params={"ingest_alias": f"{tag}-new"}).json()["data"] == []
    assert api.get(f"/v1/customers/{other}").json()["data"]["ingest_aliases"] == []


@pytest.fixture(scope="module")
def grouped_metric(api) -> str:
    tag = unique("grouped")
    response = api.post(
        "/v1/billable-metrics/create",
        json={"name": tag, "aggregation_type": "COUNT", "event_type_filter": {"in_values": [tag]}, "group_keys": [["region"]]},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


_HOUR = current_hour()
_WINDOW = {"starting_on": rfc3339(_HOUR), "ending_before": rfc3339(_HOUR + HOUR), "window_size": "HOUR"}
_USAGE = _WINDOW | {"customer_ids": ["{customer}"]}
_GROUPS = _WINDOW | {"customer_id": "{customer}", "billable_metric_id": "{metric}"}
# (method, path, body): "{customer}" and "{metric}" stand for a real customer and a real metric
# grouped by region, so that only the malformed part can be at fault.
MALFORMED = {
    "customer: invalid JSON": ("POST", "/v1/customers", b'{"name": '),
    "customer: an array": ("POST", "/v1/customers", []),
    "customer: no name": ("POST", "/v1/customers", {}),
    "customer: empty name": ("POST", "/v1/customers", {"name": ""}),
    "customer: name is a number": ("POST", "/v1/customers", {"name": 5}),
    "customer: aliases is a string": ("POST", "/v1/customers", {"name": "x", "ingest_aliases": "a"}),
    "customer: empty alias": ("POST", "/v1/customers", {"name": "x", "ingest_aliases": [""]}),
    "customer: custom field not a string": ("POST", "/v1/customers", {"name": "x", "custom_fields": {"a": 1}}),
    "customers: limit 0": ("GET", "/v1/customers?limit=0", None),
    "customers: foreign cursor": ("GET", "/v1/customers?next_page=not-a-cursor", None),
    "aliases: not a list": ("POST", "/v1/customers/{customer}/setIngestAliases", {"ingest_aliases": "a"}),
    "aliases: missing": ("POST", "/v1/customers/{customer}/setIngestAliases", {}),
    "metric: invalid JSON": ("POST", "/v1/billable-metrics/create", b"[{"),
    "metric: SUM without a key": ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "SUM"}),
    "metric: COUNT with a key": (
        "POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "COUNT", "aggregation_key": "k"}
    ),
    "metric: unknown aggregation": ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "AVG"}),
    "metric: empty group key": ("POST", "/v1/billable-metrics/create", {"name": "m", "group_keys": [[]]}),
    "metric: repeated group key": ("POST", "/v1/billable-metrics/create", {"name": "m", "group_keys": [["a", "a"]]}),
    "metric: nameless property filter": (
        "POST", "/v1/billable-metrics/create", {"name": "m", "property_filters": [{"name": ""}]}
    ),
    "metric: empty in_values": (
        "POST", "/v1/billable-metrics/create", {"name": "m", "event_type_filter": {"in_values": []}}
    ),
    "metric: SQL": ("POST", "/v1/billable-metrics/create", {"name": "m", "sql": "select 1"}),
    "metrics: limit 1000": ("GET", "/v1/billable-metrics?limit=1000", None),
    "archive: no id": ("POST", "/v1/billable-metrics/archive", {}),
    "archive: id is a number": ("POST", "/v1/billable-metrics/archive", {"id": 5}),
    "usage: invalid JSON": ("POST", "/v1/usage", b"{"),
    "usage: empty object": ("POST", "/v1/usage", {}),
    "usage: start not RFC 3339": ("POST", "/v1/usage", _USAGE | {"starting_on": "today"}),
    "usage: start not on the hour": ("POST", "/v1/usage", _USAGE | {"starting_on": rfc3339(_HOUR + HOUR / 2)}),
    "usage: end before start": ("POST", "/v1/usage", _USAGE | {"ending_before": rfc3339(_HOUR - HOUR)}),
    "usage: weekly windows": ("POST", "/v1/usage", _USAGE | {"window_size": "WEEK"}),
    "usage: customer_ids a string": ("POST", "/v1/usage", _USAGE | {"customer_ids": "{customer}"}),
    "usage: 200 days of hour windows": ("POST", "/v1/usage", _USAGE | {"starting_on": rfc3339(_HOUR - 200 * DAY)}),
    "usage: group_by not a group key": (
        "POST", "/v1/usage", _USAGE | {"billable_metrics": [{"id": "{metric}", "group_by": {"key": "nope"}}]}
    ),
    "usage groups: no start": ("POST", "/v1/usage/groups", {k: v for k, v in _GROUPS.items() if k != "starting_on"}),
    "usage groups: current period": ("POST", "/v1/usage/groups", _GROUPS | {"current_period": True}),
    "usage groups: group_key and group_by": (
        "POST", "/v1/usage/groups", _GROUPS | {"group_key": ["region"], "group_by": {"key": "region"}}
    ),
    "usage groups: not a group key": ("POST", "/v1/usage/groups", _GROUPS | {"group_key": ["nope"]}),
    "events search: no ids": ("POST", "/v1/events/search", {"transactionIds": []}),
    "events search: ids a string": ("POST", "/v1/events/search", {"transactionIds": "t-1"}),
    "events search: 101 ids": ("POST", "/v1/events/search", {"transactionIds": [f"t-{i}" for i in range(101)]}),
}


@pytest.mark.parametrize("method, path, body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_400_and_names_the_field(api, customer, grouped_metric, method, path, body):
    def real(text: str) -> str:
        return text.replace("{customer}", customer).replace("{metric}", grouped_metric)

    content = body if isinstance(body, bytes) or body is None else real(json.dumps(body)).encode()

    error = _error(api.request(method, real(path), content=content), 400)

    assert error["type"] == "invalid_request"
    assert error["field"]


# -- inputs that once made the API fail with a 5xx instead of a 4xx -----------------------------
def test_a_very_long_customer_name_is_not_a_server_error(api):
    response = api.post("/v1/customers", json={"name": "n" * 500_000})
    assert response.status_code < 500, response.text


def test_a_very_long_metric_name_is_not_a_server_error(api):
    response = api.post("/v1/billable-metrics/create", json={"name": "m" * 500_000, "aggregation_type": "COUNT"})
    assert response.status_code < 500, response.text


def test_a_very_long_external_id_is_a_400_naming_the_field(api):
    body = _error(api.post("/v1/customers", json={"name": unique("ext"), "external_id": "x" * 3000}), 400)
    assert body["field"] == "external_id"


# -- exact decimals ----------------------------------------------------------------------------
def test_a_decimal_sum_reads_back_exactly(api, customer, settle):
    tag = unique("decimal")
    metric = _sum_metric(api, tag)
    hour = current_hour()
    raw = ",".join(
        f'{{"transaction_id": "{tag}-{i}", "customer_id": "{customer}", "event_type": "{tag}",'
        f' "timestamp": "{rfc3339(hour)}", "properties": {{"tokens": {tokens}}}}}'
        for i, tokens in enumerate(["0.1", "0.2"])
    )
    assert api.post("/v1/ingest", content=f"[{raw}]").status_code == 200
    settle()

    window = _usage(api, customer, metric)

    assert window["value"] == Decimal("0.3")  # a float sum would read 0.30000000000000004


def test_a_sum_keeps_thirty_significant_digits(api, customer, settle):
    tag = unique("precision")
    metric = _sum_metric(api, tag)
    hour = current_hour()
    raw = ",".join(
        f'{{"transaction_id": "{tag}-{i}", "customer_id": "{customer}", "event_type": "{tag}",'
        f' "timestamp": "{rfc3339(hour)}", "properties": {{"tokens": {tokens}}}}}'
        for i, tokens in enumerate(["1234567890123456789.12345678912", "0.1", "0.2"])
    )
    assert api.post("/v1/ingest", content=f"[{raw}]").status_code == 200
    settle()

    assert _usage(api, customer, metric)["value"] == Decimal("1234567890123456789.42345678912")
