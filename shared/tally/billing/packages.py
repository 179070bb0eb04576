"""Packages: contract templates whose times are offsets from the contract's start (Metronome's
/v1/packages). Pure: resolving a package's terms against a start gives the body of an ordinary
contract create, which then goes through the same validation as any other contract.

An alias names one package at a time, over a window: a later assignment of the alias takes the
window it covers from the packages that had it (Metronome: "the alias will reference the package
to which it was most recently assigned"), so an alias's schedule is a list of disjoint entries.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from tally.billing.errors import InvalidInput
from tally.billing.time import LATEST_INSTANT, format_rfc3339, parse_rfc3339

UNITS = ("DAYS", "WEEKS", "MONTHS", "YEARS")
# The fields a contract create may carry next to package_id / package_alias (contract_create_params:
# "only customer_id, starting_at, package_id, uniqueness_key, transition, and custom_fields").
CONTRACT_FIELDS_WITH_PACKAGE = ("customer_id", "starting_at", "package_id", "package_alias", "uniqueness_key",
                                "transition", "custom_fields")


def shifted(start: datetime, offset: dict | None, field: str) -> datetime:
    """`start` moved by an offset {unit, value}. Months and years keep the day of the month, or
    the month's last day when it has fewer (Jan 31 + 1 month is Feb 28/29), as billing periods do."""
    if offset is None:
        return start
    unit, value = offset["unit"], int(offset["value"])
    try:
        if unit == "DAYS":
            return start + timedelta(days=value)
        if unit == "WEEKS":
            return start + timedelta(weeks=value)
        months = start.month - 1 + value * (12 if unit == "YEARS" else 1)
        year, month = start.year + months // 12, months % 12 + 1
        return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(field, "puts a date past year 9999 for this starting_at") from exc


def _at(start: datetime, offset: dict | None, field: str) -> str:
    moved = shifted(start, offset, field)
    if moved >= LATEST_INSTANT:
        raise InvalidInput(field, f"puts a date past {LATEST_INSTANT:%Y-%m-%d} for this starting_at")
    return format_rfc3339(moved)


def _window(start: datetime, item: dict, path: str, offset_name: str = "starting_at_offset") -> tuple[str, str | None]:
    begins = shifted(start, item.get(offset_name), f"{path}.{offset_name}")
    begins_text = _at(start, item.get(offset_name), f"{path}.{offset_name}")
    if item.get("duration") is None:
        return begins_text, None
    return begins_text, _at(begins, item["duration"], f"{path}.duration")


def _without(part: dict, *names: str) -> dict:
    return {k: v for k, v in part.items() if k not in names and k != "id"}


def contract_body(package: dict, customer_id: str, starting_at: datetime) -> dict:
    """The contract create body the package makes for a contract starting at `starting_at`: every
    offset resolved against it, every duration against the start it follows."""
    start = starting_at
    body: dict = {"customer_id": customer_id, "starting_at": format_rfc3339(start), "package_id": package["id"]}
    for name in ("rate_card_id", "rate_card_alias", "multiplier_override_prioritization", "net_payment_terms_days",
                 "scheduled_charges_on_usage_invoices", "spend_threshold_configuration",
                 "prepaid_balance_threshold_configuration", "spend_trackers"):
        if package.get(name) is not None:
            body[name] = package[name]
    if package.get("contract_name") is not None:
        body["name"] = package["contract_name"]
    if package.get("duration") is not None:
        body["ending_before"] = _at(start, package["duration"], "duration")
    if package.get("billing_provider") is not None or package.get("delivery_method") is not None:
        body["billing_provider_configuration"] = {
            k: package[k] for k in ("billing_provider", "delivery_method") if package.get(k) is not None
        }
    schedule = package.get("usage_statement_schedule")
    if schedule is not None:
        body["usage_statement_schedule"] = _without(schedule, "invoice_generation_starting_at_offset") | (
            {"invoice_generation_starting_at": _at(start, schedule["invoice_generation_starting_at_offset"],
                                                   "usage_statement_schedule.invoice_generation_starting_at_offset")}
            if schedule.get("invoice_generation_starting_at_offset") is not None else {}
        )
    for kind in ("commits", "credits"):
        if package.get(kind):
            body[kind] = [_grant(g, start, f"{kind}[{i}]") for i, g in enumerate(package[kind])]
    if package.get("overrides"):
        body["overrides"] = []
        for i, override in enumerate(package["overrides"]):
            begins, ends = _window(start, override, f"overrides[{i}]")
            body["overrides"].append(
                _without(override, "starting_at_offset", "duration") | {"starting_at": begins}
                | ({"ending_before": ends} if ends else {})
            )
    if package.get("scheduled_charges"):
        body["scheduled_charges"] = [
            _without(c, "schedule") | {"schedule": _dated_schedule(c["schedule"], start, f"scheduled_charges[{i}].schedule")}
            for i, c in enumerate(package["scheduled_charges"])
        ]
    if package.get("subscriptions"):
        body["subscriptions"] = []
        for i, sub in enumerate(package["subscriptions"]):
            begins, ends = _window(start, sub, f"subscriptions[{i}]")
            made = _without(sub, "starting_at_offset", "duration") | {"starting_at": begins}
            if ends:
                made["ending_before"] = ends
            if sub.get("seat_config") is not None:
                made["seat_config"] = {"initial_seat_ids": []} | sub["seat_config"]
            body["subscriptions"].append(made)
    for kind in ("recurring_commits", "recurring_credits"):
        if package.get(kind):
            body[kind] = []
            for i, grant in enumerate(package[kind]):
                begins, ends = _window(start, grant, f"{kind}[{i}]")
                body[kind].append(
                    _without(grant, "starting_at_offset", "duration") | {"starting_at": begins}
                    | ({"ending_before": ends} if ends else {})
                )
    return body


