"""Products: quantity conversion then rounding, and versions taking effect at an hour."""

from decimal import Decimal

import pytest

from tally.billing.pricing import (
    ConversionOperation,
    ProductVersion,
    QuantityConversion,
    QuantityRounding,
    RoundingMethod,
    convert_quantity,
)
from tests.unit.pricing.builders import D, FakeUsage, at, catalog, contract, flat, invoice, product, summary


def version(conversion=None, rounding=None):
    return ProductVersion(at(1, 1), "api", "calls", quantity_conversion=conversion, quantity_rounding=rounding)


@pytest.mark.parametrize(
    "raw,conversion,rounding,quantity",
    [
        (D(3000), (1024, "DIVIDE"), (0, "ROUND_UP"), D(3)),
        (D(3000), (1024, "DIVIDE"), (0, "ROUND_DOWN"), D(2)),
        (D(3000), (1024, "DIVIDE"), (3, "ROUND_HALF_UP"), D("2.930")),
        (D("1.5"), (60, "MULTIPLY"), None, D(90)),
        (D("2.5"), None, (0, "ROUND_HALF_UP"), D(3)),
        (D("-2.5"), None, (0, "ROUND_UP"), D(-3)),
    ],
    ids=[
        "megabytes to gigabytes, rounded up to whole gigabytes",
        "megabytes to gigabytes, rounded down",
        "megabytes to gigabytes, half up to three places",
        "hours to minutes, no rounding",
        "rounding alone, half up",
        "a negative correction rounds away from zero like a positive one",
    ],
)
def test_conversion_then_rounding(raw, conversion, rounding, quantity):
    conv = QuantityConversion(D(conversion[0]), ConversionOperation(conversion[1])) if conversion else None
    rnd = QuantityRounding(rounding[0], RoundingMethod(rounding[1])) if rounding else None
    assert convert_quantity(raw, version(conv, rnd)) == quantity


def test_a_product_update_takes_effect_at_its_hour_and_splits_the_period():
    api = product("api", name="API calls").updated(
        ProductVersion(at(1, 15), "API requests", "calls",
                       quantity_conversion=QuantityConversion(Decimal(2), ConversionOperation.MULTIPLY))
    )
    usage = FakeUsage().add(at(1, 5), 10).add(at(1, 20), 10)
    draft = invoice(contract(flat("api", 1)), catalog(api), usage)
    assert summary(draft) == [("api", "01-01T00", D(10), D("10.00")), ("api", "01-15T00", D(20), D("20.00"))]
    assert [l.name for l in draft.line_items] == ["API calls", "API requests"]


def test_an_update_dated_like_an_existing_version_replaces_it():
    api = product("api").updated(ProductVersion(at(1, 15), "v2", "calls")).updated(ProductVersion(at(1, 15), "v3", "calls"))
    assert [v.name for v in api.versions] == ["api", "v3"]
    assert api.at(at(1, 14, 23)).name == "api" and api.at(at(1, 15)).name == "v3"
    assert api.at(at(1, 1, year=2020)).name == "api"  # the first version also governs earlier times
