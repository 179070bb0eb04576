"""An invoice's PDF through Metronome's official SDK (strict mode) on the local stack: every figure
of `invoices.retrieve` is on `invoices.retrieve_pdf`'s text, read back with pdftotext."""

from __future__ import annotations

import shutil

import pytest

from tally.billing import exact_json
from tests.invoice_samples import expected_rows, pdf_text, unmatched_rows
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = [pytest.mark.system, pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is not installed")]


def _segment(amount, start, end):
    return {"schedule_items": [{"amount": amount, "starting_at": rfc3339(start), "ending_before": rfc3339(end)}]}


def test_the_pdf_of_a_tiered_contract_with_a_commit_and_a_credit_shows_every_figure_of_its_json(sdk, settle):
    tag = unique("pdf")
    start = current_hour() - 3 * HOUR
    metric = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}, group_keys=[["region"]],
    ).data.id
    calls = sdk.v1.contracts.products.create(
        name=f"{tag} API calls", type="USAGE", billable_metric_id=metric, presentation_group_key=["region"],
    ).data.id
    grants = sdk.v1.contracts.products.create(name=f"{tag} Commitment", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    # Graduated: the first 4 calls at 4 cents, the rest at 1.5 cents.
    sdk.v1.contracts.rate_cards.rates.add(
        rate_card_id=card, product_id=calls, entitled=True, rate_type="TIERED",
        tiers=[{"price": 4, "size": 4}, {"price": 1.5}], starting_at=rfc3339(start - DAY),
    )
    customer = sdk.v1.customers.create(name="株式会社テスト 김민준", ingest_aliases=[tag]).data.id
    sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        commits=[{"product_id": grants, "type": "PREPAID", "priority": 2, "name": "Prepaid commit",
                  "access_schedule": _segment(20, start, start + 31 * DAY),
                  "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": 16}]}}],
        credits=[{"product_id": grants, "priority": 1, "name": "Welcome credit", "access_schedule": _segment(10, start, start + 31 * DAY)}],
    )
    events = [usage_event(f"{tag}-eu{n}", tag, tag, start + HOUR, region="eu") for n in range(7)]
    events += [usage_event(f"{tag}-us{n}", tag, tag, start + HOUR, region="us") for n in range(3)]
    sdk.v1.usage.ingest(usage=events)
    settle()

    invoice = next(i for i in sdk.v1.customers.invoices.list(customer_id=customer).data if i.type == "USAGE")
    raw = sdk.v1.customers.invoices.with_raw_response.retrieve(customer_id=customer, invoice_id=invoice.id)
    raw.parse()  # strict: the answer parses as the SDK's own type
    answer = exact_json.loads(raw.text())["data"]  # the figures exactly as sent
    # eu: 4 × 4 + 3 × 1.5 = 20.5; us: 3 × 4 = 12; the credit pays 10, the commit 20 of the 32.5.
    assert sorted((line["type"], line["name"], line["total"]) for line in answer["line_items"]) == [
        ("applied_commit_or_credit", "Prepaid commit", -20), ("applied_commit_or_credit", "Welcome credit", -10),
        ("usage", f"{tag} API calls", 12), ("usage", f"{tag} API calls", 20.5)]
    assert (answer["subtotal"], answer["total"]) == (32.5, 2.5)

    pdf = sdk.v1.customers.invoices.retrieve_pdf(customer_id=customer, invoice_id=invoice.id)
    assert pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.read())
    assert unmatched_rows(text, answer) == [] and len(expected_rows(answer)) == 9
    for shown in ("$0.205", "Tier 2 (from 4)", "region: eu", "Welcome credit", "-$0.10", "Total (draft)", "$0.025",
                  "株式会社テスト 김민준", invoice.id, "DRAFT"):
        assert shown in text
