"""Products, pricing units, rate cards and rates through CatalogService, on moto's DynamoDB."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore
from tally.adapters.dynamo.catalog import DynamoCatalogStore
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.pricing import (
    USD_CENTS,
    ConversionOperation,
    ProductType,
    ProductVersion,
    QuantityConversion,
    Rate,
    RateType,
    Tier,
)
from tally.services.catalog import CatalogService, RateCardAlias, RateDraft, RateSelector
from tests.service.conftest import NOW

HOUR = timedelta(hours=1)
JAN = NOW.replace(month=1, day=1, hour=0)
FEB = JAN.replace(month=2)
MAR = JAN.replace(month=3)


@pytest.fixture()
def catalog(dynamo, clock):
    billing = DynamoBillingStore(dynamo["billing"], dynamo["client"])
    metrics = DynamoMetricStore(billing)
    metrics.put(
        BillableMetric(
            id="metric-1",
            name="API calls",
            aggregation_type=Aggregation.COUNT,
            aggregation_key=None,
            event_type_filter=None,
            property_filters=(),
            group_keys=(("region",), ("region", "tier")),
            created_at=NOW,
            activated_at=NOW,
        )
    )
    return CatalogService(DynamoCatalogStore(dynamo["billing"], dynamo["client"]), metrics, clock)


def usage_version(**changes) -> ProductVersion:
    fields = {"starting_at": NOW, "name": "API calls", "billable_metric_id": "metric-1"} | changes
    return ProductVersion(**fields)


def flat(product_id: str, price: str, start=JAN, end=None, **kw) -> RateDraft:
    return RateDraft(Rate(product_id, start, RateType.FLAT, price=Decimal(price), ending_before=end, **kw))


def test_products_of_every_type_are_created_and_read_back_as_engine_objects(catalog):
    usage = catalog.create_product(
        ProductType.USAGE,
        usage_version(
            pricing_group_key=("region",),
            presentation_group_key=("tier",),
            quantity_conversion=QuantityConversion(Decimal(1024), ConversionOperation.DIVIDE),
        ),
    ).product
    fixed = catalog.create_product(ProductType.FIXED, ProductVersion(NOW, "Setup fee")).product
    sub = catalog.create_product(ProductType.SUBSCRIPTION, ProductVersion(NOW, "Seats")).product
    comp = catalog.create_product(ProductType.COMPOSITE, ProductVersion(NOW, "Support", composite_product_ids=(usage.id,))).product

    assert catalog.product(usage.id).at(NOW).quantity_conversion.conversion_factor == 1024
    assert catalog.product(usage.id).versions[0].starting_at == NOW  # hour of creation
    assert set(catalog.products()) == {usage.id, fixed.id, sub.id, comp.id}
    assert catalog.product(comp.id).at(NOW).composite_product_ids == (usage.id,)


@pytest.mark.parametrize(
    "product_type, version, field",
    [
        ("USAGE", ProductVersion(NOW, "no metric"), "billable_metric_id"),
        ("USAGE", usage_version(billable_metric_id="nope"), "billable_metric_id"),
        ("USAGE", usage_version(pricing_group_key=("tier",)), "pricing_group_key"),
        (
            "USAGE",
            usage_version(quantity_conversion=QuantityConversion(Decimal(0), ConversionOperation.MULTIPLY)),
            "quantity_conversion.conversion_factor",
        ),
        ("FIXED", ProductVersion(NOW, "fixed", billable_metric_id="metric-1"), "billable_metric_id"),
        ("COMPOSITE", ProductVersion(NOW, "composite", composite_product_ids=("unknown",)), "composite_product_ids[0]"),
    ],
    ids=[
        "usage product without a metric",
        "usage product with an unknown metric",
        "group keys that are not one of the metric's group keys",
        "conversion factor zero",
        "metric on a fixed product",
        "composite of an unknown product",
    ],
)
def test_bad_products_are_refused_naming_the_field_and_nothing_is_stored(catalog, product_type, version, field):
    with pytest.raises(InvalidInput) as caught:
        catalog.create_product(ProductType(product_type), version)
    assert caught.value.field == field
    assert catalog.products() == {}


def test_an_update_adds_a_version_from_its_starting_at_and_keeps_the_rest(catalog, clock):
    product = catalog.create_product(ProductType.USAGE, usage_version(tags=("api",))).product
    later = NOW + 48 * HOUR
    catalog.update_product(product.id, later, {"name": "API requests"})
    updated = catalog.product(product.id)
    assert [v.name for v in updated.versions] == ["API calls", "API requests"]
    assert updated.at(later).tags == ("api",)
    assert updated.at(later - HOUR).name == "API calls"
    with pytest.raises(InvalidInput) as caught:
        catalog.update_product(product.id, later + timedelta(minutes=5), {"name": "x"})
    assert caught.value.field == "starting_at"
    with pytest.raises(NotFound):
        catalog.product("unknown")


def test_rate_cards_hold_rates_price_changes_and_tiers(catalog):
    api = catalog.create_product(ProductType.USAGE, usage_version(pricing_group_key=("region",))).product
    card = catalog.create_rate_card("Standard", aliases=(RateCardAlias("standard", starting_at=JAN),))

    catalog.add_rates(card.id, [flat(api.id, "10")], single=True)
    catalog.add_rates(card.id, [flat(api.id, "8", start=FEB)], single=True)  # a price change
    tiers = (Tier(Decimal(5), Decimal(100)), Tier(Decimal("2.5")))
    catalog.add_rates(
        card.id,
        [RateDraft(Rate(api.id, JAN, RateType.TIERED, tiers=tiers, pricing_group_values={"region": "eu"}))],
    )

    rates = catalog.rate_card(card.id).rates
    assert [(r.starting_at, r.ending_before, r.price) for r in rates if r.rate_type is RateType.FLAT] == [
        (JAN, FEB, Decimal(10)),
        (FEB, None, Decimal(8)),
    ]
    in_jan = catalog.rates_at(card.id, JAN + HOUR)
    assert sorted(str(r.price or r.tiers[1].price) for r, _ in in_jan) == ["10", "2.5"]
    in_feb = catalog.rates_at(card.id, FEB, [RateSelector(pricing_group_values={})])
    assert [r.price for r, _ in in_feb] == [Decimal(8)]
    assert catalog.rate_card_id_for_alias("standard", FEB) == card.id
    assert catalog.rate_card_id_for_alias("standard", JAN - HOUR) is None
    assert catalog.is_archived(card.id) is False
    catalog.archive_rate_card(card.id)
    assert catalog.is_archived(card.id) is True
    assert catalog.rate_card_id_for_alias("standard", FEB) is None


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda p: [flat(p, "1", start=JAN + timedelta(minutes=30))], "rates[0].starting_at"),
        (lambda p: [flat(p, "-1")], "rates[0].price"),
        (lambda p: [flat(p, "1", end=FEB), flat(p, "2", start=JAN + HOUR)], "rates[1].starting_at"),
        (
            lambda p: [RateDraft(Rate(p, JAN, RateType.TIERED, tiers=(Tier(Decimal(1), Decimal(0)), Tier(Decimal(1)))))],
            "rates[0].tiers[0].size",
        ),
        (lambda p: [flat("unknown", "1")], "rates[0].product_id"),
        (lambda p: [flat(p, "1", pricing_group_values={"tier": "gold"})], "rates[0].pricing_group_values"),
        (lambda p: [RateDraft(flat(p, "1").rate, credit_type_id="unknown")], "rates[0].credit_type_id"),
    ],
    ids=[
        "starting_at not on the hour",
        "negative price",
        "two rates overlapping for the same product",
        "a tier of size zero (boundaries not increasing)",
        "unknown product",
        "pricing group values on a key the product does not price by",
        "unknown pricing unit",
    ],
)
def test_bad_rates_are_refused_naming_the_field_and_nothing_is_stored(catalog, make, field):
    product = catalog.create_product(ProductType.USAGE, usage_version(pricing_group_key=("region",))).product
    card = catalog.create_rate_card("Standard")
    with pytest.raises(InvalidInput) as caught:
        catalog.add_rates(card.id, make(product.id))
    assert caught.value.field == field
    assert catalog.rate_card(card.id).rates == ()


def test_an_overlap_with_a_stored_rate_and_a_rate_on_an_archived_product_are_refused(catalog):
    product = catalog.create_product(ProductType.USAGE, usage_version()).product
    card = catalog.create_rate_card("Standard")
    catalog.add_rates(card.id, [flat(product.id, "1", end=MAR)])
    with pytest.raises(InvalidInput) as caught:
        catalog.add_rates(card.id, [flat(product.id, "2", start=FEB)], single=True)
    assert caught.value.field == "starting_at"
    catalog.archive_product(product.id)
    with pytest.raises(InvalidInput) as caught:
        catalog.add_rates(card.id, [flat(product.id, "2", start=MAR)], single=True)
    assert (caught.value.field, caught.value.rule) == ("product_id", "is archived: it cannot be used in new rates")
    # Archived products keep pricing through the rates they already have.
    assert [r.price for r in catalog.rate_card(card.id).rates] == [Decimal(1)]
    assert catalog.product(product.id).archived_at is not None


def test_pricing_units_and_conversions(catalog):
    assert [r.credit_type for r in catalog.credit_types()] == [USD_CENTS]
    credits = catalog.create_credit_type("AI credits").credit_type
    with pytest.raises(InvalidInput) as caught:
        catalog.create_rate_card("Credits", credit_type_conversions=((credits.id, Decimal(0)),))
    assert caught.value.field == "credit_type_conversions[0].fiat_per_custom_credit"
    card = catalog.create_rate_card("Credits", credit_type_conversions=((credits.id, Decimal("0.5")),))
    product = catalog.create_product(ProductType.USAGE, usage_version()).product
    catalog.add_rates(card.id, [RateDraft(flat(product.id, "3").rate, credit_type_id=credits.id)])
    assert catalog.rate_card(card.id).rates[0].credit_type == credits
    assert catalog.credit_type(credits.id) == credits
    catalog.archive_credit_type(credits.id)
    assert [r.credit_type for r in catalog.credit_types()] == [USD_CENTS]


def test_parsed_catalog_documents_are_kept_by_their_text_so_every_change_is_read(catalog, dynamo, clock):
    """The DynamoDB adapters keep metrics, products and rates parsed by their stored text (a warm
    function reads them on every draft invoice): an unchanged item gives the very same value, and
    every change, to the document or to an attribute beside it (archived_at, revision), is seen."""
    from tally.adapters.dynamo.billing import DynamoBillingStore, DynamoMetricStore

    metrics = DynamoMetricStore(DynamoBillingStore(dynamo["billing"], dynamo["client"]))
    assert metrics.get("metric-1") is metrics.get("metric-1")
    assert metrics.get("metric-1").archived_at is None
    metrics.archive("metric-1", NOW + HOUR)
    assert metrics.get("metric-1").archived_at == NOW + HOUR
    assert [m.archived_at for m in metrics.all()] == [NOW + HOUR]

    product = catalog.create_product(ProductType.USAGE, usage_version()).product
    assert catalog.product_record(product.id) is catalog.product_record(product.id)
    catalog.update_product(product.id, NOW + 48 * HOUR, {"name": "API requests"})
    assert [v.name for v in catalog.product(product.id).versions] == ["API calls", "API requests"]
    clock.now = NOW + 49 * HOUR
    archived = catalog.archive_product(product.id)
    assert catalog.product_record(product.id).product.archived_at == NOW + 49 * HOUR
    assert catalog.product_record(product.id).revision == archived.revision

    other = catalog.create_product(ProductType.USAGE, usage_version(name="Other")).product
    card = catalog.create_rate_card("List")
    catalog.add_rates(card.id, [flat(other.id, "2")])
    assert [(r.price, r.ending_before) for r in catalog.rate_card(card.id).rates] == [(Decimal(2), None)]
    catalog.add_rates(card.id, [flat(other.id, "3", start=MAR)])  # a price change ends the stored rate there
    assert [(r.price, r.ending_before) for r in catalog.rate_card(card.id).rates] == [(Decimal(2), MAR), (Decimal(3), None)]
