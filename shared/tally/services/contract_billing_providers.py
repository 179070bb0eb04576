"""Which customer billing provider configuration a contract's invoices go to (issue 17):
`billing_provider_configuration` on contract create and `add_billing_provider_configuration_update`
in contract edits (metronome-sdk 4.x).

The contract keeps `billing_provider_configuration_schedule`: entries {billing_provider_configuration_id,
effective_at, recorded_at, billing_provider_configuration (the configuration as shown when named)}.
An invoice goes to the entry in force for its billing period (the last one effective at or before
the period's start) among those recorded before the invoice was finalized, so a finalized invoice is
never sent elsewhere by a later edit; with none, to the customer's default configuration
(services/billing_providers.py). A contract-level configuration archived later delivers nothing.

An edit's `schedule.effective_at` is resolved once, when the edit is recorded:
START_OF_CURRENT_PERIOD is the start of the contract's billing period holding the edit's instant
(the contract's start before it begins), START_OF_NEXT_PERIOD that period's end. As the SDK says,
the update only adds a configuration to a contract that has none yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterator

from tally.billing.errors import InvalidInput
from tally.billing.time import format_rfc3339, parse_rfc3339

SCHEDULE = "billing_provider_configuration_schedule"
EDIT_KEY = "add_billing_provider_configuration_update"
EDIT_KEYS = (EDIT_KEY,)
EFFECTIVE = ("START_OF_CURRENT_PERIOD", "START_OF_NEXT_PERIOD")


def for_create(request: dict, providers) -> dict:
    """The create request with its named configuration resolved (400 naming the field when it is
    not an active configuration of the customer)."""
    spec = request.pop("billing_provider_configuration", None)
    if not spec:
        return request
    shown = providers.configuration_for_contract(request["customer_id"], spec, "billing_provider_configuration")
    entry = {"billing_provider_configuration_id": shown["id"], "effective_at": request["starting_at"],
             "recorded_at": None, "billing_provider_configuration": shown}
    return dict(request, **{SCHEDULE: [entry]})


def for_edit(changes: dict, customer_id: str, providers) -> dict:
    """The edit's changes with the named configuration resolved (the instant is resolved by
    `give_instant` when the edit is recorded)."""
    update = changes.get(EDIT_KEY)
    if update is None:
        return changes
    field = f"{EDIT_KEY}.billing_provider_configuration"
    shown = providers.configuration_for_contract(customer_id, update["billing_provider_configuration"], field)
    return dict(changes, **{EDIT_KEY: {"billing_provider_configuration_id": shown["id"],
                                       "billing_provider_configuration": shown, "schedule": update["schedule"]}})


def give_instant(record: dict, contract, now: str) -> None:
    """Resolve the record's schedule.effective_at to an instant, against the contract's billing
    periods at the edit's time (`contract` is the engine object)."""
    update = record.get(EDIT_KEY)
    if update is None or "effective_at" in update:
        return
    when = update["schedule"]["effective_at"]
    at = parse_rfc3339(now)
    period = contract.period_containing(at)
    field = f"{EDIT_KEY}.schedule.effective_at"
    if period is None:
        if contract.ending_before is not None and at >= contract.ending_before:
            raise InvalidInput(field, "the contract has ended: it has no current or next billing period")
        start = contract.starting_at
        instant = start if when == "START_OF_CURRENT_PERIOD" else _period_end(contract, start)
    else:
        instant = period.starting_at if when == "START_OF_CURRENT_PERIOD" else period.ending_before
    if contract.ending_before is not None and instant >= contract.ending_before:
        raise InvalidInput(field, "START_OF_NEXT_PERIOD is at or after the contract's end")
    update["effective_at"] = format_rfc3339(instant)
    update["recorded_at"] = now


def _period_end(contract, start: datetime) -> datetime:
    first = contract.period_containing(start)
    return start if first is None else first.ending_before


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    update = record.get(EDIT_KEY)
    if update is not None:
        yield EDIT_KEY, lambda d, u=update: _add(d, u)


def _add(doc: dict, update: dict) -> None:
    if doc.get(SCHEDULE):
        raise InvalidInput(f"{EDIT_KEY}.billing_provider_configuration",
                           "the contract already has a billing provider configuration (only one may be added)")
    doc[SCHEDULE] = [{key: update[key] for key in
                      ("billing_provider_configuration_id", "effective_at", "recorded_at", "billing_provider_configuration")}]


def configuration_in_force(doc: dict | None, period_start: datetime, finalized_at: datetime) -> str | None:
    """The id of the contract's configuration for an invoice of the billing period starting at
    `period_start`, finalized at `finalized_at`; None: the customer's default."""
    chosen = None
    for entry in (doc or {}).get(SCHEDULE) or ():
        recorded = entry.get("recorded_at")
        if parse_rfc3339(entry["effective_at"]) <= period_start and (recorded is None or parse_rfc3339(recorded) <= finalized_at):
            chosen = entry["billing_provider_configuration_id"]
    return chosen


def contract_fields(doc: dict, now: datetime | None) -> dict:
    """v1/v2 get: `customer_billing_provider_configuration` (the one in force now, else the first
    to come) and v2's `billing_provider_configuration_schedule`."""
    entries = doc.get(SCHEDULE) or []
    if not entries:
        return {}
    current = entries[0]
    for entry in entries:
        if now is not None and parse_rfc3339(entry["effective_at"]) <= now:
            current = entry
    return {
        "customer_billing_provider_configuration": current["billing_provider_configuration"],
        SCHEDULE: [{"billing_provider_configuration": e["billing_provider_configuration"], "effective_at": e["effective_at"]}
                   for e in entries],
    }


def history_json(record: dict) -> dict:
    """The edit history shows the update as made (Tally's addition: the SDK's history has no field)."""
    update = record.get(EDIT_KEY)
    if update is None:
        return {}
    return {EDIT_KEY: {"billing_provider_configuration": update["billing_provider_configuration"],
                       "schedule": {"effective_at": update["schedule"]["effective_at"]},
                       "effective_at": update.get("effective_at")}}
