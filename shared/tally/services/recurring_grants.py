"""Recurring commits and credits of a contract, and the commits and credits they make.

A contract stores each recurring grant once, in `recurring_commits` or `recurring_credits` (the
normalized request: api/recurring_models.py). The commits and credits it makes are not stored:
they are grant documents derived on every read (billing/balances/recurring.py), each shaped like
a commit or credit stored in the contract, plus `recurring_commit_id` or `recurring_credit_id`. Their
ids are UUIDs derived from the recurring grant's id and the recurrence's index, so they are the
same on every read (invoice lines, ledgers and manual entries can name them).

A recurring grant with a `subscription_config` grants its access amount per seat of that
subscription (billing/balances/recurring.py, SeatLink), so what it makes follows the
subscription's quantity history (its quantity updates, or its seat updates when SEAT_BASED) and is
derived again from it on every read: a seat increase adds an access segment to the recurrence of
its period, with an id derived from the recurrence and the increase's instant.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Callable, Iterator

from tally.billing.balances import GrantKind
from tally.billing.balances.recurring import (
    Recurrence,
    RecurrenceFrequency,
    RecurringGrant,
    RecurringProration,
    SeatLink,
    recurrences,
    validate_recurring,
)
from tally.billing.errors import InvalidInput
from tally.billing.pricing import USD_CENTS, Product
from tally.billing.pricing.periods import BillingDay, Frequency, UsageStatementSchedule, billing_anchor
from tally.billing.pricing.subscriptions import ProrationRounding, ProrationRoundingMethod
from tally.billing.pricing.validation import hour_aligned
from tally.billing.time import format_rfc3339, parse_rfc3339

RECURRING_KINDS = {"recurring_commits": "commits", "recurring_credits": "credits"}
_ID_OF = {"recurring_commits": "recurring_commit_id", "recurring_credits": "recurring_credit_id"}
# Fixed, so that a recurrence's ids are the same on every read and in every process.
_NAMESPACE = uuid.UUID("5c7c2d0e-3f57-4f0e-9b7a-6a1f0c1d2e3f")
# Passed down to every commit or credit made.
_PASSED_DOWN = (
    "product_id", "name", "description", "priority", "applicable_product_ids", "applicable_product_tags",
    "specifiers", "rate_type", "rollover_fraction", "netsuite_sales_order_id", "hierarchy_configuration",
    "subscription_config",
)


def derived_id(recurring_id: str, index: int, part: str = "") -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{recurring_id}/{index}{'/' + part if part else ''}"))


def _time(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _rounding(doc: dict | None) -> ProrationRounding | None:
    if doc is None:
        return None
    return ProrationRounding(int(doc["decimal_places"]), ProrationRoundingMethod(doc["rounding_method"]))


def _amount(doc: dict | None) -> Decimal | None:
    if doc is None:
        return None
    # Linked to a subscription, the access amount has no quantity: it is per seat.
    return Decimal(doc["unit_price"]) * Decimal(doc["quantity"] if doc.get("quantity") is not None else 1)


def subscription_of(doc: dict, contract: dict) -> dict | None:
    """The subscription a recurring grant is linked to (None: not linked, or no such subscription)."""
    config = doc.get("subscription_config")
    if config is None:
        return None
    return next((s for s in contract.get("subscriptions") or () if s["id"] == config["subscription_id"]), None)


def _seat_link(doc: dict, contract: dict | None) -> SeatLink | None:
    config = doc.get("subscription_config")
    if config is None or contract is None:
        return None
    # services/contracts imports this module
    from tally.services.contracts import is_seat_based, quantity_schedule, seat_schedule_of

    sub = subscription_of(doc, contract)
    if sub is None:
        return SeatLink((), bool(config["apply_seat_increase_config"]["is_prorated"]))
    initial, changes = quantity_schedule(sub)
    starts = [parse_rfc3339(sub["starting_at"]), *(c.starting_at for c in changes)]
    ends = [*starts[1:], _time(sub.get("ending_before"))]
    quantities = [initial, *(c.quantity for c in changes)]
    prorate = bool(config["apply_seat_increase_config"]["is_prorated"])
    if not _individual(doc) or not is_seat_based(sub):
        return SeatLink(tuple(zip(starts, ends, quantities)), prorate)
    assigned = tuple((s.starting_at, s.ending_before, s.seats.assigned) for s in seat_schedule_of(sub))
    return SeatLink(tuple(zip(starts, ends, quantities)), prorate, individual=True, assigned=assigned)


def _individual(doc: dict) -> bool:
    return (doc.get("subscription_config") or {}).get("allocation") == "INDIVIDUAL"


def _seat_specifiers(version: dict, key: str, seat_id: str) -> list[dict]:
    """What one seat's allocation may pay for: the recurring grant's filters (any product when it
    has none), only for usage whose seat group key (a presentation or pricing group key) is the seat."""
    bases = version.get("specifiers") or (
        [{"product_id": p} for p in version.get("applicable_product_ids") or ()]
        + [{"product_tags": [t]} for t in version.get("applicable_product_tags") or ()]
    ) or [{}]
    return [
        dict(base, **{values: {**(base.get(values) or {}), key: seat_id}})
        for values in ("presentation_group_values", "pricing_group_values")
        for base in bases
    ]


def definitions(doc: dict) -> list[dict]:
    """A stored recurring grant's definitions: as created, then as each update (contract edits'
    update_recurring_commits/credits, kept in `updates`) left it. The last is the current one."""
    current = {k: v for k, v in doc.items() if k != "updates"}
    found = [current]
    for update in doc.get("updates") or ():
        current = dict(current)
        for name in ("access_amount", "invoice_amount"):
            if name in update:
                current[name] = {**(current.get(name) or {}), **update[name]}
        for name in ("ending_before", "rate_type", "proration_rounding"):
            if name in update:
                current[name] = update[name]
        found.append({k: v for k, v in current.items() if v is not None})
    return found


def _definition(doc: dict, contract: dict | None = None) -> RecurringGrant:
    rounding = doc.get("proration_rounding") or {}
    duration = Decimal(doc["commit_duration"]["value"])
    return RecurringGrant(
        id=doc["id"],
        kind=GrantKind(doc["type"]),
        starting_at=parse_rfc3339(doc["starting_at"]),
        access_amount=_amount(doc["access_amount"]) or Decimal(0),
        credit_type=USD_CENTS,
        ending_before=_time(doc.get("ending_before")),
        duration=int(duration) if duration == duration.to_integral_value() else -1,
        frequency=None if doc.get("recurrence_frequency") is None else RecurrenceFrequency(doc["recurrence_frequency"]),
        proration=RecurringProration(doc.get("proration") or RecurringProration.FIRST_AND_LAST.value),
        access_rounding=_rounding(rounding.get("access")),
        invoice_amount=_amount(doc.get("invoice_amount")),
        invoice_rounding=_rounding(rounding.get("invoice")),
        seats=_seat_link(doc, contract),
    )


def recurring_from_document(doc: dict, contract: dict | None = None) -> RecurringGrant:
    """`contract` gives a grant linked to a subscription its seats (without it, one seat)."""
    versions = definitions(doc)
    updates = tuple(
        (parse_rfc3339(update["effective_after"]), _definition(version, contract))
        for update, version in zip(doc.get("updates") or (), versions[1:])
    )
    return replace(_definition(versions[0], contract), updates=updates)


def statement_schedule(contract: dict) -> UsageStatementSchedule:
    schedule = contract["usage_statement_schedule"]
    return UsageStatementSchedule(
        Frequency(schedule["frequency"]), BillingDay(schedule["day"]), _time(schedule.get("billing_anchor_date"))
    )


def anchor_date(doc: dict, contract: dict) -> str:
    """What the recurring grant's periods are counted from (its own start, or the contract's grid)."""
    if doc.get("recurrence_frequency") is not None:
        return doc["starting_at"]
    return format_rfc3339(billing_anchor(statement_schedule(contract), parse_rfc3339(contract["starting_at"])))


def _recurrences(doc: dict, contract: dict, until: datetime | None) -> tuple[Recurrence, ...]:
    """`until` None: the first recurrence of an open-ended grant (no clock to say which came since)."""
    return recurrences(
        recurring_from_document(doc, contract),
        statement_schedule(contract),
        parse_rfc3339(contract["starting_at"]),
        _time(contract.get("ending_before")),
        until if until is not None else parse_rfc3339(doc["starting_at"]),
    )


def recurrence_documents(doc: dict, kind: str, contract: dict, until: datetime | None) -> list[dict]:
    """The commits (kind "recurring_commits") or credits a recurring grant has made by `until`
    (all of them when it has an end), as grant documents stored in the contract would be."""
    found = []
    versions = definitions(doc)
    for r in _recurrences(doc, contract, until):
        version = versions[r.version]
        segment = {
            "id": derived_id(doc["id"], r.index, "access"),
            "amount": r.access_amount,
            "starting_at": format_rfc3339(r.starting_at),
            "ending_before": format_rfc3339(r.ending_before),
        }
        segments = [segment] + [
            {
                "id": derived_id(doc["id"], r.index, f"seats/{format_rfc3339(at)}"),
                "amount": amount,
                "starting_at": format_rfc3339(at),
                "ending_before": segment["ending_before"],
            }
            for at, amount in r.increases
        ]
        if r.rollover_ending_before is not None and version.get("rollover_fraction"):
            for s in segments:
                s["rollover_ending_before"] = format_rfc3339(r.rollover_ending_before)
        invoices = []
        if r.invoice_amount is not None:
            invoice = version["invoice_amount"]
            whole = not r.prorated
            invoices.append(
                {
                    "id": derived_id(doc["id"], r.index, "invoice"),
                    "timestamp": format_rfc3339(r.starting_at),
                    "amount": r.invoice_amount,
                    "quantity": Decimal(invoice["quantity"]) if whole else Decimal(1),
                    "unit_price": Decimal(invoice["unit_price"]) if whole else r.invoice_amount,
                }
            )
        grant = {name: version[name] for name in _PASSED_DOWN if version.get(name) is not None}
        grant |= {
            "id": derived_id(doc["id"], r.index),
            "type": doc["type"],
            "credit_type_id": doc["access_amount"].get("credit_type_id") or USD_CENTS.id,
            "access_schedule": segments,
            "invoice_schedule": invoices,
            "custom_fields": {},
            _ID_OF[kind]: doc["id"],
            # Metronome: the later of the recurrence's service period start and the recurring grant's start
            "created_at": format_rfc3339(r.starting_at),
        }
        if doc["access_amount"].get("access_type") == "QUANTITY":  # a balance of units (Grant.by_quantity)
            grant["access_type"] = "QUANTITY"
        if _individual(doc):
            found += _seat_allocations(doc, grant, r, contract, version)
        else:
            found.append(grant)
    return found


def _seat_allocations(doc: dict, grant: dict, r: Recurrence, contract: dict, version: dict) -> list[dict]:
    """INDIVIDUAL allocation: one commit or credit per seat, which only that seat's usage draws."""
    key = ((subscription_of(doc, contract) or {}).get("seat_config") or {}).get("seat_group_key")
    if key is None:
        return []
    made = []
    for seat_id, at, amount in r.allocations:
        segment = {
            "id": derived_id(doc["id"], r.index, f"seat/{seat_id}/access"),
            "amount": amount,
            "starting_at": format_rfc3339(at),
            "ending_before": format_rfc3339(r.ending_before),
        }
        if r.rollover_ending_before is not None and version.get("rollover_fraction"):
            segment["rollover_ending_before"] = format_rfc3339(r.rollover_ending_before)
        one = {k: v for k, v in grant.items() if k not in ("applicable_product_ids", "applicable_product_tags")}
        made.append(one | {
            "id": derived_id(doc["id"], r.index, f"seat/{seat_id}"),
            "access_schedule": [segment],
            "specifiers": _seat_specifiers(version, key, seat_id),
            "created_at": format_rfc3339(at),
            "seat_id": seat_id,  # whose it is (services/seat_balances.py)
        })
    return made


