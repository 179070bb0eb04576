"""JSON that keeps numbers exact: numbers parse to int/Decimal and Decimals dump as digits.

The standard library can only emit a float for a non-int number, which would round amounts.
Decimals are swapped for marked strings, dumped, and the marks are then unquoted.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any

# A per-process nonce in both marks: no string a client sends can pass for a marked number, so
# the marks (with their quotes) are simply deleted from the text.
_NONCE = secrets.token_hex(8)
_MARK_OPEN, _MARK_CLOSE = f"#{_NONCE}<", f">{_NONCE}#"
_QUOTED_OPEN, _QUOTED_CLOSE = '"' + _MARK_OPEN, _MARK_CLOSE + '"'


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON; non-integers become Decimal, NaN and Infinity are rejected."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _decimal_marker(value: Any) -> str:
    if isinstance(value, Decimal):
        digits = str(value)  # plain digits unless str() chose an exponent: then fixed point, if short
        if "E" in digits or not value.is_finite():
            if not value.is_finite():
                raise ValueError("a non-finite number cannot be written as JSON")
            if abs(value.adjusted()) < 30:
                digits = f"{value:f}"
        return _MARK_OPEN + digits + _MARK_CLOSE
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON with Decimals written as exact JSON numbers.

    The C encoder calls `default` only for Decimals, so values without one pay nothing extra."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=_decimal_marker)
    if _NONCE not in text:
        return text
    return text.replace(_QUOTED_OPEN, "").replace(_QUOTED_CLOSE, "")
