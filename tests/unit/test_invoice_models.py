"""Invoice lines are written straight to JSON text. Here the text is checked against the plain
way of building the same JSON, a dict per line (how the API built it before, kept here as the
reference), for every kind of line: numbers are compared as the digits written, not as values."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tally.api.catalog_models import rate_json
from tally.api.invoice_models import invoice_json, line_items_text
from tally.billing import exact_json
from tally.billing.pricing import (
    USD_CENTS,
    CreditType,
    Invoice,
    LineItem,
    LineType,
    Product,
    ProductType,
    ProductVersion,
    Rate,
    RateType,
    Tier,
)
from tally.billing.pricing.lines import LineItems, SubLineItem, UsageRow, UsageRun, UsageSpan
from tally.billing.pricing.pricers import TierCharge
from tally.billing.time import format_rfc3339
from tally.services.invoices import DraftInvoice

UTC = timezone.utc
START = datetime(2026, 11, 1, tzinfo=UTC)
CUSTOM = CreditType("c-gpu", 'GPU "hours"', precision=4)
PRODUCTS = {
    "p-api": Product("p-api", ProductType.USAGE, (ProductVersion(START - timedelta(days=60), "API calls", "m-1", tags=("api",)),
                                                  ProductVersion(START + timedelta(days=10), "API calls v2", "m-1", tags=("api", "v2")))),
    "p-seat": Product("p-seat", ProductType.SUBSCRIPTION, (ProductVersion(START, "Seats"),)),
}


def reference_line(line: LineItem, products: dict[str, Product]) -> dict[str, Any]:
    """A line as a dict, field by field: the reference the fast writer must equal."""
    product = products.get(line.product_id)
    body: dict[str, Any] = {
        "type": line.type.value,
        "name": line.name,
        **({"product_id": line.product_id, "product_type": line.product_type.value} if line.product_id else {}),
        "product_tags": list(product.at(line.starting_at).tags) if product else [],
        "credit_type": {"id": line.credit_type.id, "name": line.credit_type.name},
        "quantity": line.quantity,
        "total": line.total,
        "starting_at": format_rfc3339(line.starting_at),
        "is_prorated": line.is_prorated,
        "custom_fields": {},
        "sub_line_items": [
            {
                "name": sub.name,
                "quantity": sub.quantity,
                "subtotal": sub.subtotal,
                "custom_fields": {},
                "tiers": [
                    {"starting_at": t.starting_at, "quantity": t.quantity, "price": t.price, "subtotal": t.subtotal}
                    for t in sub.tiers
                ],
            }
            for sub in line.sub_line_items
        ],
    }
    if line.unit_price is not None:
        body["unit_price"] = line.unit_price
    if line.ending_before is not None:
        body["ending_before"] = format_rfc3339(line.ending_before)
    if line.pricing_group_values is not None:
        body["pricing_group_values"] = dict(line.pricing_group_values)
    if line.presentation_group_values is not None:
        body["presentation_group_values"] = dict(line.presentation_group_values)
    if line.list_price is not None:
        body["list_price"] = rate_json(line.list_price)
    if line.subscription_id is not None:
        body["subscription_id"] = line.subscription_id
    if line.scheduled_charge_id is not None:
        body["scheduled_charge_id"] = line.scheduled_charge_id
    if line.discount_id is not None:
        body["discount_id"] = line.discount_id
    if line.professional_service_id is not None:
        body["professional_service_id"] = line.professional_service_id
        if line.metadata is not None:
            body["metadata"] = line.metadata
    if line.commit_id is not None:
        body["commit_id"] = line.commit_id
        body["commit_type"] = "PostpaidCommit" if line.commit_type == "POSTPAID" else "PrepaidCommit"
        if line.commit_segment_id is not None:
            body["commit_segment_id"] = line.commit_segment_id
    if line.type is LineType.APPLIED_COMMIT_OR_CREDIT:
        body["applied_commit_or_credit"] = {"id": line.commit_id, "type": line.commit_type}
    if line.type is LineType.POSTPAID_TRUEUP:
        body["postpaid_commit"] = {"id": line.commit_id}
    return body


def _as_written(text: str) -> Any:
    """Parsed JSON with every number kept as the digits written: 1.50 and 1.5 differ."""
    return json.loads(text, parse_float=lambda s: ("number", s), parse_int=lambda s: ("number", s))


amounts = st.builds(lambda digits, places: Decimal(digits).scaleb(-places), st.integers(-10**18, 10**18), st.integers(-3, 8)) | st.sampled_from(
    [Decimal("1E+3"), Decimal("0E-8"), Decimal("-0.00"), Decimal("123456789012345678901234567890.5")]
)
names = st.text(min_size=1, max_size=12) | st.sampled_from(["Requests (standard)", 'a "quoted" \\ name', "n\u00e9\u2028w\nline"])
group_values = st.none() | st.dictionaries(
    st.sampled_from(["model", "region", 'k"ey']), st.none() | st.text(max_size=6), max_size=2
)
instants = st.integers(0, 24 * 40).map(lambda h: START + timedelta(hours=h))
rates = st.none() | st.builds(
    lambda price, tiers: Rate("p-api", START, RateType.TIERED if tiers else RateType.FLAT, price=None if tiers else price,
                              tiers=tuple(Tier(p, s) for p, s in tiers), pricing_group_values={"model": "m"}),
    amounts, st.lists(st.tuples(amounts, st.none() | amounts), max_size=2),
)
tiers = st.builds(TierCharge, amounts, amounts, amounts, amounts)
sub_lines = st.lists(st.builds(SubLineItem, names, amounts, amounts, st.lists(tiers, max_size=3).map(tuple)), max_size=2)


@st.composite
def lines(draw: st.DrawFn) -> LineItem:
    kind = draw(st.sampled_from(list(LineType)))
    product_id = draw(st.sampled_from(["p-api", "p-seat", "p-unknown", ""]))
    start = draw(instants)
    commit_id = draw(st.none() | st.sampled_from(["c-1", "c-2"]))
    return LineItem(
        kind,
        draw(names),
        product_id,
        draw(st.sampled_from(list(ProductType))),
        draw(st.sampled_from([USD_CENTS, CUSTOM])),
        draw(amounts),
        draw(st.none() | amounts),
        draw(amounts),
        draw(amounts),
        start,
        draw(st.none() | st.just(start + timedelta(hours=draw(st.integers(1, 48))))),
        draw(group_values),
        draw(group_values),
        tuple(draw(sub_lines)),
        draw(st.booleans()),
        draw(rates),
        subscription_id=draw(st.none() | st.just("s-1")),
        scheduled_charge_id=draw(st.none() | st.just("sc-1")),
        commit_id=commit_id,
        commit_segment_id=draw(st.none() | st.just("seg-1")) if commit_id else None,
        commit_type=draw(st.sampled_from(["PREPAID", "POSTPAID", "CREDIT"])) if commit_id else None,
        discount_id=draw(st.none() | st.just("d-1")),
        professional_service_id=draw(st.none() | st.just("ps-1")),
        metadata=draw(st.none() | names),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(lines(), max_size=4))
def test_line_items_text_equals_the_dict_form_field_by_field_and_digit_by_digit(items):
    # Lines sharing a product and span share the cached parts: repeat some to exercise the caches.
    items = items + items[:2]
    written = _as_written(line_items_text(items, PRODUCTS))
    expected = _as_written(exact_json.dumps([reference_line(line, PRODUCTS) for line in items]))
    assert written == expected


@st.composite
def usage_runs(draw: st.DrawFn) -> UsageRun:
    """Rows as rating keeps usage lines: several per span, spans of one name, product and credit
    type, group value mappings shared between rows."""
    name, credit_type = draw(names), draw(st.sampled_from([USD_CENTS, CUSTOM]))
    product_id = draw(st.sampled_from(["p-api", "p-unknown"]))
    spans = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(instants)
        spans.append(UsageSpan(name, product_id, credit_type, start, start + timedelta(hours=draw(st.integers(1, 48))), draw(rates)))
    mappings = draw(st.lists(group_values, min_size=1, max_size=3))
    rows = [
        UsageRow(draw(st.sampled_from(spans)), draw(st.sampled_from(mappings)), draw(st.sampled_from(mappings)),
                 draw(amounts), draw(st.none() | amounts), draw(amounts), draw(amounts),
                 tuple(draw(st.lists(tiers, max_size=3))), draw(st.none() | amounts))
        for _ in range(draw(st.integers(1, 5)))
    ]
    return UsageRun.of(rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(lines() | usage_runs(), max_size=4))
def test_usage_rows_are_written_as_the_dict_form_of_their_lines(parts):
    items = LineItems(parts + parts[:1])
    written = _as_written(line_items_text(items, PRODUCTS))
    expected = _as_written(exact_json.dumps([reference_line(line, PRODUCTS) for line in items]))
    assert written == expected


def test_a_tiered_usage_line_reads_as_metronome_lays_it_out():
    line = LineItem(
        LineType.USAGE, "API calls", "p-api", ProductType.USAGE, USD_CENTS, Decimal(150), None, Decimal("75.00"),
        Decimal("75.000"), START, START + timedelta(days=30), {"model": "gpt"}, None,
        (SubLineItem("API calls", Decimal(150), Decimal("75.000"),
                     (TierCharge(Decimal(0), Decimal(100), Decimal("0.6"), Decimal("60.0")),
                      TierCharge(Decimal(100), Decimal(50), Decimal("0.3"), Decimal("15.0")))),),
    )
    invoice = Invoice("k-1", "cust-1", USD_CENTS, START, START + timedelta(days=30), (line,), Decimal("75.00"), Decimal("75.00"))
    body = exact_json.loads(exact_json.dumps({"data": invoice_json(DraftInvoice("inv-1", invoice, None), PRODUCTS)}))["data"]
    assert body["total"] == Decimal("75.00")
    (item,) = body["line_items"]
    assert item["product_tags"] == ["api"]
    assert (item["quantity"], item["total"], item["pricing_group_values"]) == (150, Decimal("75.00"), {"model": "gpt"})
    assert "unit_price" not in item and "presentation_group_values" not in item
    assert [(t["starting_at"], t["quantity"], t["subtotal"]) for t in item["sub_line_items"][0]["tiers"]] == [
        (0, 100, Decimal("60.0")), (100, 50, Decimal("15.0"))
    ]
    assert (item["starting_at"], item["ending_before"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")


def test_skipping_zero_quantity_lines_leaves_the_others_and_the_totals():
    def usage(quantity: Decimal) -> LineItem:
        return LineItem(LineType.USAGE, "API calls", "p-api", ProductType.USAGE, USD_CENTS, quantity, Decimal(1),
                        quantity, quantity, START, START + timedelta(days=30))

    invoice = Invoice("k-1", "cust-1", USD_CENTS, START, START + timedelta(days=30),
                      (usage(Decimal(0)), usage(Decimal(3))), Decimal(3), Decimal(3))
    draft = DraftInvoice("inv-1", invoice, None)
    every = exact_json.loads(exact_json.dumps(invoice_json(draft, PRODUCTS)))
    some = exact_json.loads(exact_json.dumps(invoice_json(draft, PRODUCTS, skip_zero_quantity=True)))
    assert [line["quantity"] for line in every["line_items"]] == [0, 3]
    assert [line["quantity"] for line in some["line_items"]] == [3]
    assert some["total"] == every["total"] == 3