def made_grants(contract: dict, until: datetime | None) -> dict[str, list[dict]]:
    """{"commits": [...], "credits": [...]}: what the contract's recurring grants have made."""
    made: dict[str, list[dict]] = {"commits": [], "credits": []}
    for kind, grant_kind in RECURRING_KINDS.items():
        for doc in contract.get(kind) or ():
            made[grant_kind] += recurrence_documents(doc, kind, contract, until)
    return made


def validate_recurring_documents(contract: dict, products: dict[str, Product], validate_grant) -> None:
    """Every recurring grant of a stored contract (InvalidInput names the request field).
    `validate_grant(doc, products, prefix)` checks a grant document it made (its product, filters,
    priority and rollover are named as the recurring grant's)."""
    start, end = parse_rfc3339(contract["starting_at"]), _time(contract.get("ending_before"))
    schedule = statement_schedule(contract)
    daily = []
    for kind in RECURRING_KINDS:
        for index, doc in enumerate(contract.get(kind) or ()):
            prefix = f"{kind}[{index}]"
            recurring = recurring_from_document(doc)
            validate_recurring(recurring, schedule, start, end, prefix)
            if doc.get("subscription_config") is not None:
                linked = subscription_of(doc, contract)
                if linked is None:
                    raise InvalidInput(
                        f"{prefix}.subscription_config.subscription_id",
                        "is not a subscription of this contract (nor the temporary_id of one created with it)",
                    )
                if _individual(doc) and linked.get("quantity_management_mode") != "SEAT_BASED":
                    raise InvalidInput(
                        f"{prefix}.subscription_config.allocation",
                        "INDIVIDUAL needs a SEAT_BASED subscription (an allocation per seat); use POOLED",
                    )
            if recurring.frequency is RecurrenceFrequency.DAILY:
                daily.append(prefix)
            # The first one it makes (none when the contract ends before it starts) stands for all:
            # they share product, filters, priority and rollover. Linked to a subscription, as if for
            # one seat: it may have no seats yet, or one grant per seat.
            plain = {k: v for k, v in doc.items() if k != "subscription_config"}
            for first in recurrence_documents(plain, kind, contract, recurring.starting_at)[:1]:
                validate_grant(first, products, prefix)
    if len(daily) > 1:
        raise InvalidInput(f"{daily[1]}.recurrence_frequency", "a contract may have one DAILY recurring commit or credit")
    if daily and any(s.get("quantity_management_mode") == "SEAT_BASED" for s in contract.get("subscriptions") or ()):
        raise InvalidInput(f"{daily[0]}.recurrence_frequency", "DAILY recurring commits and credits cannot be used with SEAT_BASED subscriptions")


