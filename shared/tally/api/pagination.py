"""Cursor pagination helpers for small, fully-read lists."""

from __future__ import annotations

from tally.billing.errors import InvalidInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 100


def page_limit(query: dict) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (str(raw).isascii() and str(raw).isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


def offset_cursor(cursor: str | None, field: str) -> int:
    """The offset an offset cursor stands for (0 when absent)."""
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 12:  # '²'.isdigit() is True
        raise InvalidInput(field, "is not a cursor this API returned")
    return int(cursor)


def paginate_list(items: list, query: dict, limit: int | None = None) -> dict:
    """Offset cursor over an in-memory list (ordered deterministically by the caller)."""
    limit = limit or page_limit(query)
    start = offset_cursor(query.get("next_page"), "next_page")
    end = start + limit
    return {"data": items[start:end], "next_page": str(end) if end < len(items) else None}
