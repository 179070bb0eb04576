"""JSON that keeps numbers exact: numbers parse to int/Decimal and Decimals dump as digits.

The standard library can only emit a float for a non-int number, which would round amounts.
Decimals are swapped for marked strings, dumped, and the marks are then unquoted. Text already
encoded (`RawJSON`, for the thousands of lines of a big invoice) is spliced in the same way.
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any

# A per-process nonce in every mark: no string a client sends can pass for a marked value, so
# the marks (with their quotes) are simply deleted from the text.
_NONCE = secrets.token_hex(8)
_MARK_OPEN, _MARK_CLOSE = f"#{_NONCE}<", f">{_NONCE}#"
_QUOTED_OPEN, _QUOTED_CLOSE = '"' + _MARK_OPEN, _MARK_CLOSE + '"'
_RAW_OPEN, _RAW_CLOSE = f"#{_NONCE}[", f"]{_NONCE}#"  # not the numbers' marks: those are deleted first
_QUOTED_RAW = re.compile('"' + re.escape(_RAW_OPEN) + "([0-9]+)" + re.escape(_RAW_CLOSE) + '"')


class RawJSON:
    """A value already encoded as JSON text (numbers exact), written by `dumps` as it is: given
    whole, or as the pieces it is the concatenation of (then `dumps` copies megabytes of lines
    once, into its own result). The text is trusted: whoever builds one answers for it being one
    valid JSON value."""

    __slots__ = ("chunks",)

    def __init__(self, text: str | list[str]) -> None:
        self.chunks: list[str] = [text] if isinstance(text, str) else text

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def __repr__(self) -> str:
        return f"RawJSON({self.text!r})"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON; non-integers become Decimal, NaN and Infinity are rejected."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def number_text(value: Decimal | int) -> str:
    """A Decimal (or int) as a JSON number with the same digits: plain digits, unless str() chose
    an exponent; then fixed point, if that is short."""
    digits = str(value)
    if "E" in digits or "N" in digits or "n" in digits:  # 'NaN', 'sNaN', 'Infinity'
        if not value.is_finite():  # type: ignore[union-attr]
            raise ValueError("a non-finite number cannot be written as JSON")
        if abs(value.adjusted()) < 30:  # type: ignore[union-attr]
            digits = f"{value:f}"
    return digits


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON with Decimals written as exact JSON numbers and RawJSON spliced in.

    The C encoder calls `default` only for Decimals and RawJSON, so other values pay nothing extra."""
    raws: list[str] = []

    def marker(item: Any) -> str:
        if isinstance(item, Decimal):
            return _MARK_OPEN + number_text(item) + _MARK_CLOSE
        if isinstance(item, RawJSON):
            raws.append(item.chunks)
            return f"{_RAW_OPEN}{len(raws) - 1}{_RAW_CLOSE}"
        raise TypeError(f"{type(item).__name__} is not JSON serializable")

    text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=marker)
    if _NONCE not in text:
        return text
    text = text.replace(_QUOTED_OPEN, "").replace(_QUOTED_CLOSE, "")
    if not raws:
        return text
    # After the numbers: the raw texts are long, and hold no marks to replace. Joined once, with
    # the text around them.
    pieces: list[str] = []
    done = 0
    for match in _QUOTED_RAW.finditer(text):
        pieces.append(text[done : match.start()])
        pieces += raws[int(match.group(1))]
        done = match.end()
    pieces.append(text[done:])
    return "".join(pieces)
