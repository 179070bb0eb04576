"""The invoice as a person reads it (tally.billing.invoice_document): one money formatter, the
status mark, sections per product with tiers, commits and credits, custom pricing units."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tally.billing.invoice_document import (
    ADDRESS_KEYS,
    AppliedRow,
    ConversionRow,
    TierRow,
    address_lines,
    format_money,
    format_period,
    format_quantity,
    invoice_document,
)
from tests.invoice_samples import as_answered, custom_pricing_unit, many_lines, regenerated, tiered_with_commits_and_credits

USD = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}
CPU = {"id": "c-cpu", "name": "CPU credits"}
UTC = timezone.utc
D = Decimal


@pytest.mark.parametrize(
    "amount, credit_type, shown",
    [
        pytest.param(D(123456), USD, "$1,234.56", id="USD cents are dollars with thousands separators"),
        pytest.param(D(50), USD, "$0.50", id="fifty cents keeps two decimals"),
        pytest.param(D("0.25"), USD, "$0.0025", id="a quarter cent shows its sub-cent digits"),
        pytest.param(D("1234.5678"), USD, "$12.345678", id="sub-cent digits are never rounded away"),
        pytest.param(D("1234.50"), USD, "$12.345", id="trailing zeros past the cents are dropped"),
        pytest.param(D("-2500"), USD, "-$25.00", id="a drawdown is negative"),
        pytest.param(D("-0.00"), USD, "$0.00", id="negative zero is zero"),
        pytest.param(0, USD, "$0.00", id="an integer zero"),
        pytest.param(D("1E+5"), USD, "$1,000.00", id="exponent notation is written out"),
        pytest.param(D("12345678901234567890123456789012345678"), USD,
                     "$123,456,789,012,345,678,901,234,567,890,123,456.78", id="38 digits stay exact"),
        pytest.param(D("1234.5"), CPU, "1,234.5 CPU credits", id="a custom unit is the number and the unit's name"),
        pytest.param(D("-3.000"), CPU, "-3 CPU credits", id="a custom unit drops trailing zeros"),
        pytest.param(D(10), {"id": "x", "name": "USD (cents)"}, "$0.10", id="USD cents recognised by name too"),
    ],
)
def test_money_is_written_exactly_by_one_formatter(amount, credit_type, shown):
    assert format_money(amount, credit_type) == shown


def test_a_float_amount_is_refused_rather_than_shown_as_if_exact():
    with pytest.raises(TypeError):
        format_money(0.1, USD)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "quantity, shown",
    [(D("1500.000"), "1,500"), (D("0.125"), "0.125"), (1000000, "1,000,000"), (D("-2"), "-2")],
    ids=["trailing zeros dropped", "fractions kept", "integers grouped", "negative"],
)
def test_quantities_are_exact_and_grouped(quantity, shown):
    assert format_quantity(quantity) == shown


@pytest.mark.parametrize(
    "start, end, shown",
    [
        pytest.param(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "1 Nov 2026 – 30 Nov 2026",
                     id="a monthly period shows its last day, not the exclusive end"),
        pytest.param(datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC), "5 Nov 2026", id="one day"),
        pytest.param(datetime(2026, 11, 5, 13, tzinfo=UTC), datetime(2026, 11, 6, 1, tzinfo=UTC),
                     "5 Nov 2026 13:00 UTC – 6 Nov 2026 01:00 UTC", id="hours when not midnight-aligned"),
        pytest.param(datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC), "5 Nov 2026",
                     id="a scheduled invoice's instant shows once"),
    ],
)
def test_periods_read_as_a_person_reads_them(start, end, shown):
    assert format_period(start, end) == shown


@pytest.mark.parametrize(
    "status, regenerated_from, mark, note",
    [
        pytest.param("DRAFT", None, "DRAFT", "Draft: its figures change", id="a draft is marked DRAFT"),
        pytest.param("FINALIZED", None, "FINALIZED", None, id="a finalized invoice has no note"),
        pytest.param("VOID", None, "VOID", "Void: this invoice is cancelled", id="a voided invoice is marked VOID"),
        pytest.param("FINALIZED", "inv-old", "FINALIZED", "Replaces voided invoice inv-old.", id="a regenerated one names what it replaces"),
    ],
)
def test_the_status_mark(status, regenerated_from, mark, note):
    answer = as_answered(tiered_with_commits_and_credits(status=status), regenerated_from=regenerated_from)
    header = invoice_document(answer, customer_name="Acme").header
    assert header.status == mark
    if note is None:
        assert header.status_notes == ()
    else:
        assert any(n.startswith(note) for n in header.status_notes)


def test_a_tiered_contract_groups_lines_by_product_with_tiers_commits_and_credits():
    answer = as_answered(tiered_with_commits_and_credits())
    doc = invoice_document(answer, issuer_name="Tally Billing Ltd", customer_name="Acme GmbH", address_lines=("1 Main St", "Berlin"))
    assert (doc.header.issuer_name, doc.header.customer_name, doc.header.address_lines) == ("Tally Billing Ltd", "Acme GmbH", ("1 Main St", "Berlin"))
    assert (doc.header.invoice_id, doc.header.period, doc.header.issue_date) == ("inv-sample-1", "1 Nov 2026 – 30 Nov 2026", "1 Dec 2026")
    assert [s.title for s in doc.sections] == ["API calls", "Storage GB-hours", "Seats"]
    api = doc.sections[0]
    assert [(r.description, r.quantity, r.unit_price, r.total) for r in api.rows] == [
        ("region: eu-west", "12,345", "", "$30.4313"),
        ("region: us-east", "400", "$0.005", "$2.00"),
    ]
    assert api.rows[0].tiers == (
        TierRow("Tier 1 (from 0)", "1,000", "$0.005", "$5.00"),
        TierRow("Tier 2 (from 1,000)", "9,000", "$0.0025", "$22.50"),
        TierRow("Tier 3 (from 10,000)", "2,345", "$0.00125", "$2.93125"),
    )
    assert api.subtotal == "$32.4313"  # the exact sum of its rows
    assert doc.sections[2].rows[0].description == "Subscription"
    assert doc.applied == (AppliedRow("Annual prepaid commit", "Prepaid commit", "-$250.00"), AppliedRow("Onboarding credit", "Credit", "-$12.345"))
    assert (doc.subtotal, doc.total) == ("$332.4493", "$70.1043")
    assert doc.conversions == () and doc.line_count == 6


def test_custom_pricing_unit_lines_stay_in_their_unit_and_the_conversion_line_converts_them():
    doc = invoice_document(as_answered(custom_pricing_unit()), customer_name="Acme")
    gpu = doc.sections[0]
    assert (gpu.title, gpu.credit_type, gpu.is_custom_unit, gpu.subtotal) == ("GPU hours", "CPU credits", True, "1,755 CPU credits")
    assert [(r.description, r.unit_price, r.total) for r in gpu.rows] == [
        ("gpu: a100", "40 CPU credits", "1,500 CPU credits"), ("gpu: t4", "25.5 CPU credits", "255 CPU credits"),
    ]
    assert doc.sections[2].is_custom_unit is False
    assert doc.conversions == (ConversionRow("CPU credits", "1,878.4 CPU credits", "$0.125", "$234.80"),)
    assert doc.total == "$333.80"


def test_address_lines_come_from_documented_custom_fields_in_order_blanks_skipped():
    fields = {"address_line_2": "Berlin", "address_line_1": " 1 Main St ", "address_line_3": " ", "other": "x"}
    assert ADDRESS_KEYS[0] == "address_line_1"
    assert address_lines(fields) == ("1 Main St", "Berlin")
    assert address_lines(None) == ()


def test_an_unbillable_child_invoice_says_who_is_billed():
    answer = as_answered(replace(tiered_with_commits_and_credits(), payer=("c-parent", "cust-parent"), billable=False))
    notes = invoice_document(answer, customer_name="Child").header.status_notes
    assert "Not billed on its own: billed to customer cust-parent." in notes


def test_a_consolidated_invoice_names_its_constituents_customers():
    from tally.billing.pricing import InvoiceType
    from tally.billing.pricing.lines import LineOrigin

    child = tiered_with_commits_and_credits()
    lines = [replace(line, origin=LineOrigin("contract-c", "cust-child", "inv-child", f"line-{n}")) for n, line in enumerate(child.line_items[:1])]
    consolidated = replace(child, line_items=lines, type=InvoiceType.USAGE_CONSOLIDATED,
                           constituent_invoices=(("contract-c", "cust-child", "inv-child"),))
    doc = invoice_document(as_answered(consolidated), customer_name="Parent")
    assert doc.header.title == "Consolidated invoice"
    assert "Consolidates 1 invoice of other customers." in doc.header.status_notes
    assert doc.sections[0].rows[0].description == "region: eu-west · customer cust-child"


def test_a_regenerated_invoice_is_finalized_and_names_the_voided_one():
    header = invoice_document(regenerated(custom_pricing_unit()), customer_name="Acme").header
    assert (header.status, header.status_notes) == ("FINALIZED", ("Replaces voided invoice inv-sample-1.",))


def test_the_document_is_frozen_and_a_5000_line_invoice_keeps_every_line():
    doc = invoice_document(as_answered(many_lines()), customer_name="Acme")
    assert doc.line_count == 5000 and len(doc.sections) == 50
    with pytest.raises(FrozenInstanceError):
        doc.header.status = "VOID"  # type: ignore[misc]
