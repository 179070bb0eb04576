"""A hierarchy parent's consolidated invoice, composed (billing/consolidation.py) and stored
(services/invoice_records.py documents). Figures by hand: the parent's 20, child A's 300 (a usage
line of 350 less a 50 credit) and child B's 400 make 720."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from tally.billing.consolidation import Constituent, consolidate, line_item_id
from tally.billing.pricing import USD_CENTS, Invoice, InvoiceType, LineItem, LineType, ProductType
from tally.services.invoice_records import StoredInvoice, record_document, record_from_document

UTC = timezone.utc
OCT, NOV = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


def _line(total: str, kind=LineType.USAGE) -> LineItem:
    return LineItem(kind, "API calls", "p", ProductType.USAGE, USD_CENTS, Decimal(1), None, Decimal(total), Decimal(total), OCT, NOV)


def _usage(contract: str, customer: str, *lines: LineItem, status="FINALIZED") -> Invoice:
    total = sum((line.total for line in lines), Decimal(0))
    return Invoice(contract, customer, USD_CENTS, OCT, NOV, lines, total, total, status)


PARENT = Constituent("inv-p", _usage("cp", "parent", _line("20")))
A = Constituent("inv-a", _usage("ca", "a", _line("350"), _line("-50", LineType.APPLIED_COMMIT_OR_CREDIT)))
B = Constituent("inv-b", _usage("cb", "b", _line("400"), status="DRAFT"))


def test_every_constituent_line_is_copied_with_its_origin_and_the_totals_add_up():
    invoice = consolidate("cp", "parent", USD_CENTS, OCT, NOV, [PARENT, A, B])
    assert (invoice.type, invoice.total, invoice.subtotal) == (InvoiceType.USAGE_CONSOLIDATED, Decimal(720), Decimal(720))
    assert [(line.origin.customer_id, line.origin.invoice_id, line.total) for line in invoice.line_items] == [
        ("parent", "inv-p", Decimal(20)), ("a", "inv-a", Decimal(350)), ("a", "inv-a", Decimal(-50)), ("b", "inv-b", Decimal(400))]
    assert invoice.line_items[2].origin.line_item_id == line_item_id("inv-a", 1) != line_item_id("inv-a", 0)
    assert invoice.constituent_invoices == (("cp", "parent", "inv-p"), ("ca", "a", "inv-a"), ("cb", "b", "inv-b"))
    assert invoice.payer == ("cp", "parent")
    assert invoice.status == "DRAFT"  # B is a draft
    assert consolidate("cp", "parent", USD_CENTS, OCT, NOV, [PARENT, A]).status == "FINALIZED"


def test_a_stored_consolidated_invoice_reads_back_equal():
    invoice = consolidate("cp", "parent", USD_CENTS, OCT, NOV, [PARENT, A])
    record = StoredInvoice("id", "id", "parent", "cp", OCT, NOV, invoice, (), NOV)
    again = record_from_document(record_document(record), status="FINALIZED").invoice
    assert again == invoice and again.line_items[1].origin == invoice.line_items[1].origin
    child = Invoice("ca", "a", USD_CENTS, OCT, NOV, (_line("5"),), Decimal(5), Decimal(5), "FINALIZED",
                    payer=("cp", "parent"), billable=False)
    stored = record_from_document(record_document(StoredInvoice("c", "c", "a", "ca", OCT, NOV, child, (), NOV)), status="FINALIZED")
    assert (stored.invoice.payer, stored.invoice.billable) == (("cp", "parent"), False)