# -- contract edits (services/contract_edits.py applies these) -------------------------------------
EDIT_KEYS = (
    "add_recurring_commits", "add_recurring_credits", "update_recurring_commits", "update_recurring_credits",
    "add_discounts", "add_professional_services",
)
_ADDED = {
    "add_recurring_commits": "recurring_commits", "add_recurring_credits": "recurring_credits",
    "add_discounts": "discounts", "add_professional_services": "professional_services",
}


def give_ids(record: dict, new_id) -> None:
    """Ids for the parts an edit record adds, made once so that a retried edit records the same.
    A recurring grant added may name a subscription added with it by its temporary_id."""
    for key in _ADDED:
        for part in record.get(key) or ():
            part["id"] = new_id()
            if key == "add_discounts":
                part["schedule_items"] = [dict(i, id=new_id()) for i in part["schedule_items"]]
    subscription_ids_resolved(
        record.get("add_subscriptions") or (), [*(record.get("add_recurring_commits") or ()), *(record.get("add_recurring_credits") or ())]
    )


def subscription_ids_resolved(subscriptions, recurring_grants) -> None:
    """A recurring grant's subscription_config may name a subscription created with it by its
    `temporary_id`; it is stored naming the subscription's id."""
    ids = {s["temporary_id"]: s["id"] for s in subscriptions if s.get("temporary_id") and s.get("id")}
    for doc in recurring_grants:
        config = doc.get("subscription_config")
        if config is not None and config["subscription_id"] in ids:
            doc["subscription_config"] = dict(config, subscription_id=ids[config["subscription_id"]])


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    """(request field, change to the contract document) for each part the record adds or updates."""
    at = record["timestamp"]
    for key, kind in _ADDED.items():
        for i, part in enumerate(record.get(key) or ()):
            yield f"{key}[{i}]", lambda d, k=kind, p=part: d.setdefault(k, []).append(copy.deepcopy(p))
    for key in ("update_recurring_commits", "update_recurring_credits"):
        for i, update in enumerate(record.get(key) or ()):
            field = f"{key}[{i}]"
            yield field, lambda d, k=key[len("update_"):], u=update, f=field: _update_recurring(d, k, u, f, at)


