"""LineItems: an invoice's lines, with usage runs standing for their rows' lines."""

from __future__ import annotations

from decimal import Decimal as D

from tally.billing.pricing import USD_CENTS, LineItem, LineType, ProductType
from tally.billing.pricing.lines import LineItems, SubLineItem, UsageRow, UsageRun, UsageSpan
from tally.billing.pricing.pricers import TierCharge

from tests.unit.pricing.builders import at

SPAN = UsageSpan("API", "p-api", USD_CENTS, at(1, 1), at(2, 1), None)
TIERS = (TierCharge(D(0), D(10), D(2), D(20)), TierCharge(D(10), D(5), D(1), D(5)))
ROWS = (
    UsageRow(SPAN, {"model": "a"}, None, D(15), None, D("25.00"), D(25), TIERS, None),
    UsageRow(SPAN, {"model": "b"}, None, D(3), D(2), D("6.00"), D(6), (), D("1.50")),
)
SEATS = LineItem(LineType.SUBSCRIPTION, "Seats", "p-seat", ProductType.SUBSCRIPTION, USD_CENTS, D(2), D(100),
                 D("200.00"), D(200), at(1, 1), at(2, 1))


def test_a_row_is_the_usage_line_it_stands_for():
    tiered, flat = ROWS
    assert tiered.line_item() == LineItem(
        LineType.USAGE, "API", "p-api", ProductType.USAGE, USD_CENTS, D(15), None, D("25.00"), D(25), at(1, 1), at(2, 1),
        {"model": "a"}, None, (SubLineItem("API", D(15), D(25), TIERS),),
    )
    assert flat.line_item().sub_line_items == () and flat.line_item().commit_total == D("1.50")


def test_line_items_are_a_sequence_equal_to_the_lines_they_stand_for():
    run = UsageRun.of(ROWS)
    items = LineItems([SEATS, run])
    expected = (SEATS, ROWS[0].line_item(), ROWS[1].line_item())
    assert run.total == D("31.00")
    assert len(items) == 3 and items == expected and items == list(expected) and list(items) == list(expected)
    assert items[1] == expected[1] and items[-1] == expected[2] and items[1:] == expected[1:]
    assert items == LineItems(expected)
    assert items != expected[:2] and LineItems() == ()
