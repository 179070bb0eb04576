"""Never a 5xx, proven: schemathesis fuzzes every operation of the committed OpenAPI document against
the real api and ingest functions, in this process, on moto tables, behind the API Gateway stand-in
of tests/service/api_gateway.py (Lambda's 6 MB response limit included). Every answer must be below
500, have a documented status, and match the documented body; hostile bytes must be a 4xx.

The cases are the same on every run (derandomized). The figures (requests per operation and phase,
the status histogram, the slowest request of each operation) are printed when the module ends
(`pytest -s`) and written to .build/api-fuzz-summary.json.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tally.api.openapi import DOCUMENT_PATH
from tally.billing.limits import MAX_BODY_BYTES, MAX_NESTING_DEPTH
from tests.conftest import examples
from tests.service.api_gateway import deployed_api, gateway, send

API_KEY = "tally_fuzz_key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# 20 generated cases per operation on every run (the coverage phase adds its boundary cases, some
# 12,000, on top); TALLY_DEEP=1 for 200.
EXAMPLES_PER_OPERATION = examples(20)
SUMMARY_PATH = Path(__file__).resolve().parents[2] / ".build" / "api-fuzz-summary.json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Every phase but the coverage phase's valid cases: those (some 1,700 boundary-valid bodies, most
# of them writes that grow the world every later read walks) tripled the run's time; the fuzzing
# phase still sends valid bodies.
CONFIG = {"phases": {"coverage": {"generation": {"mode": "negative"}}}}
MIN_REQUESTS = 2_000
schema = schemathesis.openapi.from_dict(
    json.loads(DOCUMENT_PATH.read_text()), config=schemathesis.Config.from_dict(CONFIG)
)
OPERATIONS = sum(len(methods) for methods in schema.raw_schema["paths"].values())
statuses: dict[str, Counter] = defaultdict(Counter)  # "METHOD /path" -> status -> responses
seconds: Counter = Counter()  # "METHOD /path" -> time its requests took
slowest: dict[str, tuple[float, str]] = {}  # "METHOD /path" -> its slowest request (seconds, curl)
kinds: Counter = Counter()  # "phase mode" (coverage/fuzzing/examples, positive/negative) -> requests
raw_statuses: Counter = Counter()  # status -> answers to the byte-level cases


def at(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seed() -> dict[str, str]:
    """A small world for generated requests to name: random ids only ever find nothing (a 404), so
    the rich answers (contracts, invoices, balances) would never be checked against the document.
    Made through metronome-sdk with strict response validation, over the same gateway."""
    from metronome import Metronome

    from tally import wiring

    # Yesterday's UTC midnight: on the hour and the day, so that HOUR and DAY windows both fit it.
    start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    long_ago = start - timedelta(days=45)  # a month-long period of it has ended: its invoice can be finalized
    http = httpx.Client(transport=httpx.WSGITransport(app=gateway))
    with Metronome(bearer_token=API_KEY, base_url="http://tally.local", http_client=http, max_retries=0,
                   _strict_response_validation=True) as sdk:
        ids: dict[str, str] = {"alias": "fuzz-alias", "start": at(start), "end": at(start + timedelta(days=1))}
        ids["customer"] = sdk.v1.customers.create(name="Fuzz Co", ingest_aliases=[ids["alias"]]).data.id
        ids["metric"] = sdk.v1.billable_metrics.create(
            name="tokens", aggregation_type="SUM", aggregation_key="tokens", group_keys=[["region"]],
            event_type_filter={"in_values": ["completion"]},
        ).data.id
        ids["product"] = sdk.v1.contracts.products.create(name="Tokens", type="USAGE", billable_metric_id=ids["metric"]).data.id
        ids["seats"] = sdk.v1.contracts.products.create(name="Seats", type="SUBSCRIPTION").data.id
        ids["fixed"] = sdk.v1.contracts.products.create(name="Commitment", type="FIXED").data.id
        ids["credit_type"] = sdk.v1.pricing_units.create(name="Fuzz credits").data.id
        ids["rate_card"] = sdk.v1.contracts.rate_cards.create(name="Standard").data.id
        sdk.v1.contracts.rate_cards.rates.add(
            rate_card_id=ids["rate_card"], product_id=ids["product"], entitled=True, rate_type="FLAT", price=2,
            starting_at=at(long_ago),
        )
        sdk.v1.contracts.rate_cards.rates.add(
            rate_card_id=ids["rate_card"], product_id=ids["seats"], entitled=True, rate_type="SUBSCRIPTION", price=100,
            billing_frequency="MONTHLY", starting_at=at(long_ago),
        )
        segment = {"schedule_items": [{"amount": 500, "starting_at": at(start), "ending_before": at(start + timedelta(days=31))}]}
        ids["contract"] = sdk.v1.contracts.create(
            customer_id=ids["customer"], rate_card_id=ids["rate_card"], starting_at=at(start), name="Fuzz contract",
            usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
            subscriptions=[{  # seat-based, so that the seat routes have seats to answer with
                "collection_schedule": "ADVANCE", "quantity_management_mode": "SEAT_BASED",
                "seat_config": {"seat_group_key": "user", "initial_seat_ids": ["fuzz-ann", "fuzz-bob"]},
                "proration": {"invoice_behavior": "BILL_IMMEDIATELY", "is_prorated": True},
                "subscription_rate": {"product_id": ids["seats"], "billing_frequency": "MONTHLY"},
            }],
        ).data.id
        contract = sdk.v1.contracts.retrieve(customer_id=ids["customer"], contract_id=ids["contract"]).data
        ids["subscription"] = contract.subscriptions[0].id
        ids["commit"] = sdk.v1.customers.commits.create(
            customer_id=ids["customer"], product_id=ids["fixed"], type="PREPAID", priority=2, name="Prepaid",
            access_schedule=segment,
        ).data.id
        ids["credit"] = sdk.v1.customers.credits.create(
            customer_id=ids["customer"], product_id=ids["fixed"], priority=1, name="Welcome", access_schedule=segment,
        ).data.id
        ids["alert"] = sdk.v1.alerts.create(
            alert_type="usage_threshold_reached", name="100 tokens", threshold=100, customer_id=ids["customer"],
            billable_metric_id=ids["metric"],
        ).data.id
        sdk.v1.usage.ingest(usage=[
            {"transaction_id": f"fuzz-{n}", "customer_id": ids["alias"], "event_type": "completion",
             "timestamp": at(start + timedelta(minutes=n)), "properties": {"tokens": n, "region": "eu"}}
            for n in range(5)
        ])
        ids["invoice"] = sdk.v1.customers.invoices.list(customer_id=ids["customer"]).data[0].id
        # spares, for the operations that archive or end what they name
        ids["spare_metric"] = sdk.v1.billable_metrics.create(name="spare", aggregation_type="COUNT").data.id
        ids["spare_product"] = sdk.v1.contracts.products.create(name="Spare", type="FIXED").data.id
        ids["spare_credit_type"] = sdk.v1.pricing_units.create(name="Spare credits").data.id
        ids["spare_rate_card"] = sdk.v1.contracts.rate_cards.create(name="Spare").data.id
        ids["spare_alert"] = sdk.v1.alerts.create(
            alert_type="usage_threshold_reached", name="spare", threshold=1, customer_id=ids["customer"],
            billable_metric_id=ids["metric"],
        ).data.id
        ids["spare_customer"] = sdk.v1.customers.create(name="Spare Co").data.id
        ids["spare_contract"] = sdk.v1.contracts.create(
            customer_id=ids["spare_customer"], rate_card_id=ids["rate_card"], starting_at=at(start),
        ).data.id
        # a FINALIZED invoice, for void and regenerate (cycle close's own step, as its workflow runs it)
        past = sdk.v1.customers.create(name="Past Co").data.id
        past_contract = sdk.v1.contracts.create(
            customer_id=past, rate_card_id=ids["rate_card"], starting_at=at(long_ago),
            usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
            subscriptions=[{
                "collection_schedule": "ARREARS", "initial_quantity": 1,
                "proration": {"invoice_behavior": "BILL_ON_NEXT_COLLECTION_DATE", "is_prorated": False},
                "subscription_rate": {"product_id": ids["seats"], "billing_frequency": "MONTHLY"},
            }],
        ).data.id
        closed = wiring.cycle_close_service().finalize(past, past_contract, long_ago, datetime.now(timezone.utc))
        ids["finalized_invoice"] = closed["invoice_ids"][0]
    return ids


@pytest.fixture(scope="module")
def deployed():
    """The functions on fresh moto tables, and a seeded world (its ids)."""
    with deployed_api(API_KEY):
        yield _seed()
    _report()


# Generated values of these fields are swapped for the seeded world's, for about two cases in three
# (chosen by the value's own hash, so the run stays deterministic).
_IDS = {
    "customer_id": "customer", "metric_id": "metric", "billable_metric_id": "metric", "invoice_id": "invoice",
    "contract_id": "contract", "rate_card_id": "rate_card", "product_id": "product", "alert_id": "alert",
    "commit_id": "commit", "credit_id": "credit", "credit_type_id": "credit_type", "subscription_id": "subscription",
}
# What a body's bare `id` names, by path. Archiving, voiding and regenerating name spares, so that
# the seeded world stays whole for the operations after them.
_BARE_ID = {
    "/v1/billable-metrics/archive": "spare_metric", "/v1/contract-pricing/products/get": "product",
    "/v1/contract-pricing/products/archive": "spare_product", "/v1/credit-types/archive": "spare_credit_type",
    "/v1/contract-pricing/rate-cards/get": "rate_card", "/v1/contract-pricing/rate-cards/archive": "spare_rate_card",
    "/v1/alerts/archive": "spare_alert", "/v1/invoices/void": "finalized_invoice",
    "/v1/invoices/regenerate": "finalized_invoice",
    "/v1/contracts/addManualBalanceLedgerEntry": "credit", "/v1/contracts/customerBalances/list": "commit",
}
_SPARE_CONTRACT_PATHS = ("/v1/contracts/archive", "/v1/contracts/updateEndDate", "/v2/contracts/edit", "/v1/contracts/amend",
                         "/v1/contracts/setUsageFilter")
_STARTS = {"starting_on", "starting_at", "covering_date", "at", "timestamp", "as_of_date"}
_ENDS = {"ending_before", "effective_before", "access_ending_before", "invoices_ending_before"}


def _steer(case, world: dict[str, str]) -> None:
    path = case.operation.path

    def swap(values: dict) -> None:
        for key, value in list(values.items()):
            if zlib.crc32(repr(value).encode()) % 3 == 0:
                continue
            name = _IDS.get(key) or (_BARE_ID.get(path) if key == "id" else None)
            if name in ("customer", "contract") and path in _SPARE_CONTRACT_PATHS:
                name = f"spare_{name}"
            if name is not None:
                values[key] = world[name]
            elif key in _STARTS and isinstance(value, str):
                values[key] = world["start"]
            elif key in _ENDS and isinstance(value, str):
                values[key] = world["end"]

    for parameters in (case.path_parameters, case.query):
        if isinstance(parameters, dict):
            swap(parameters)
    if isinstance(case.body, dict):
        swap(case.body)
    elif isinstance(case.body, list) and path == "/v1/ingest":
        for event in case.body:
            if isinstance(event, dict):
                swap(event)
                if event.get("customer_id") == world["customer"]:
                    event["customer_id"] = world["alias"]


def _report() -> None:
    histogram = Counter()
    for counts in statuses.values():
        histogram.update(counts)
    summary = {
        "requests": sum(histogram.values()),
        "operations": len(statuses),
        "statuses": {str(k): v for k, v in sorted(histogram.items())},
        "server_errors": sum(v for k, v in histogram.items() if k >= 500),
        "phases": dict(sorted(kinds.items())),
        "byte_level_cases": {str(k): v for k, v in sorted(raw_statuses.items())},
        "per_operation": {
            op: {str(k): v for k, v in sorted(c.items())}
            | {"seconds": round(seconds[op], 2), "slowest": [round(slowest[op][0], 2), slowest[op][1]]}
            for op, c in sorted(statuses.items())
        },
    }
    SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_PATH.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\napi fuzz: {summary['requests']} requests over {summary['operations']} operations, "
          f"statuses {summary['statuses']}, 5xx {summary['server_errors']}, phases {summary['phases']}; "
          f"byte-level cases {summary['byte_level_cases']} ({SUMMARY_PATH})")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the same cases on every run: CI is deterministic
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_below_500_as_documented(case, deployed):
    _steer(case, deployed)
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    began = time.perf_counter()
    response = case.call(headers=AUTH, app=gateway)
    took = time.perf_counter() - began
    seconds[operation] += took
    if took > slowest.get(operation, (0.0, ""))[0]:
        slowest[operation] = (took, case.as_curl_command())
    statuses[operation][response.status_code] += 1
    kinds[f"{case.meta.phase.name.value} {case.meta.generation.mode.value}"] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_fuzz_sent_enough_requests_and_none_answered_5xx(deployed):
    if len(statuses) < OPERATIONS:
        pytest.skip("the fuzz of some operations ran in another process, or was deselected")
    histogram = sum(statuses.values(), Counter())
    assert sum(histogram.values()) >= MIN_REQUESTS
    assert not [status for status in histogram if status >= 500]


# -- byte-level bodies: each must be a 4xx naming the body or the field at fault -----------------
def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


_CORRUPT_GZIP = bytearray(_gzip(b'{"name": "x"}' * 40))
_CORRUPT_GZIP[12:20] = b"\xff" * 8
RAW_BODIES = {
    "invalid UTF-8 (a bare 0xFF)": (b'{"name": "\xff\xfe"}', {}),
    "invalid UTF-8 (an overlong slash)": (b'{"name": "\xc0\xaf"}', {}),
    "invalid UTF-8 (a cut 3-byte character)": (b'{"name": "\xe2\x82"}', {}),
    "a body over the 1 MB bound": (b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}', {}),
    "a gzip bomb (20 MB of spaces in 20 KB)": (_gzip(b" " * 20_000_000), {"content-encoding": "gzip"}),
    "gzip whose deflate stream is corrupt": (bytes(_CORRUPT_GZIP), {"content-encoding": "gzip"}),
    "gzip cut short": (_gzip(b'{"name": "x"}')[:15], {"content-encoding": "gzip"}),
    "content-encoding gzip on plain JSON": (b'{"name": "x"}', {"content-encoding": "gzip"}),
    "arrays nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, {}),
    "objects nested one past the bound": (b'{"a":' * (MAX_NESTING_DEPTH + 1) + b"1" + b"}" * (MAX_NESTING_DEPTH + 1), {}),
    "the number 1e400": (b'{"name": "x", "price": 1e400}', {}),
    "the number -1e400": (b'[{"amount": -1e400}]', {}),
    "the number 1e-400": (b'{"threshold": 1e-400}', {}),
    "NaN": (b'{"name": "x", "price": NaN}', {}),
    "Infinity": (b'[{"properties": {"n": Infinity}}]', {}),
    "a 5,000-digit integer": (b'{"n": ' + b"9" * 5_000 + b"}", {}),
    "39 significant digits": (b'{"n": 1.23456789012345678901234567890123456789}', {}),
    "an empty body": (b"", {}),
    "whitespace only": (b" \n\t ", {}),
    "JSON null": (b"null", {}),
    "a JSON string": (b'"customers"', {}),
    "trailing garbage": (b'{"name": "x"} junk', {}),
    "a form body": (b"name=x&customer_id=y", {"content-type": "application/x-www-form-urlencoded"}),
}
RAW_ROUTES = ("/v1/customers", "/v1/contracts/create", "/v1/contract-pricing/rate-cards/addRate", "/v1/ingest")


@pytest.mark.parametrize("route", RAW_ROUTES)
@pytest.mark.parametrize(("body", "headers"), RAW_BODIES.values(), ids=RAW_BODIES.keys())
def test_a_hostile_body_is_a_4xx_naming_what_is_wrong(deployed, route, body, headers):
    status, _, data = send("POST", route, AUTH | {"content-type": "application/json"} | headers, body)
    raw_statuses[status] += 1
    error = json.loads(data)
    assert 400 <= status < 500, error
    assert error["type"] == "invalid_request" and error["field"], error


def test_the_document_is_served_as_committed_to_a_key_holder(deployed):
    status, headers, body = send("GET", "/openapi.json", AUTH)
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert body.decode() == DOCUMENT_PATH.read_text()


def test_the_document_needs_a_key_like_every_route(deployed):
    assert send("GET", "/openapi.json", {})[0] == 401
