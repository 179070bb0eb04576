"""A contract's usage filter changed over time (Metronome's `POST /v1/contracts/setUsageFilter`), as
a contract edit: serialized by the contract's version, recorded in its edit history (the SDK's
`add_usage_filters`), refused when it would change a finalized period.

The record's `add_usage_filters` holds {group_key, group_values, starting_at}. Applied, the filter
is the contract's from `starting_at` on: it joins `usage_filter.updates`, replacing the updates
that start at or after it (a later filter set again is set anew). A contract without a filter, or
a filter set at or before the first one starts, becomes the contract's filter itself, with no
updates (before a filter starts the contract bills all usage). The engine then validates the
contract as a whole: hour-aligned, within the contract, metrics that group by the key, and
contracts in effect at the same time filtering on that key with disjoint values
(billing/pricing/usage_filters.py). Drafts re-price from the filter windows on the next read.
"""

from __future__ import annotations

from typing import Callable, Iterator

from tally.billing.time import parse_rfc3339

EDIT_KEYS = ("add_usage_filters",)
# The request fields (setUsageFilter's body) an error on the contract's usage_filter names.
_FIELDS = ("group_key", "group_values", "starting_at")


def _set(doc: dict, change: dict) -> None:
    at = parse_rfc3339(change["starting_at"])
    current = doc.get("usage_filter")
    first = None if current is None else parse_rfc3339(current.get("starting_at") or doc["starting_at"])
    shown = {"group_key": change["group_key"], "group_values": list(change["group_values"])}
    if first is None or at <= first:
        # From the contract's start: no starting_at, as a create request stores it.
        doc["usage_filter"] = shown | ({"starting_at": change["starting_at"]} if at > parse_rfc3339(doc["starting_at"]) else {})
        return
    kept = [u for u in current.get("updates") or () if parse_rfc3339(u["starting_at"]) < at]
    doc["usage_filter"] = dict(current, updates=kept + [shown | {"starting_at": change["starting_at"]}])


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    for change in record.get("add_usage_filters") or ():
        yield "starting_at", lambda d, c=change: _set(d, c)


def edit_dates(record: dict) -> Iterator[tuple[str, object]]:
    """(request field, effective instant) of each change, for the finalized-period check."""
    for change in record.get("add_usage_filters") or ():
        yield "starting_at", parse_rfc3339(change["starting_at"])


def request_field(field: str) -> str:
    """setUsageFilter's field for an error the engine raised on the edited contract's usage filter
    (`usage_filter.updates[2].starting_at` is `starting_at`; a filter clash names group_key)."""
    if not field.startswith("usage_filter"):
        return field
    last = field.rsplit(".", 1)[-1]
    return last if last in _FIELDS else "group_key"
