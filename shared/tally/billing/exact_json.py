"""JSON that keeps numbers exact: numbers parse to int/Decimal and Decimals dump as digits.

The standard library can only emit a float for a non-int number, which would round amounts.
Decimals are swapped for marked strings, dumped, and the marks are then unquoted.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

_MARK = "\x00"
_MARKED = re.compile(r'"\\u0000([-0-9.Ee+]+)\\u0000"')


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON; non-integers become Decimal, NaN and Infinity are rejected."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _mark(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a non-finite number cannot be written as JSON")
        return f"{_MARK}{value:f}{_MARK}" if abs(value.adjusted()) < 30 else f"{_MARK}{value}{_MARK}"
    if isinstance(value, dict):
        return {k: _mark(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark(v) for v in value]
    return value


def _has_decimal(value: Any) -> bool:
    if isinstance(value, Decimal):
        return True
    if isinstance(value, dict):
        return any(_has_decimal(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_decimal(v) for v in value)
    return False


def dumps(value: Any, *, sort_keys: bool = False, default: Any = None) -> str:
    """Compact JSON with Decimals written as exact JSON numbers."""
    if not _has_decimal(value):
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=default)
    text = json.dumps(_mark(value), separators=(",", ":"), sort_keys=sort_keys, default=default)
    return _MARKED.sub(r"\1", text)
