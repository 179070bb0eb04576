"""Issue 14: the hostile inputs of the adversarial pass, replayed against the whole local stack
(gateway, real handlers, stream, aggregator). Each is a 4xx naming the field, or counted as the
README says, and an honest customer's usage sent alongside still counts exactly once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique

HOSTILE = [
    ("a metric grouping by 500 properties", "POST", "/v1/billable-metrics/create",
     {"name": "g", "aggregation_type": "COUNT", "group_keys": [[f"p{i}"] for i in range(500)]}, 400, "group_keys"),
    ("a metric filter of 101 values", "POST", "/v1/billable-metrics/create",
     {"name": "f", "property_filters": [{"name": "r", "in_values": [str(i) for i in range(101)]}]}, 400, "property_filters[0].in_values"),
    ("a custom field of 2,000 characters", "POST", "/v1/customers",
     {"name": "c", "custom_fields": {"k": "v" * 2_000}}, 400, "custom_fields.k"),
    ("41 ingest aliases", "POST", "/v1/customers",
     {"name": "c", "ingest_aliases": [f"hostile-{i}" for i in range(41)]}, 400, "ingest_aliases"),
    ("a whitespace ingest alias", "POST", "/v1/customers", {"name": "c", "ingest_aliases": ["  "]}, 400, "ingest_aliases[0]"),
    ("a usage window from year 1", "POST", "/v1/usage",
     {"starting_on": "0001-01-01T00:00:00Z", "ending_before": "2026-01-01T00:00:00Z", "window_size": "DAY"}, 400, "starting_on"),
    ("a rate price of 1e400", "POST", "/v1/contract-pricing/rate-cards/addRate",
     {"rate_card_id": "x", "product_id": "y", "starting_at": "2026-01-01T00:00:00Z", "entitled": True,
      "rate_type": "FLAT", "price": "1e400"}, 400, "price"),
    ("a NUL in an event's customer_id", "POST", "/v1/ingest",
     [{"transaction_id": "t", "customer_id": "a\u0000b", "event_type": "e", "timestamp": rfc3339(current_hour())}], 400, "usage[0].customer_id"),
]


@pytest.mark.parametrize("name,method,path,body,status,field", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_request_is_a_4xx_naming_its_field(api, name, method, path, body, status, field):
    response = api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_raw_hostile_bodies_are_4xx(api):
    deep = api.post("/v1/ingest", content=b"[" * 10_000 + b"]" * 10_000)
    corrupt_gzip = api.post("/v1/ingest", content=b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage", headers={"Content-Encoding": "gzip"})
    bad_limit = api.get("/v1/customers", params={"limit": "²"})
    assert [deep.status_code, corrupt_gzip.status_code, bad_limit.status_code] == [400, 400, 400]


def test_poison_usage_is_quarantined_or_refused_and_honest_usage_still_counts(api, settle):
    tag = unique("hostile")
    customer = api.post("/v1/customers", json={"name": tag, "ingest_aliases": [tag]}).json()["data"]["id"]
    taken = api.post("/v1/customers", json={"name": tag + "-b", "ingest_aliases": [customer]})
    assert taken.status_code == 409  # an alias equal to another customer's id: double billing
    metric = api.post(
        "/v1/billable-metrics/create",
        json={"name": tag, "aggregation_type": "SUM", "aggregation_key": "n", "event_type_filter": {"in_values": [tag]},
              "group_keys": [["region"]]},
    ).json()["data"]["id"]
    hour = current_hour()

    def event(i, **properties):
        return {"transaction_id": f"{tag}-{i}", "customer_id": tag, "event_type": tag, "timestamp": rfc3339(hour),
                "properties": properties}

    big = api.post("/v1/ingest", json=[event(0, n=1, blob="x" * 70_000)])
    assert big.status_code == 400 and big.json()["field"] == "usage[0]"
    poison = [
        event(1, n=7, region="eu"),
        event(2, n="1e400", region="eu"),  # not a number a counter holds: does not count
        event(3, n=1, region="r" * 2_000),  # group values too long: quarantined
        event(4, n=Decimal("1e-19"), region="eu"),  # off the exact grid: quarantined
        event(5, n=Decimal("12345678901234567890123456789012345678"), region="eu"),  # would round: quarantined
        event(6, n=3, region="eu"),
    ]
    assert api.post("/v1/ingest", content=_exact(poison)).status_code == 200
    settle()

    usage = api.post(
        "/v1/usage",
        json={"starting_on": rfc3339(hour - DAY), "ending_before": rfc3339(hour + HOUR), "window_size": "NONE",
              "customer_ids": [customer], "billable_metrics": [{"id": metric}]},
    )
    assert usage.status_code == 200, usage.text
    assert Decimal(str(usage.json()["data"][0]["value"])) == 10


def _exact(events) -> bytes:
    from tally.billing import exact_json

    return exact_json.dumps(events).encode()