def _grant(grant: dict, start: datetime, path: str) -> dict:
    made = _without(grant, "access_schedule", "invoice_schedule")
    access = grant["access_schedule"]
    items = []
    for i, item in enumerate(access["schedule_items"]):
        begins, ends = _window(start, item, f"{path}.access_schedule.schedule_items[{i}]")
        items.append({"amount": item["amount"], "starting_at": begins, "ending_before": ends})
    made["access_schedule"] = _without(access, "schedule_items") | {"schedule_items": items}
    if grant.get("invoice_schedule") is not None:
        made["invoice_schedule"] = _dated_schedule(grant["invoice_schedule"], start, f"{path}.invoice_schedule")
    return made


def _dated_schedule(schedule: dict, start: datetime, path: str) -> dict:
    return _without(schedule, "schedule_items") | {
        "schedule_items": [
            {"timestamp": _at(start, item["date_offset"], f"{path}.schedule_items[{i}].date_offset"),
             "quantity": item["quantity"], "unit_price": item["unit_price"]}
            for i, item in enumerate(schedule["schedule_items"])
        ]
    }


# -- aliases ------------------------------------------------------------------------------------
def assigned(entries: list[dict], package_id: str, starting_at: str | None, ending_before: str | None) -> list[dict]:
    """An alias's schedule after assigning [starting_at, ending_before) to `package_id` (None: open
    ended): earlier entries keep only what lies outside that window."""
    lo = None if starting_at is None else parse_rfc3339(starting_at)
    hi = None if ending_before is None else parse_rfc3339(ending_before)
    kept: list[dict] = []
    for entry in entries:
        a = None if entry.get("starting_at") is None else parse_rfc3339(entry["starting_at"])
        b = None if entry.get("ending_before") is None else parse_rfc3339(entry["ending_before"])
        if lo is not None and (a is None or a < lo):  # the part before the new window
            end = lo if b is None or b > lo else b
            kept.append(entry | {"ending_before": format_rfc3339(end)})
        if hi is not None and (b is None or b > hi):  # the part after it
            begin = hi if a is None or a < hi else a
            kept.append(entry | {"starting_at": format_rfc3339(begin)})
    kept.append({"package_id": package_id, "starting_at": starting_at, "ending_before": ending_before})
    return sorted(kept, key=lambda e: e["starting_at"] or "")


def package_at(entries: list[dict], at: datetime) -> str | None:
    """The package an alias names at `at`."""
    for entry in entries:
        a, b = entry.get("starting_at"), entry.get("ending_before")
        if (a is None or parse_rfc3339(a) <= at) and (b is None or at < parse_rfc3339(b)):
            return entry["package_id"]
    return None