def _update_recurring(doc: dict, kind: str, update: dict, field: str, at: str) -> None:
    """The update applies to the recurrences whose access starts after the edit (Metronome: those
    begun or over stay as they are), so it is kept with its instant rather than written over."""
    what, id_field = ("a recurring commit", "recurring_commit_id") if kind == "recurring_commits" else ("a recurring credit", "recurring_credit_id")
    recurring = next((r for r in doc.get(kind) or () if r["id"] == update["id"]), None)
    if recurring is None:
        raise InvalidInput(f"{field}.{id_field}", f"is not {what} of the contract")
    current = definitions(recurring)[-1]
    if recurring.get("subscription_config") is not None and "quantity" in (update.get("access_amount") or {}):
        raise InvalidInput(f"{field}.access_amount.quantity", "is the subscription's: this recurring grant is per seat (subscription_config)")
    if update.get("ending_before") is not None:
        end = parse_rfc3339(update["ending_before"])
        hour_aligned(end, f"{field}.ending_before")
        if end <= parse_rfc3339(recurring["starting_at"]):
            raise InvalidInput(f"{field}.ending_before", "must be after the recurring grant starts")
    invoice = update.get("invoice_amount")
    if invoice is not None and current.get("invoice_amount") is None and set(invoice) != {"quantity", "unit_price"}:
        raise InvalidInput(f"{field}.invoice_amount", "the recurring commit bills nothing yet: give quantity and unit_price")
    change = {k: v for k, v in update.items() if k != "id"}
    if invoice is not None and current.get("invoice_amount") is None:
        change["invoice_amount"] = dict(invoice, credit_type_id=current["access_amount"]["credit_type_id"])
    recurring.setdefault("updates", []).append({"effective_after": at, **change})


def edit_dates(old: dict, record: dict) -> Iterator[tuple[str, datetime, bool]]:
    """(request field, instant, lands on a SCHEDULED invoice) for each part the record adds: what
    must not fall in a finalized period (contract_edits.Finalized.check). Updates of recurring
    grants only change recurrences that start after the edit, never a finalized one."""
    until = parse_rfc3339(record["timestamp"])
    for key in ("add_recurring_commits", "add_recurring_credits"):
        for i, recurring in enumerate(record.get(key) or ()):
            for made in recurrence_documents(recurring, key[len("add_"):], old, until):
                for item in made["invoice_schedule"]:
                    yield f"{key}[{i}].starting_at", parse_rfc3339(item["timestamp"]), True
    for i, discount in enumerate(record.get("add_discounts") or ()):
        for j, item in enumerate(discount["schedule_items"]):
            yield f"add_discounts[{i}].schedule.schedule_items[{j}].timestamp", parse_rfc3339(item["timestamp"]), True
