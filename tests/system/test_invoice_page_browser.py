"""The hosted invoice page in headless Chromium on the local stack: a tiered contract with a prepaid
commit and a credit, its URL printed by `tally local invoice-page`, the figures in the browser's DOM
equal to `sdk.v1.customers.invoices.retrieve`'s, and an expired and a forged link showing the error
page. Screenshots go to .build/screenshots/invoice-page-*.png."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import httpx
import pytest

from tests.browser import chromium  # noqa: F401 - the fixture
from tests.service.test_invoice_page import cents, figures_of
from tests.system.conftest import API_KEY
from tests.system.usage_events import DAY, HOUR, current_hour, rfc3339, unique, usage_event

pytestmark = pytest.mark.system


def invoice_page_url(local_stack, customer: str, invoice_id: str) -> str:
    """What `tally local invoice-page CUSTOMER_ID INVOICE_ID` prints (run in this process: the CLI
    only calls the stack's HTTP API)."""
    from typer.testing import CliRunner

    from infra.cli.local import local_app

    run = CliRunner().invoke(local_app, ["invoice-page", customer, invoice_id, "--endpoint", local_stack.base_url, "--api-key", API_KEY])
    assert run.exit_code == 0, run.output[-2000:]
    return run.stdout.strip()


def test_an_invoice_page_in_a_browser_shows_the_apis_figures_and_bad_links_show_the_error_page(sdk, settle, local_stack, chromium):
    from tally import wiring
    from tally.billing import page_tokens as pt

    # The stack generated its signing key in (emulated) Secrets Manager.
    key = boto3.client("secretsmanager", endpoint_url=local_stack.aws_endpoint).get_secret_value(
        SecretId=local_stack.deployment.outputs["PageSigningSecretArn"])["SecretString"]
    assert len(key) == 64 and key.isalnum()

    tag = unique("page")
    start = current_hour() - 2 * DAY
    metric = sdk.v1.billable_metrics.create(name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}).data.id
    calls = sdk.v1.contracts.products.create(name=f"{tag} API calls", type="USAGE", billable_metric_id=metric).data.id
    fixed = sdk.v1.contracts.products.create(name=f"{tag} prepaid", type="FIXED").data.id
    card = sdk.v1.contracts.rate_cards.create(name=f"{tag} card").data.id
    sdk.v1.contracts.rate_cards.rates.add(rate_card_id=card, product_id=calls, entitled=True, rate_type="TIERED",
                                          tiers=[{"price": 40, "size": 5}, {"price": 15}], starting_at=rfc3339(start - DAY))
    customer = sdk.v1.customers.create(name=f'<script>alert(1)</script> {tag} Müller & Søn 株式会社', ingest_aliases=[tag]).data.id
    window = {"starting_at": rfc3339(start), "ending_before": rfc3339(start + 60 * DAY)}
    sdk.v1.contracts.create(
        customer_id=customer, rate_card_id=card, starting_at=rfc3339(start),
        usage_statement_schedule={"frequency": "MONTHLY", "day": "CONTRACT_START"},
        commits=[{"product_id": fixed, "type": "PREPAID", "name": "Prepaid commit", "priority": 2,
                  "access_schedule": {"schedule_items": [window | {"amount": 100}]},
                  "invoice_schedule": {"schedule_items": [{"timestamp": rfc3339(start), "amount": 100}]}}],
        credits=[{"product_id": fixed, "name": "Welcome credit", "priority": 1, "access_schedule": {"schedule_items": [window | {"amount": 30}]}}],
    )
    # 12 calls: 5 × 40 + 7 × 15 = 305 cents; the credit pays 30, the commit 100: 175 due.
    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-{n}", tag, tag, start + HOUR) for n in range(12)])
    settle()
    (listed,) = [i for i in sdk.v1.customers.invoices.list(customer_id=customer).data if i.type == "USAGE"]
    invoice = sdk.v1.customers.invoices.retrieve(customer_id=customer, invoice_id=listed.id).data
    assert (invoice.subtotal, invoice.total) == (305, 175)

    url = invoice_page_url(local_stack, customer, invoice.id)
    assert url.startswith(f"{local_stack.base_url}/pages/invoices/")
    dom = chromium.dom_and_screenshot(url, "invoice-page-draft")
    shown = figures_of(dom).figures
    assert cents(shown["total"][0]) == Decimal(str(invoice.total)) and cents(shown["subtotal"][0]) == Decimal(str(invoice.subtotal))
    usage_lines = [line for line in invoice.line_items if line.type == "usage"]
    assert sorted(cents(t) for t in shown["line-total"]) == sorted(Decimal(str(line.total)) for line in usage_lines)
    assert sorted(cents(t) for t in shown["tier-total"]) == sorted(
        Decimal(str(tier.subtotal)) for line in usage_lines for sub in line.sub_line_items or () for tier in sub.tiers or ())
    applied = [line for line in invoice.line_items if line.type == "applied_commit_or_credit"]
    assert sorted(cents(t) for t in shown["applied-total"]) == sorted(Decimal(str(line.total)) for line in applied) == [-100, -30]
    assert shown["invoice-id"] == [invoice.id] and shown["status"][0] == invoice.status == "DRAFT"
    assert shown["customer-name"] == [f'<script>alert(1)</script> {tag} Müller & Søn 株式会社']  # text, not markup
    assert "<script" not in dom

    # The page's PDF link is signed too; an invoice page token never opens it (nor the reverse).
    (pdf_link,) = [attrs["href"] for tag_name, attrs in figures_of(dom).tags if attrs.get("data-figure") == "pdf-link"]
    assert "/pages/invoice-pdfs/" in pdf_link
    pdf = httpx.get(pdf_link, timeout=120)
    assert (pdf.status_code, pdf.headers["content-type"], pdf.content[:5]) == (200, "application/pdf", b"%PDF-")
    assert httpx.get(url.replace("/pages/invoices/", "/pages/invoice-pdfs/"), timeout=60).status_code == 403

    keys = wiring.page_links()._keys()
    expired = pt.mint(keys, pt.PageKind.INVOICE_PAGE, customer, pt.InvoiceScope(invoice.id),
                      datetime.now(timezone.utc) - timedelta(days=2), timedelta(days=1))
    forged = url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB")
    for name, bad in (("expired", f"{local_stack.base_url}/pages/invoices/{expired}"), ("forged", forged)):
        refused = chromium.dom_and_screenshot(bad, f"invoice-page-{name}", height=500)
        assert "This link is invalid or has expired" in refused
        assert tag not in refused and "$" not in refused and invoice.id not in refused
