"""The catalog through Metronome's official SDK, unchanged, against the local stack: products,
pricing units, rate cards and rates. Bad input is checked on the raw JSON (400 + field)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique

pytestmark = pytest.mark.system

USD = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
JAN = datetime(2026, 1, 1, tzinfo=timezone.utc)
FEB = datetime(2026, 2, 1, tzinfo=timezone.utc)


def _metric(sdk, tag: str) -> str:
    return sdk.v1.billable_metrics.create(
        name=f"{tag} calls",
        aggregation_type="COUNT",
        event_type_filter={"in_values": [tag]},
        group_keys=[["region"], ["region", "tier"]],
    ).data.id


def _all(first_page) -> list:
    return [item for page in first_page.iter_pages() for item in page.data]


def test_products_of_every_type_are_created_updated_listed_and_archived(sdk):
    tag = unique("catalog")
    metric = _metric(sdk, tag)
    products = sdk.v1.contracts.products
    usage = products.create(
        name=f"{tag} API",
        type="USAGE",
        billable_metric_id=metric,
        pricing_group_key=["region"],
        presentation_group_key=["tier"],
        quantity_conversion={"conversion_factor": 1000, "operation": "DIVIDE", "name": "per thousand"},
        quantity_rounding={"decimal_places": 0, "rounding_method": "ROUND_UP"},
        tags=["api"],
        custom_fields={"sku": "API-1"},
    ).data.id
    fixed = products.create(name=f"{tag} setup", type="FIXED").data.id
    seats = products.create(name=f"{tag} seats", type="SUBSCRIPTION").data.id
    support = products.create(name=f"{tag} support", type="COMPOSITE", composite_tags=["api"]).data.id

    got = products.retrieve(id=usage).data
    assert (got.type, got.current.name, got.current.billable_metric_id) == ("USAGE", f"{tag} API", metric)
    assert (got.current.pricing_group_key, got.current.presentation_group_key, got.current.tags) == (["region"], ["tier"], ["api"])
    assert (got.current.quantity_conversion.conversion_factor, got.current.quantity_conversion.operation) == (1000, "DIVIDE")
    assert got.current.quantity_rounding.rounding_method == "ROUND_UP"
    assert got.custom_fields == {"sku": "API-1"}
    assert products.retrieve(id=support).data.current.composite_tags == ["api"]

    # An update dated in the future is a new version: current is unchanged until then.
    future = current_hour() + 2 * DAY
    products.update(product_id=usage, starting_at=future, name=f"{tag} API v2")
    got = products.retrieve(id=usage).data
    assert got.current.name == f"{tag} API"
    assert [(u.name, u.starting_at) for u in got.updates] == [(f"{tag} API v2", future)]
    assert got.updates[0].tags == ["api"]  # fields not given keep their values

    products.archive(product_id=fixed)
    assert products.retrieve(id=fixed).data.archived_at is not None
    listed = {p.id for p in _all(products.list(limit=2))}
    assert {usage, seats, support} <= listed and fixed not in listed
    assert fixed in {p.id for p in _all(products.list(archive_filter="ARCHIVED"))}


def test_pricing_units_list_usd_and_custom_units(sdk):
    name = unique("credits")
    created = sdk.v1.pricing_units.create(name=name).data.id
    units = {u.id: u for u in _all(sdk.v1.pricing_units.list())}
    assert (units[USD].name, units[USD].is_currency) == ("USD (cents)", True)
    assert (units[created].name, units[created].is_currency) == (name, False)
    sdk.v1.pricing_units.archive(id=created)
    assert created not in {u.id for u in _all(sdk.v1.pricing_units.list())}


def test_rate_cards_hold_dated_rates_read_back_at_an_instant(sdk):
    tag = unique("ratecard")
    metric = _metric(sdk, tag)
    api = sdk.v1.contracts.products.create(
        name=f"{tag} API", type="USAGE", billable_metric_id=metric, pricing_group_key=["region"], tags=["api"]
    ).data.id
    seats = sdk.v1.contracts.products.create(name=f"{tag} seats", type="SUBSCRIPTION").data.id
    credits = sdk.v1.pricing_units.create(name=unique("tokens")).data.id

    rate_cards = sdk.v1.contracts.rate_cards
    card = rate_cards.create(
        name=f"{tag} standard",
        description="list prices",
        aliases=[{"name": f"{tag}-standard", "starting_at": JAN}],
        fiat_credit_type_id=USD,
        credit_type_conversions=[{"custom_credit_type_id": credits, "fiat_per_custom_credit": 0.5}],
        custom_fields={"tier": "public"},
    ).data.id

    added = rate_cards.rates.add(
        rate_card_id=card, product_id=api, entitled=True, rate_type="FLAT", price=10, starting_at=JAN
    ).data
    assert (added.rate_type, added.price, added.credit_type.id) == ("FLAT", 10, USD)
    rate_cards.rates.add_many(
        rate_card_id=card,
        rates=[
            # a price change from February
            {"product_id": api, "entitled": True, "rate_type": "FLAT", "price": 8, "starting_at": FEB},
            {
                "product_id": api,
                "entitled": True,
                "rate_type": "TIERED",
                "starting_at": JAN,
                "pricing_group_values": {"region": "eu"},
                "tiers": [{"price": 5, "size": 100}, {"price": 2}],
            },
            {
                "product_id": seats,
                "entitled": False,
                "rate_type": "SUBSCRIPTION",
                "price": 1000,
                "starting_at": JAN,
                "billing_frequency": "MONTHLY",
                "credit_type_id": credits,
            },
        ],
    )

    in_jan = _all(rate_cards.rates.list(rate_card_id=card, at=JAN + DAY))
    flat = [r for r in in_jan if r.rate.rate_type == "FLAT"]
    assert [(r.rate.price, r.starting_at, r.ending_before) for r in flat] == [(10, JAN, FEB)]
    tiered = [r for r in in_jan if r.rate.rate_type == "TIERED"][0]
    assert [(t.price, t.size) for t in tiered.rate.tiers] == [(5, 100), (2, None)]
    assert tiered.pricing_group_values == {"region": "eu"}
    seat = [r for r in in_jan if r.product_id == seats][0]
    assert (seat.entitled, seat.billing_frequency, seat.rate.credit_type.id) == (False, "MONTHLY", credits)
    assert flat[0].product_name == f"{tag} API" and flat[0].product_tags == ["api"]

    in_feb = _all(
        rate_cards.rates.list(rate_card_id=card, at=FEB + HOUR, selectors=[{"product_id": api, "pricing_group_values": {}}])
    )
    assert [(r.rate.price, r.starting_at, r.ending_before) for r in in_feb] == [(8, FEB, None)]
    eu_only = _all(
        rate_cards.rates.list(rate_card_id=card, at=FEB, selectors=[{"partial_pricing_group_values": {"region": "eu"}}])
    )
    assert [r.rate.rate_type for r in eu_only] == ["TIERED"]
    assert _all(rate_cards.rates.list(rate_card_id=card, at=JAN - HOUR)) == []

    got = rate_cards.retrieve(id=card).data
    assert (got.name, got.description, got.custom_fields) == (f"{tag} standard", "list prices", {"tier": "public"})
    assert [(a.name, a.starting_at, a.ending_before) for a in got.aliases] == [(f"{tag}-standard", JAN, None)]
    assert [(c.custom_credit_type.id, c.fiat_per_custom_credit) for c in got.credit_type_conversions] == [(credits, "0.5")]
    assert got.fiat_credit_type.id == USD

    rate_cards.update(rate_card_id=card, name=f"{tag} renamed", aliases=[{"name": f"{tag}-renamed"}])
    got = rate_cards.retrieve(id=card).data
    assert (got.name, [a.name for a in got.aliases]) == (f"{tag} renamed", [f"{tag}-renamed"])
    assert card in {c.id for c in _all(rate_cards.list(limit=1))}
    rate_cards.archive(id=card)
    assert card not in {c.id for c in _all(rate_cards.list())}


def _rejected(api, path: str, body: dict, field: str) -> dict:
    response = api.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field, response.json()
    return response.json()


def test_bad_catalog_input_is_refused_naming_the_field_and_nothing_is_stored(api, sdk):
    tag = unique("bad")
    metric = _metric(sdk, tag)
    products_before = {p.id for p in _all(sdk.v1.contracts.products.list(archive_filter="ALL"))}

    _rejected(api, "/v1/contract-pricing/products/create", {"name": f"{tag} a", "type": "USAGE"}, "billable_metric_id")
    _rejected(
        api,
        "/v1/contract-pricing/products/create",
        {"name": f"{tag} b", "type": "USAGE", "billable_metric_id": metric, "pricing_group_key": ["tier"]},
        "pricing_group_key",
    )
    _rejected(
        api,
        "/v1/contract-pricing/products/create",
        {
            "name": f"{tag} c",
            "type": "USAGE",
            "billable_metric_id": metric,
            "quantity_conversion": {"conversion_factor": 0, "operation": "MULTIPLY"},
        },
        "quantity_conversion.conversion_factor",
    )
    assert {p.id for p in _all(sdk.v1.contracts.products.list(archive_filter="ALL"))} == products_before

    product = sdk.v1.contracts.products.create(name=f"{tag} API", type="USAGE", billable_metric_id=metric).data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    rate = {"rate_card_id": card, "product_id": product, "entitled": True, "rate_type": "FLAT", "price": 1}
    one_rate = {k: v for k, v in rate.items() if k != "rate_card_id"}
    add = "/v1/contract-pricing/rate-cards/addRate"
    _rejected(api, add, rate | {"starting_at": "2026-01-01T00:30:00Z"}, "starting_at")
    _rejected(api, add, rate | {"starting_at": rfc3339(JAN), "price": -1}, "price")
    _rejected(api, add, rate | {"starting_at": rfc3339(JAN), "product_id": "unknown"}, "product_id")
    _rejected(
        api,
        add,
        rate | {"starting_at": rfc3339(JAN), "rate_type": "TIERED", "price": None, "tiers": [{"price": 1, "size": 0}, {"price": 1}]},
        "tiers[0].size",
    )
    _rejected(
        api,
        "/v1/contract-pricing/rate-cards/addRates",
        {
            "rate_card_id": card,
            "rates": [
                one_rate | {"starting_at": rfc3339(JAN), "ending_before": rfc3339(FEB)},
                one_rate | {"starting_at": rfc3339(JAN + DAY)},
            ],
        },
        "rates[1].starting_at",
    )
    assert _all(sdk.v1.contracts.rate_cards.rates.list(rate_card_id=card, at=JAN + DAY)) == []

    sdk.v1.contracts.products.archive(product_id=product)
    _rejected(api, add, rate | {"starting_at": rfc3339(JAN)}, "product_id")

    assert api.post("/v1/contract-pricing/products/get", json={"id": "unknown"}).status_code == 404
    assert api.post("/v1/contract-pricing/rate-cards/get", json={"id": "unknown"}).status_code == 404
    unknown_card = api.post(add, json=rate | {"rate_card_id": "unknown", "starting_at": rfc3339(JAN)})
    assert unknown_card.status_code == 404
