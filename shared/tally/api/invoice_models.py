"""The JSON of invoices on the Metronome-compatible API (metronome-sdk types/v1/customers/invoice.py).

A draft invoice of a big contract has thousands of lines, and building a dict per line for
json.dumps to walk again cost more CPU than rating them. So line items are written straight to
JSON text (exact_json.RawJSON): what lines share (their product, credit type, period and group
values) is encoded once per invoice, and each line adds only its numbers. The invoice around
them stays a dict. tests/unit/test_invoice_models.py checks the text against the plain dict
form, field by field, for every kind of line.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Mapping, Sequence

from tally.api.catalog_models import rate_json
from tally.api.contract_models import credit_type_json
from tally.billing.exact_json import RawJSON, number_text
from tally.billing.exact_json import dumps as exact_dumps
from tally.billing.pricing import Invoice, LineItem, LineType, Product, Rate, TierCharge
from tally.billing.pricing.lines import LineItems, SubLineItem, UsageRow, UsageRun, UsageSpan
from tally.billing.time import format_rfc3339
from tally.services.invoices import DraftInvoice


def invoice_json(draft: DraftInvoice, products: dict[str, Product], skip_zero_quantity: bool = False) -> dict:
    """The invoice as the API returns it; `skip_zero_quantity` leaves out lines of quantity 0
    (Metronome's skip_zero_qty_line_items)."""
    invoice: Invoice = draft.invoice
    lines = invoice.line_items
    if skip_zero_quantity:
        lines = LineItems([line for line in lines if line.quantity != 0])
    body = {
        "id": draft.id,
        "type": invoice.type.value,
        "status": invoice.status,
        "customer_id": invoice.customer_id,
        "contract_id": invoice.contract_id,
        "credit_type": credit_type_json(invoice.credit_type),
        "start_timestamp": format_rfc3339(invoice.starting_at),
        "end_timestamp": format_rfc3339(invoice.ending_before),
        # a usage invoice is issued when its period ends, a scheduled one at its own instant
        "issued_at": format_rfc3339(invoice.ending_before),
        "line_items": RawJSON(line_items_chunks(lines, products)),
        "subtotal": invoice.subtotal,
        "total": invoice.total,
        "invoice_adjustments": [],
        "custom_fields": dict(draft.custom_fields),
        "billable_status": "billable" if invoice.billable else "unbillable",
    }
    if invoice.payer is not None:  # customer hierarchies: who pays it (billing/consolidation.py)
        body["payer"] = {"contract_id": invoice.payer[0], "customer_id": invoice.payer[1]}
    if invoice.constituent_invoices:
        body["constituent_invoices"] = [
            {"contract_id": contract_id, "customer_id": customer_id, "invoice_id": invoice_id}
            for contract_id, customer_id, invoice_id in invoice.constituent_invoices
        ]
    if draft.regenerated_from_invoice_id is not None:
        body["regenerated_from_invoice_id"] = draft.regenerated_from_invoice_id
    return body


def line_items_text(lines: Sequence[LineItem], products: Mapping[str, Product]) -> str:
    """The JSON array of the lines' items. Usage runs are written from their rows."""
    return "".join(line_items_chunks(lines, products))


def line_items_chunks(lines: Sequence[LineItem], products: Mapping[str, Product]) -> list[str]:
    """line_items_text in pieces: brackets, items and the commas between them. The invoice's
    JSON joins them once with the rest of its text; joined here, megabytes would be copied twice."""
    writer = _LineWriter(products)
    if not isinstance(lines, LineItems):
        texts = [writer.line(line) for line in lines]
    else:
        texts = []
        for part in lines.parts:
            if isinstance(part, UsageRun):
                texts += [writer.row(row) for row in part.rows]
            else:
                texts.append(writer.line(part))
    if not texts:
        return ["[]"]
    chunks = [","] * (2 * len(texts) + 1)
    chunks[1::2] = texts
    chunks[0], chunks[-1] = "[", "]"
    return chunks


class _LineWriter:
    """Writes the lines of one invoice, encoding each part they share once. Caches are keyed by
    object identity where lines share objects (credit types, enums, rates, spans, group value
    mappings, tier bounds and prices): the lines keep them alive while the invoice is written, and
    hashing them field by field is what the cache saves."""

    def __init__(self, products: Mapping[str, Product]) -> None:
        self._products = products
        self._heads: dict[tuple, str] = {}
        self._group_values: dict[tuple, str] = {}
        self._values_by_id: dict[int, str] = {}
        self._tier_parts: dict[tuple[int, int], tuple[str, str]] = {}
        self._strings: dict[str, str] = {}
        self._rates: dict[int, str] = {}
        self._spans: dict[int, tuple[str, str, str]] = {}

    def row(self, row: UsageRow) -> str:
        """What `line` writes for the row's LineItem, with what the row shares with its span
        written once per span."""
        span = self._spans.get(id(row.span))
        if span is None:
            span = self._spans[id(row.span)] = self._span(row.span)
        head, name, rare = span
        quantity = number_text(row.quantity)
        unit_price = "" if row.unit_price is None else ',"unit_price":' + number_text(row.unit_price)
        pricing = "" if row.pricing_group_values is None else ',"pricing_group_values":' + self._values(row.pricing_group_values)
        presentation = (
            ""
            if row.presentation_group_values is None
            else ',"presentation_group_values":' + self._values(row.presentation_group_values)
        )
        if row.tiers:
            subs = (
                f'{{"name":{name},"quantity":{quantity},"subtotal":{number_text(row.precise_total)},'
                f'"custom_fields":{{}},"tiers":[{self._tiers(row.tiers)}]}}'
            )
        else:
            subs = ""
        return (
            f'{head},"quantity":{quantity},"total":{number_text(row.total)}{unit_price}'
            f'{pricing}{presentation},"sub_line_items":[{subs}]{rare}}}'
        )

    def _span(self, span: UsageSpan) -> tuple[str, str, str]:
        """(head, name as JSON, rare fields) of the lines of a span: the first row's LineItem's."""
        line = UsageRow(span, None, None, Decimal(1), None, Decimal(0), Decimal(0), (), None).line_item()
        return self._head(line), self._string(span.name), self._rare(line)

    def line(self, line: LineItem) -> str:
        head = self._head(line)
        unit_price = "" if line.unit_price is None else ',"unit_price":' + number_text(line.unit_price)
        pricing = "" if line.pricing_group_values is None else ',"pricing_group_values":' + self._values(line.pricing_group_values)
        presentation = (
            ""
            if line.presentation_group_values is None
            else ',"presentation_group_values":' + self._values(line.presentation_group_values)
        )
        subs = ",".join([self._sub_line(sub) for sub in line.sub_line_items]) if line.sub_line_items else ""
        return (
            f'{head},"quantity":{number_text(line.quantity)},"total":{number_text(line.total)}{unit_price}'
            f'{pricing}{presentation},"sub_line_items":[{subs}]{self._rare(line)}}}'
        )

    def _head(self, line: LineItem) -> str:
        """Everything a line shares with the other lines of its product and span, as the text of
        an unclosed object."""
        key = (
            id(line.type), line.name, line.product_id, id(line.product_type), id(line.credit_type),
            line.starting_at, line.ending_before, line.is_prorated,
        )
        head = self._heads.get(key)
        if head is None:
            body: dict[str, Any] = {"type": line.type.value, "name": line.name}
            if line.product_id:
                body["product_id"] = line.product_id
                body["product_type"] = line.product_type.value
            product = self._products.get(line.product_id)
            body["product_tags"] = list(product.at(line.starting_at).tags) if product else []
            body["credit_type"] = credit_type_json(line.credit_type)
            body["starting_at"] = format_rfc3339(line.starting_at)
            if line.ending_before is not None:
                body["ending_before"] = format_rfc3339(line.ending_before)
            body["is_prorated"] = line.is_prorated
            body["custom_fields"] = {}
            head = self._heads[key] = json.dumps(body, separators=(",", ":"))[:-1]
        return head

    def _values(self, values: Mapping[str, str | None]) -> str:
        # By identity first: rating shares one mapping per group values across an invoice's lines.
        text = self._values_by_id.get(id(values))
        if text is None:
            key = tuple(values.items())
            text = self._group_values.get(key)
            if text is None:
                text = self._group_values[key] = json.dumps(dict(values), separators=(",", ":"))
            self._values_by_id[id(values)] = text
        return text

    def _string(self, value: str) -> str:
        text = self._strings.get(value)
        if text is None:
            text = self._strings[value] = json.dumps(value)
        return text

    def _sub_line(self, sub: SubLineItem) -> str:
        return (
            f'{{"name":{self._string(sub.name)},"quantity":{number_text(sub.quantity)},'
            f'"subtotal":{number_text(sub.subtotal)},"custom_fields":{{}},"tiers":[{self._tiers(sub.tiers)}]}}'
        )

    def _tiers(self, tiers: tuple[TierCharge, ...]) -> str:
        texts = []
        for tier in tiers:
            # A tier's start and price are its band's, shared by every line priced on that band.
            key = (id(tier.starting_at), id(tier.price))
            parts = self._tier_parts.get(key)
            if parts is None:
                parts = self._tier_parts[key] = (
                    f'{{"starting_at":{number_text(tier.starting_at)},"quantity":',
                    f',"price":{number_text(tier.price)},"subtotal":',
                )
            texts.append(f"{parts[0]}{number_text(tier.quantity)}{parts[1]}{number_text(tier.subtotal)}}}")
        return ",".join(texts)

    def _rate(self, rate: Rate) -> str:
        text = self._rates.get(id(rate))
        if text is None:
            text = self._rates[id(rate)] = exact_dumps(rate_json(rate))
        return text

    def _rare(self, line: LineItem) -> str:
        """The fields few lines have (overridden, subscription, scheduled and commit lines), each
        with its leading comma; '' for a plain usage line."""
        if (
            line.list_price is None
            and line.subscription_id is None
            and line.scheduled_charge_id is None
            and line.commit_id is None
            and line.discount_id is None
            and line.professional_service_id is None
            and line.type is not LineType.APPLIED_COMMIT_OR_CREDIT
            and line.type is not LineType.POSTPAID_TRUEUP
            and line.origin is None
        ):
            return ""
        text = ""
        if line.list_price is not None:
            text += ',"list_price":' + self._rate(line.list_price)
        extra: dict[str, Any] = {}
        if line.subscription_id is not None:
            extra["subscription_id"] = line.subscription_id
        if line.scheduled_charge_id is not None:
            extra["scheduled_charge_id"] = line.scheduled_charge_id
        if line.discount_id is not None:
            extra["discount_id"] = line.discount_id
        if line.professional_service_id is not None:
            extra["professional_service_id"] = line.professional_service_id
            if line.metadata is not None:
                extra["metadata"] = line.metadata
        if line.commit_id is not None:
            extra["commit_id"] = line.commit_id
            # Metronome: PrepaidCommit for prepaid commits and credits, PostpaidCommit for postpaid ones
            extra["commit_type"] = "PostpaidCommit" if line.commit_type == "POSTPAID" else "PrepaidCommit"
            if line.commit_segment_id is not None:
                extra["commit_segment_id"] = line.commit_segment_id
        if line.type is LineType.APPLIED_COMMIT_OR_CREDIT:
            extra["applied_commit_or_credit"] = {"id": line.commit_id, "type": line.commit_type}
        if line.type is LineType.POSTPAID_TRUEUP:
            extra["postpaid_commit"] = {"id": line.commit_id}
        if line.origin is not None:  # a USAGE_CONSOLIDATED invoice's line
            o = line.origin
            extra["origin"] = {"contract_id": o.contract_id, "customer_id": o.customer_id,
                               "invoice_id": o.invoice_id, "line_item_id": o.line_item_id}
        if extra:
            text += "," + json.dumps(extra, separators=(",", ":"))[1:-1]
        return text
