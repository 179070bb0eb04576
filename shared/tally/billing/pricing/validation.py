"""Checks shared by the pricing inputs. Each raises InvalidInput naming the field and the rule."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tally.billing.errors import InvalidInput
from tally.billing.time import UTC, is_hour_aligned


def as_decimal(value: Any, field: str) -> Decimal:
    """An exact finite number. Floats are refused: they cannot carry an exact price."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InvalidInput(field, "must be an exact decimal number")
    number = Decimal(value)
    if not number.is_finite():
        raise InvalidInput(field, "must be a finite number")
    return number


def non_negative(value: Any, field: str) -> Decimal:
    number = as_decimal(value, field)
    if number < 0:
        raise InvalidInput(field, "must not be negative")
    return number


def aware(instant: Any, field: str) -> datetime:
    if not isinstance(instant, datetime) or instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(field, "must be a timestamp with a timezone")
    return instant


def hour_aligned(instant: Any, field: str) -> datetime:
    """Rates, overrides and periods change on UTC hour boundaries only: counters split at the hour."""
    if not is_hour_aligned(aware(instant, field).astimezone(UTC)):
        raise InvalidInput(field, "must be on an hour boundary (minutes, seconds and fractions zero)")
    return instant


def window(starting_at: Any, ending_before: Any, field_prefix: str) -> None:
    """An hour-aligned [starting_at, ending_before) with ending_before optional and later."""
    hour_aligned(starting_at, f"{field_prefix}starting_at")
    if ending_before is not None:
        hour_aligned(ending_before, f"{field_prefix}ending_before")
        if ending_before <= starting_at:
            raise InvalidInput(f"{field_prefix}ending_before", "must be after starting_at")
