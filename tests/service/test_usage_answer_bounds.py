"""/v1/usage answers fit Lambda's 6 MB response and API Gateway's 30 s (issue 14, found by the API
fuzz): a request that would overflow them is a 400 naming the field and the rule, and a page of
every customer's usage holds only as many customers as fit."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tally.billing.limits import MAX_USAGE_SERIES, MAX_USAGE_VALUES
from tests.service.api_gateway import LAMBDA_RESPONSE_BYTES, deployed_api, request, send

API_KEY = "tally_usage_bounds_key"
START = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=60)


def at(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def hours(count: int) -> dict:
    return {"starting_on": at(START), "ending_before": at(START + timedelta(hours=count)), "window_size": "HOUR"}


@pytest.fixture()
def world():
    """Three customers and four COUNT metrics."""
    with deployed_api(API_KEY):
        customers = [request("POST", "/v1/customers", API_KEY, {"name": f"c{n}"})[1]["data"]["id"] for n in range(3)]
        metrics = [
            request("POST", "/v1/billable-metrics/create", API_KEY, {"name": f"m{n}", "aggregation_type": "COUNT"})[1]["data"]["id"]
            for n in range(4)
        ]
        yield customers, metrics


def test_every_customers_usage_is_paged_so_that_each_answer_fits(world):
    customers, metrics = world
    # 4 metrics × 1,200 hours = 4,800 values a customer: 2 customers a page, not 25.
    status, page = request("POST", "/v1/usage", API_KEY, hours(1_200))
    assert status == 200
    assert len({w["customer_id"] for w in page["data"]}) == 2 and len(page["data"]) == 9_600 <= MAX_USAGE_VALUES
    status, rest = request("POST", f"/v1/usage?next_page={page['next_page']}", API_KEY, hours(1_200))
    assert status == 200
    assert {w["customer_id"] for w in page["data"] + rest["data"]} == set(customers) and rest["next_page"] is None


def test_the_answer_that_once_was_a_502_now_fits_the_response_limit(world):
    # 100 days of hours for every customer and metric: 3 × 4 × 2,400 windows were 7 MB in one answer.
    body = json.dumps(hours(2_400)).encode()
    status, _, data = send("POST", "/v1/usage", {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}, body)
    assert status == 200 and len(data) < LAMBDA_RESPONSE_BYTES


def test_named_customers_metrics_and_windows_over_one_answers_values_are_a_400_naming_window_size(world):
    customers, metrics = world
    body = hours(2_400) | {"customer_ids": customers, "billable_metrics": [{"id": m} for m in metrics]}  # 28,800
    status, error = request("POST", "/v1/usage", API_KEY, body)
    assert (status, error["field"]) == (400, "window_size")
    assert f"at most {MAX_USAGE_VALUES:,} values" in error["message"] and "28,800" in error["message"]


def test_named_customers_times_metrics_over_the_series_one_answer_reads_is_a_400_naming_customer_ids(world):
    customers, metrics = world
    # Each id named is read, repeats too: 100 customers × 8 metrics = 800 series.
    body = hours(1) | {"customer_ids": (customers * 34)[:100], "billable_metrics": [{"id": m} for m in metrics * 2]}
    status, error = request("POST", "/v1/usage", API_KEY, body)
    assert (status, error["field"]) == (400, "customer_ids")
    assert f"at most {MAX_USAGE_SERIES} series" in error["message"] and "100 × 8" in error["message"]
