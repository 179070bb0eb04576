"""POST /v1/contracts/setUsageFilter (metronome-sdk's ContractSetUsageFilterParams): the contract's
usage filter from `starting_at` on, applied as a contract edit (services/usage_filter_edits.py)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from tally.api.models import FilterValues, PropertyName, Request, parse_instant
from tally.billing.limits import MAX_ID_LENGTH
from tally.billing.pricing import Contract
from tally.billing.time import format_rfc3339, parse_rfc3339


class UsageFilterSet(Request):
    model_config = ConfigDict(extra="forbid")

    contract_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    customer_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    group_key: PropertyName
    group_values: FilterValues
    starting_at: str

    def changes(self) -> dict:
        """The edit's changes: one filter, its instant in canonical form."""
        at = parse_instant("starting_at", self.starting_at)
        assert at is not None
        change = {"group_key": self.group_key, "group_values": list(self.group_values), "starting_at": format_rfc3339(at)}
        return {"add_usage_filters": [change]}


def added_usage_filters_json(changes: list[dict], contract: Contract) -> list[dict]:
    """The edit history's add_usage_filters: each filter set, until the contract's next filter
    change after it, else the contract's end (none for an open-ended contract)."""
    starts = sorted({start for start, _, f in contract.usage_filter_windows() if start is not None and f is not None})
    found = []
    for change in changes:
        at = parse_rfc3339(change["starting_at"])
        body = {k: change[k] for k in ("group_key", "group_values", "starting_at")}
        end = next((s for s in starts if s > at), contract.ending_before)
        if end is not None:
            body["ending_before"] = format_rfc3339(end)
        found.append(body)
    return found
