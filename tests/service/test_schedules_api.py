"""Named schedules and rate schedules through the API function (in-process gateway, moto tables):
routes, request models, errors naming the field, and what is stored."""

from __future__ import annotations

import pytest

from tests.service.api_gateway import deployed_api, request

KEY = "tally_schedules_key"


def call(path: str, body: dict) -> tuple[int, dict | None]:
    return request("POST", path, KEY, body)


@pytest.fixture()
def world():
    """A customer, a rate card with API calls at 10 (12 from March) and 20 in the EU, and a
    contract on it from January with an 80% multiplier over Feb 10 to Feb 20."""
    with deployed_api(KEY):
        metric = call("/v1/billable-metrics/create", {"name": "calls", "aggregation_type": "COUNT", "group_keys": [["region"]]})[1]["data"]["id"]
        api = call("/v1/contract-pricing/products/create",
                   {"name": "API calls", "type": "USAGE", "billable_metric_id": metric, "pricing_group_key": ["region"]})[1]["data"]["id"]
        card = call("/v1/contract-pricing/rate-cards/create", {"name": "Standard"})[1]["data"]["id"]
        rates = [
            {"product_id": api, "entitled": True, "rate_type": "FLAT", "price": 10, "starting_at": "2026-01-01T00:00:00Z"},
            {"product_id": api, "entitled": True, "rate_type": "FLAT", "price": 12, "starting_at": "2026-03-01T00:00:00Z"},
            {"product_id": api, "entitled": True, "rate_type": "FLAT", "price": 20, "starting_at": "2026-01-01T00:00:00Z",
             "pricing_group_values": {"region": "eu"}},
        ]
        assert call("/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": card, "rates": rates})[0] == 200
        customer = call("/v1/customers", {"name": "Acme"})[1]["data"]["id"]
        contract = call("/v1/contracts/create", {
            "customer_id": customer, "rate_card_id": card, "starting_at": "2026-01-01T00:00:00Z",
            "overrides": [{"starting_at": "2026-02-10T00:00:00Z", "ending_before": "2026-02-20T00:00:00Z",
                           "product_id": api, "type": "MULTIPLIER", "multiplier": 0.8}],
        })[1]["data"]["id"]
        yield {"api": api, "card": card, "customer": customer, "contract": contract}


def _segments(status_body) -> list[tuple]:
    status, body = status_body
    assert status == 200, body
    return [(s["starting_at"][:10], (s.get("ending_before") or "")[:10] or None, s["value"]) for s in body["data"]]


def test_a_rate_cards_named_schedule_is_split_by_an_update_inside_it(world):
    card = {"rate_card_id": world["card"], "schedule_name": "discount-tier"}
    update = "/v1/contract-pricing/rate-cards/updateNamedSchedule"
    assert call(update, card | {"starting_at": "2026-01-01T00:00:00Z", "value": {"tier": "gold", "pct": 10}}) == (200, {})
    assert call(update, card | {"starting_at": "2026-02-01T00:00:00Z", "ending_before": "2026-03-01T00:00:00Z", "value": 7.5})[0] == 200
    get = "/v1/contract-pricing/rate-cards/getNamedSchedule"
    assert _segments(call(get, card)) == [
        ("2026-01-01", "2026-02-01", {"tier": "gold", "pct": 10}),
        ("2026-02-01", "2026-03-01", 7.5),
        ("2026-03-01", None, {"tier": "gold", "pct": 10}),
    ]
    assert _segments(call(get, card | {"covering_date": "2026-02-14T00:00:00Z"})) == [("2026-02-01", "2026-03-01", 7.5)]
    assert _segments(call(get, {"rate_card_id": world["card"], "schedule_name": "never-set"})) == []


def test_a_contracts_schedules_are_told_apart_by_their_properties_and_listed(world):
    ids = {"customer_id": world["customer"], "contract_id": world["contract"]}
    update = "/v1/contracts/updateNamedSchedule"
    assert call(update, ids | {"schedule_name": "fx", "starting_at": "2026-01-01T00:00:00Z", "value": "1.1",
                               "properties": {"currency": "EUR"}})[0] == 200
    assert call(update, ids | {"schedule_name": "fx", "starting_at": "2026-01-01T00:00:00Z", "value": "0.9",
                               "properties": {"currency": "GBP"}})[0] == 200
    assert call(update, ids | {"schedule_name": "limits", "starting_at": "2026-01-01T00:00:00Z", "value": None})[0] == 200
    get = "/v1/contracts/getNamedSchedule"
    assert _segments(call(get, ids | {"schedule_name": "fx", "properties": {"currency": "GBP"}})) == [("2026-01-01", None, "0.9")]
    assert _segments(call(get, ids | {"schedule_name": "fx"})) == []  # no properties: a schedule of its own, never set

    status, listed = call("/v1/contracts/listNamedSchedules", {"customer_id": world["customer"], "properties": {"currency": "EUR"}})
    assert status == 200
    assert [(s["contract_id"], s["schedule_name"], s["properties"]) for s in listed["data"]] == [
        (world["contract"], "fx", {"currency": "EUR"})]
    status, listed = call("/v1/contracts/listNamedSchedules", {"customer_id": world["customer"], "limit": 2})
    assert [s["schedule_name"] for s in listed["data"]] == ["fx", "fx"] and listed["next_page"] == "2"


