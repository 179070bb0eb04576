"""Credit types and the one place where an amount is rounded.

Amounts are Decimals in the credit type's own units: for "USD (cents)" a total of 1234.5 means
$12.345. A line is computed exactly (`precise_total`) and rounded once, here, to the credit type's
precision with its explicit rounding mode. Nothing upstream of a line total is ever rounded, so
the rounding error of an invoice is at most half a unit of precision per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache

# Intermediate arithmetic (tiers, proration, conversion) runs at 38 significant digits, DynamoDB's
# limit, instead of Python's default 28, so products of large quantities and small prices stay exact.
PRICING_CONTEXT = Context(prec=38)


@dataclass(frozen=True, slots=True)
class CreditType:
    id: str
    name: str
    # Decimal places a line total keeps, in this credit type's units. For "USD (cents)" two places
    # of a cent: Metronome prices in cents with fractional cents allowed (a price of 0.25 cents per
    # call is common), so rounding to whole cents per line would lose real money on small lines.
    precision: int = 2
    rounding: str = ROUND_HALF_UP

    def round(self, amount: Decimal) -> Decimal:
        """Round a precise amount once, with this credit type's precision and mode."""
        quantize, quantum = _rounder(self.precision, self.rounding)
        return quantize(amount, quantum)

    def rounder(self) -> tuple:
        """(quantize, quantum) such that quantize(amount, quantum) == self.round(amount): for the
        loops that round thousands of line totals in one credit type."""
        return _rounder(self.precision, self.rounding)


@lru_cache(maxsize=None)
def _rounder(places: int, rounding: str) -> tuple:
    """(quantize, quantum): PRICING_CONTEXT's quantize with the rounding mode set in its context,
    and one unit of the decimal place (2: 0.01). The same result as Decimal.quantize given that
    mode and context, for a third of the CPU: every line total is rounded here."""
    return Context(prec=PRICING_CONTEXT.prec, rounding=rounding).quantize, Decimal(1).scaleb(-places)


# Metronome's id for its default fiat credit type.
USD_CENTS = CreditType(id="2714e483-4ff1-48e4-9e25-ac732e8f24f2", name="USD (cents)")
