"""What a finalized Tally invoice becomes at a billing provider, and the keys that make sending it
idempotent. Pure: no provider SDK here (adapters/stripe_gateway.py speaks Stripe).

Amounts. A provider charges in a currency's smallest unit, in whole units. "USD (cents)" lines
carry fractional cents (two places), so each line is rounded *cumulatively*: line i gets
round(sum of lines 0..i) - round(sum of lines 0..i-1). Every item is within one cent of its line,
and the items add up to exactly the invoice's total rounded once (half-even), so the provider's
total is Tally's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from tally.billing.errors import TallyError
from tally.billing.pricing import USD_CENTS, Invoice

STRIPE = "stripe"
DIRECT = "direct_to_billing_provider"
BILLING_PROVIDER_ERROR = "invoice.billing_provider_error"  # Metronome's message name

# The credit types a provider can charge, by id: (currency code, smallest units per credit-type unit).
CURRENCIES = {USD_CENTS.id: ("usd", Decimal(1))}
MAX_DESCRIPTION = 500  # Stripe's limit on an invoice item's description


class DeliveryRefused(TallyError):
    """The invoice cannot be delivered as it is, and retrying will not change that: a permanent
    failure (published as invoice.billing_provider_error, the message parked)."""

    status = 400
    kind = "billing_provider_error"


class ProviderUnavailable(TallyError):
    """The provider could not answer (a timeout, a 5xx, a rate limit): retry the delivery, which
    resumes from what the provider already holds."""

    status = 503
    kind = "unavailable"


@dataclass(frozen=True, slots=True)
class ExternalLine:
    index: int  # the Tally line's index among the invoice's lines: part of the item's idempotency key
    amount: int  # smallest currency unit
    description: str
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class ExternalInvoiceDraft:
    tally_invoice_id: str
    currency: str
    lines: tuple[ExternalLine, ...]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def invoice_key(tally_invoice_id: str) -> str:
    """The idempotency key of the provider invoice: one per Tally invoice, ever."""
    return f"tally-invoice-{tally_invoice_id}"


def line_key(tally_invoice_id: str, index: int) -> str:
    return f"tally-invoice-{tally_invoice_id}-line-{index}"


def finalize_key(tally_invoice_id: str) -> str:
    return f"tally-invoice-{tally_invoice_id}-finalize"


def void_key(tally_invoice_id: str) -> str:
    return f"tally-invoice-{tally_invoice_id}-void"


def _day(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d")


def describe_line(name: str, start: datetime, end: datetime | None, groups: dict | None) -> str:
    """"<product> (<start> to <end>)", then the group values: names what was billed, for when."""
    when = _day(start) if end is None else f"{_day(start)} to {_day(end)}"
    text = f"{name} ({when})"
    if groups:
        text += " · " + ", ".join(f"{key}={'' if value is None else value}" for key, value in sorted(groups.items()))
    return text[:MAX_DESCRIPTION]


def external_invoice(tally_invoice_id: str, invoice: Invoice) -> ExternalInvoiceDraft:
    """The provider invoice of a finalized Tally invoice: one item per line counted in its total
    (lines in the invoice's credit type; postpaid drawdowns shown but not owed are left out)."""
    currency = CURRENCIES.get(invoice.credit_type.id)
    if currency is None:
        raise DeliveryRefused(
            f"invoice {tally_invoice_id} is in {invoice.credit_type.name}, which is not a currency a billing provider charges"
        )
    code, units = currency
    lines: list[ExternalLine] = []
    running, sent = Decimal(0), 0
    for index, line in enumerate(invoice.line_items):
        if not line.counts_in_total or line.credit_type.id != invoice.credit_type.id:
            continue
        running += line.total * units
        amount = int(running.to_integral_value(ROUND_HALF_EVEN)) - sent
        sent += amount
        groups = dict(line.pricing_group_values or {}) | dict(line.presentation_group_values or {})
        lines.append(
            ExternalLine(
                index=index,
                amount=amount,
                description=describe_line(line.name, line.starting_at, line.ending_before, groups),
                period_start=line.starting_at,
                period_end=line.ending_before or line.starting_at,
            )
        )
    return ExternalInvoiceDraft(tally_invoice_id, code, tuple(lines))
