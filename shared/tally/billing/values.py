"""`hot_value`: the dataclass shape for value objects built by the thousand per request.

A frozen dataclass assigns each field through `object.__setattr__`, which makes construction
about ten times dearer than a plain one: 4 µs against 0.4 µs for an invoice line's 26 fields, on
a draft invoice of 6,000 lines that is a quarter of the rating engine's time. So the objects on
the hot paths (invoice lines and charges, counter rows) are plain slotted dataclasses that keep
value semantics, equality and a hash of their fields, and are never assigned to after
construction: treat them as frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(eq_default=True)
def hot_value(cls: type[T]) -> type[T]:
    return dataclass(slots=True, eq=True, unsafe_hash=True)(cls)  # type: ignore[return-value]
