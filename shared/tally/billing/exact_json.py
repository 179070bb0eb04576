"""JSON that keeps numbers exact: numbers parse to int/Decimal and Decimals dump as digits.

The standard library can only emit a float for a non-int number, which would round amounts.
Decimals are swapped for marked strings, dumped, and the marks are then unquoted.
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any

# A per-process nonce in the marker: no string a client sends can pass for a marked number.
_NONCE = secrets.token_hex(8)
_MARK_OPEN, _MARK_CLOSE = "\x00" + _NONCE, "\x00"
_MARKED = re.compile(r'"\\u0000' + _NONCE + r'([-0-9.Ee+]+)\\u0000"')


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON; non-integers become Decimal, NaN and Infinity are rejected."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _decimal_marker(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a non-finite number cannot be written as JSON")
        digits = f"{value:f}" if abs(value.adjusted()) < 30 else str(value)
        return _MARK_OPEN + digits + _MARK_CLOSE
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON with Decimals written as exact JSON numbers.

    The C encoder calls `default` only for Decimals, so values without one pay nothing extra."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=_decimal_marker)
    return _MARKED.sub(r"\1", text) if _NONCE in text else text