def test_a_customers_named_schedule(world):
    ids = {"customer_id": world["customer"], "schedule_name": "plan"}
    assert call("/v1/customers/updateNamedSchedule", ids | {"starting_at": "2026-01-01T00:00:00Z", "value": [1, 2]})[0] == 200
    assert _segments(call("/v1/customers/getNamedSchedule", ids)) == [("2026-01-01", None, [1, 2])]


@pytest.mark.parametrize(
    "path,body,status,field",
    [
        ("/v1/customers/updateNamedSchedule",
         {"schedule_name": "x", "starting_at": "2026-02-01T00:00:00Z", "ending_before": "2026-01-01T00:00:00Z", "value": 1},
         400, "ending_before"),
        ("/v1/customers/updateNamedSchedule", {"schedule_name": "x", "starting_at": "2026-02-01T00:00:00Z"}, 400, "value"),
        ("/v1/customers/updateNamedSchedule", {"schedule_name": "x", "starting_at": "tomorrow", "value": 1}, 400, "starting_at"),
        ("/v1/customers/updateNamedSchedule",
         {"schedule_name": "x", "starting_at": "2026-02-01T00:00:00Z", "value": "v" * 400_000}, 400, "value"),
        ("/v1/customers/getNamedSchedule", {"schedule_name": "x", "customer_id": "nobody"}, 404, None),
        ("/v1/contract-pricing/rate-cards/getNamedSchedule", {"schedule_name": "x", "rate_card_id": "nothing"}, 404, None),
        ("/v1/contracts/getNamedSchedule", {"schedule_name": "x", "contract_id": "nothing"}, 404, None),
    ],
    ids=["a range ending before it starts", "no value", "a start that is not a timestamp", "a schedule past its size limit",
         "an unknown customer", "an unknown rate card", "an unknown contract"],
)
def test_refusals_name_the_field(world, path, body, status, field):
    if "rate-cards" not in path:
        body = {"customer_id": world["customer"]} | body
    got, error = call(path, body)
    assert got == status, error
    if field is not None:
        assert error["field"] == field
    assert _segments(call("/v1/customers/getNamedSchedule", {"customer_id": world["customer"], "schedule_name": "x"})) == []


def test_the_rate_cards_schedule_over_a_window(world):
    status, body = call("/v1/contract-pricing/rate-cards/getRateSchedule",
                        {"rate_card_id": world["card"], "starting_at": "2026-02-01T00:00:00Z", "ending_before": "2026-04-01T00:00:00Z"})
    assert status == 200
    assert [(r["starting_at"][:10], (r.get("ending_before") or "")[:10], r["rate"]["price"], r.get("pricing_group_values"))
            for r in body["data"]] == [
        ("2026-01-01", "2026-03-01", 10, None), ("2026-03-01", "", 12, None), ("2026-01-01", "", 20, {"region": "eu"})]
    status, body = call("/v1/contract-pricing/rate-cards/getRateSchedule?limit=1",
                        {"rate_card_id": world["card"], "starting_at": "2026-02-01T00:00:00Z",
                         "selectors": [{"partial_pricing_group_values": {"region": "eu"}}]})
    assert [r["rate"]["price"] for r in body["data"]] == [20] and body["next_page"] is None


def test_the_contracts_schedule_shows_the_override_over_its_time(world):
    ids = {"customer_id": world["customer"], "contract_id": world["contract"]}
    status, body = call("/v1/contracts/getContractRateSchedule", ids | {"at": "2026-02-15T00:00:00Z"})
    assert status == 200
    rows = [(r["starting_at"][:10], (r.get("ending_before") or "")[:10], r["list_rate"]["price"], (r.get("override_rate") or {}).get("price"),
             r.get("pricing_group_values"), r["rate_card_id"] == world["card"]) for r in body["data"]]
    assert rows == [("2026-02-10", "2026-02-20", 10, 8, None, True), ("2026-02-10", "2026-02-20", 20, 16, {"region": "eu"}, True)]
    status, error = call("/v1/contracts/getContractRateSchedule", ids | {"at": "soon"})
    assert (status, error["field"]) == (400, "at")
    assert call("/v1/contracts/getContractRateSchedule", {"customer_id": world["customer"], "contract_id": "nothing"})[0] == 404
