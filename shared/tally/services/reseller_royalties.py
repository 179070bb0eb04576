"""Reseller royalties in contract documents (`reseller_royalties`, segments, see
billing/reseller_royalties.py): contract create stores them, the edit's `add_reseller_royalties`
and an amendment's `reseller_royalties` change them, one change at a time in the order sent.
They are recorded and shown, never priced."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from tally.billing.errors import InvalidInput
from tally.billing.pricing import Product
from tally.billing.reseller_royalties import apply_change, validate_royalties

EDIT_KEYS = ("add_reseller_royalties",)


def _change(doc: dict, change: dict, field: str) -> None:
    doc["reseller_royalties"] = apply_change(doc.get("reseller_royalties") or [], change, field)


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    for index, change in enumerate(record.get("add_reseller_royalties") or ()):
        field = f"add_reseller_royalties[{index}]"
        yield field, lambda d, c=change, f=field: _change(d, c, f)


def validate_reseller_royalty_documents(document: Mapping[str, Any], products: Mapping[str, Product]) -> None:
    segments = document.get("reseller_royalties") or []
    validate_royalties(segments)
    for index, segment in enumerate(segments):
        for j, product_id in enumerate(segment.get("applicable_product_ids") or ()):
            if product_id not in products:
                raise InvalidInput(f"reseller_royalties[{index}].applicable_product_ids[{j}]", "is not a known product")


def request_field(error: InvalidInput, document: dict, record: dict) -> InvalidInput | None:
    """A stored segment's error, in an edit that changed royalties, named by the last change of
    that segment's reseller_type (segments have no ids of their own)."""
    if error.field == "reseller_royalties" and record.get("add_reseller_royalties"):  # too many segments
        return InvalidInput("add_reseller_royalties", error.rule)
    if not error.field.startswith("reseller_royalties["):
        return None
    head, dot, rest = error.field.partition(".")
    segments = document.get("reseller_royalties") or []
    position = int(head[len("reseller_royalties["):-1])
    reseller_type = segments[position]["reseller_type"] if position < len(segments) else None
    changes = [i for i, c in enumerate(record.get("add_reseller_royalties") or ()) if c["reseller_type"] == reseller_type]
    if not changes:
        return None
    return InvalidInput(f"add_reseller_royalties[{changes[-1]}]{dot}{rest}", error.rule)
