"""A finalized invoice as a billing provider gets it (tally.billing.invoice_delivery): whole cents
that add up to Tally's total, descriptions naming product, period and group values."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.invoice_delivery import DeliveryRefused, external_invoice
from tally.billing.pricing import USD_CENTS, CreditType, Invoice, LineItem, LineType, ProductType

UTC = timezone.utc
OCT, NOV = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


def _line(total: str, name: str = "API calls", groups=None, counts=True, kind=LineType.USAGE, credit_type=USD_CENTS,
          end=NOV) -> LineItem:
    return LineItem(kind, name, "p", ProductType.USAGE, credit_type, Decimal(1), None, Decimal(total), Decimal(total),
                    OCT, end, pricing_group_values=groups, counts_in_total=counts)


def _invoice(*lines: LineItem, credit_type=USD_CENTS) -> Invoice:
    total = sum((line.total for line in lines if line.counts_in_total), Decimal(0))
    return Invoice("c", "cu", credit_type, OCT, NOV, list(lines), total, total)


def test_fractional_cents_are_rounded_so_that_the_items_add_up_to_the_total_rounded_once():
    # 0.25 + 0.25 + 0.25 + 0.25 + 10.50 = 11.50 -> 12 (half even); naive per-line rounding gives 0+0+0+0+10 = 10
    draft = external_invoice("i", _invoice(*[_line("0.25")] * 4, _line("10.50")))

    assert [line.amount for line in draft.lines] == [0, 0, 1, 0, 11]
    assert draft.total == 12 and draft.currency == "usd"


def test_descriptions_name_the_product_the_period_and_the_group_values():
    draft = external_invoice("i", _invoice(_line("120", groups={"region": "EU", "model": "large"}),
                                           _line("5000", name="Onboarding", kind=LineType.SCHEDULED, end=None)))

    assert [(line.index, line.amount, line.description) for line in draft.lines] == [
        (0, 120, "API calls (2026-10-01 to 2026-11-01) · model=large, region=EU"),
        (1, 5000, "Onboarding (2026-10-01)"),
    ]
    assert (draft.lines[1].period_start, draft.lines[1].period_end) == (OCT, OCT)


def test_lines_outside_the_total_are_left_out_and_keep_their_index_elsewhere():
    applied = _line("-300", name="Prepaid commit", kind=LineType.APPLIED_COMMIT_OR_CREDIT)
    postpaid = _line("-80", name="Postpaid drawdown", counts=False)

    draft = external_invoice("i", _invoice(_line("500"), postpaid, applied))

    assert [(line.index, line.amount) for line in draft.lines] == [(0, 500), (2, -300)]
    assert draft.total == 200


def test_an_invoice_in_a_custom_pricing_unit_is_refused():
    credits = CreditType("ct-1", "Fuzz credits")
    with pytest.raises(DeliveryRefused, match="Fuzz credits"):
        external_invoice("i", _invoice(_line("10", credit_type=credits), credit_type=credits))
