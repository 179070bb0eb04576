"""What an invoice meters to AWS Marketplace (billing/aws_delivery.py): whole cents under
usage_fee, never rounded, never negative, never over AWS's Integer."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tally.billing.aws_delivery import hour_slots, owed_cents, region_of
from tally.billing.invoice_delivery import DeliveryRefused
from tally.billing.pricing import USD_CENTS


def _invoice(total: str, credit_type=USD_CENTS):
    return SimpleNamespace(total=Decimal(total), credit_type=credit_type)


@pytest.mark.parametrize(("total", "already", "owed"), [
    ("2468", 0, 2468),
    ("2468.00", 0, 2468),
    ("2668", 2468, 200),
    ("2468", 2468, 0),
    ("2147483647", 0, 2**31 - 1),
])
def test_the_quantity_is_the_total_in_whole_cents_less_what_was_metered(total, already, owed):
    assert owed_cents("inv", _invoice(total), already) == owed


@pytest.mark.parametrize(("total", "already", "words"), [
    ("2468.5", 0, "not a whole number of cents"),
    ("0.01", 0, "not a whole number of cents"),
    ("2000", 2468, "cannot lower a bill"),
    ("2147483648", 0, "largest quantity"),
])
def test_fractions_decreases_and_overflows_are_refused_not_rounded(total, already, words):
    with pytest.raises(DeliveryRefused, match=words):
        owed_cents("inv", _invoice(total), already)


def test_a_custom_pricing_unit_is_refused():
    with pytest.raises(DeliveryRefused, match="USD cents"):
        owed_cents("inv", _invoice("10", SimpleNamespace(id="credits", name="Credits")))


def test_an_invoice_may_claim_the_current_hour_and_the_five_before():
    slots = hour_slots(datetime(2026, 11, 24, 12, 41, 7, tzinfo=timezone.utc))
    assert [s.hour for s in slots] == [12, 11, 10, 9, 8, 7]
    assert slots[0] == datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(("destination", "region"), [
    ("arn:aws:sns:eu-west-1:111122223333:billing.fifo", "eu-west-1"),
    ("https://sqs.us-west-2.amazonaws.com/111122223333/billing", "us-west-2"),
    ("http://127.0.0.1:4566/123456789012/billing", None),  # a local endpoint's queue: the client's region
])
def test_the_region_comes_from_the_topic_arn_or_the_sqs_host(destination, region):
    assert region_of(destination) == region
