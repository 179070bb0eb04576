"""Bounds Tally enforces on input, each derived from what the store (DynamoDB) can hold.

A value that validation lets through but a later stage cannot store becomes a poison pill for
every customer (DESIGN.md, hard part 8), so the edge checks against these before anything is written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# DynamoDB numbers: 38 significant digits, magnitude between 1E-130 and 1E+126.
MAX_SIGNIFICANT_DIGITS = 38
MAX_ADJUSTED_EXPONENT = 125
MIN_ADJUSTED_EXPONENT = -130
# JSON request bodies: deeper nesting than this is refused (Python's parser would otherwise recurse
# until it fails with a RecursionError, a 500).
MAX_NESTING_DEPTH = 32
# Ids named in one request (`customer_ids` of /v1/usage): each costs reads, and API Gateway gives up
# after 30 s; 3,000 once took 70 s.
MAX_IDS_PER_REQUEST = 100


def identifier_problem(value: str) -> str | None:
    """Why `value` cannot be an id or ingest key (None if it can): blank, or holding a control
    character such as NUL, which would make two keys look alike in logs, keys and pages."""
    if not value.strip():
        return "must not be blank"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "must not contain control characters"
    return None


def storable_number(number: Decimal | int) -> bool:
    """True when a DynamoDB number can hold `number` exactly."""
    number = Decimal(number)
    if not number.is_finite():
        return False
    if not number:
        return True
    significant = "".join(map(str, number.as_tuple().digits)).strip("0")
    return (
        len(significant) <= MAX_SIGNIFICANT_DIGITS
        and MIN_ADJUSTED_EXPONENT <= number.adjusted() <= MAX_ADJUSTED_EXPONENT
    )


NUMBER_RULE = (
    f"must be a number of at most {MAX_SIGNIFICANT_DIGITS} significant digits "
    "with a magnitude between 1E-130 and 1E+126"
)


def first_unstorable(document: Any, path: str = "body") -> tuple[str, str] | None:
    """(field path, rule) of the first number a store could not hold, or of nesting past
    MAX_NESTING_DEPTH; None when the document is fine. Iterative, so depth never recurses."""
    stack: list[tuple[Any, str, int]] = [(document, path, 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_NESTING_DEPTH:
                return where, f"must not nest more than {MAX_NESTING_DEPTH} levels deep"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, inner in items:
                stack.append((inner, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}", depth + 1))
        elif isinstance(value, (int, Decimal)) and not isinstance(value, bool) and not storable_number(value):
            return where, NUMBER_RULE
    return None
