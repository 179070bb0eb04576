"""Contract edits (Metronome's `POST /v2/contracts/edit`) and their history.

An edit changes one live contract: overrides added or removed, subscriptions added or updated
(quantity or seat changes, end dates, names, proration rounding), scheduled charges added, updated
or archived, commits and credits added or archived, and the contract's end date, name and payment
terms. Each change carries its own effective date (an override's `starting_at`, a quantity or
seat change's `starting_at`, a charge's timestamps); the edit as a whole is recorded once, with
who made it and when.

`changes` is the normalized request (api/contract_edit_models.py). The edit *record* is the
changes with every id and default resolved, so applying it is pure (`apply_edit`) and replaying a
contract's records over its created document gives the stored contract. Drafts are priced from
the stored contract on every read, so they reflect an edit at once.

A finalized invoice never changes, so an edit that would change a finalized period is refused,
naming its field:
- a change effective before the end of the contract's last finalized USAGE period: that
  invoice is stored, so the change would apply to it nowhere but in the contract's terms;
- a change to what a finalized SCHEDULED invoice holds: those are priced without usage, so the
  contract before and after the edit is priced for them and compared exactly.
The exception is Metronome's: `allow_contract_ending_before_finalized_invoice` (true unless sent
false) lets the contract end before a finalized period, and the finalized invoices stay as they
are (void and regenerate them to bill the new end).

Edits of one contract are serialized by its version (a conditional write with the edit record and
its uniqueness claim, in one transaction). The loser of a race re-reads the contract, applies its
changes to it again (a quantity delta adds to the quantity now) and retries, at most
`MAX_ATTEMPTS` times in all, then gets a 409.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Iterator, Protocol, Sequence

from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.pricing import InvoiceType, build_draft_invoices
from tally.billing.pricing.validation import hour_aligned
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.contracts import (
    ContractChanged,
    ContractService,
    contract_from_document,
    is_seat_based,
    quantity_schedule,
)
from tally.services import grant_edits, recurring_grants, reseller_royalties, spend_trackers, thresholds
from tally.services import contract_billing_providers, usage_filter_edits
from tally.services.invoice_records import FINALIZED, StoredInvoice
from tally.services.invoices import NO_USAGE, invoice_id
from tally.services.hierarchy import children_finalized, merged_drawn
from tally.services.ports import StoreUnavailable

MAX_ATTEMPTS = 5
NEVER = datetime.max.replace(tzinfo=timezone.utc)

# The record's change keys, in the order `apply_edit` applies them.
CHANGE_KEYS = (
    "update_contract_name", "update_net_payment_terms_days", "update_contract_end_date",
    "remove_overrides", "add_overrides",
    "add_subscriptions", "update_subscriptions",
    "archive_scheduled_charges", "update_scheduled_charges", "add_scheduled_charges",
    "archive_commits", "archive_credits", "add_commits", "add_credits",
    *recurring_grants.EDIT_KEYS,
    *thresholds.EDIT_KEYS,
    *spend_trackers.EDIT_KEYS,
    *reseller_royalties.EDIT_KEYS,
    *grant_edits.EDIT_KEYS,
    *usage_filter_edits.EDIT_KEYS,
    *contract_billing_providers.EDIT_KEYS,
    "amendment",
)
# Where archived parts go: out of the lists the engine prices, kept for the record.
ARCHIVED = {
    "scheduled_charges": "archived_scheduled_charges",
    "commits": "archived_commits",
    "credits": "archived_credits",
}


class ContractEditStore(Protocol):
    """The contract store's edit side (adapters/dynamo/documents.py DynamoContractStore)."""

    def commit_edit(
        self, document: dict, edit: dict, uniqueness_key: str | None = None, invoices_written: int | None = None,
        others_written: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Write the edited contract and its record at once: ContractChanged if the contract changed
        since it was read or (given `invoices_written`) the customer's invoice records since they
        were counted, or those of `others_written` (customer id, count: a parent's children);
        Conflict if the uniqueness key was taken."""

    def edit_claimed(self, contract_id: str, uniqueness_key: str) -> bool: ...

    def edits(self, contract_id: str) -> list[dict]:
        """The contract's records, oldest first."""

    def keep_version(self, document: dict) -> None:
        """Keep the document as it is at its `_version` (idempotent), before an edit changes it."""

    def version(self, contract_id: str, version: int) -> dict | None:
        """The contract as it was at `version`, if kept."""


class FinalizedInvoices(Protocol):
    """The invoice record store (services/invoice_records.py InvoiceStore)."""

    def records_written(self, customer_id: str) -> int: ...

    def list_for_customer(self, customer_id: str) -> list[StoredInvoice]: ...


def _new_id() -> str:
    return str(uuid.uuid4())


def _time(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _end(value: str | None) -> datetime:
    """An exclusive end, None being never."""
    return NEVER if value is None else parse_rfc3339(value)


# -- applying a record (pure) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One change of an edit: the request field it comes from, and what it does to the document."""

    field: str
    apply: Callable[[dict], None]


def _find(items: list[dict], item_id: str, field: str, what: str) -> dict:
    for item in items:
        if item["id"] == item_id:
            return item
    raise InvalidInput(field, f"is not {what} of the contract")


def _archive(doc: dict, kind: str, item_id: str, field: str, what: str, at: str) -> None:
    item = _find(doc.get(kind) or [], item_id, field, what)
    doc[kind] = [i for i in doc[kind] if i["id"] != item_id]
    doc.setdefault(ARCHIVED[kind], []).append(dict(item, archived_at=at))


def _check_quantities(sub: dict, field: str) -> None:
    """Quantity changes on the hour, within the subscription, and never below zero."""
    start, end = parse_rfc3339(sub["starting_at"]), _end(sub.get("ending_before"))
    for update in sub.get("quantity_updates") or ():
        at = parse_rfc3339(update["starting_at"])
        if update.get("_new") is None:  # an earlier change: only a new end can put it out of bounds
            if at >= end:
                raise InvalidInput(
                    f"{field}.ending_before", f"must be after the subscription's quantity change at {update['starting_at']}"
                )
            continue
        where = f"{field}.quantity_updates[{update['_new']}]"
        hour_aligned(at, f"{where}.starting_at")
        if at < start:
            raise InvalidInput(f"{where}.starting_at", "must not be before the subscription starts")
        if at >= end:
            raise InvalidInput(f"{where}.starting_at", "must be before the subscription ends")
    initial, changes = quantity_schedule(sub)
    for quantity, at in [(initial, start), *((c.quantity, c.starting_at) for c in changes)]:
        if quantity < 0:
            raise InvalidInput(
                f"{field}.quantity_updates", f"would make the quantity {quantity} from {format_rfc3339(at)}; it must not be negative"
            )


SEAT_UPDATE_KINDS = ("add_seat_ids", "add_unassigned_seats", "remove_seat_ids", "remove_unassigned_seats")


def seat_update_fields(changes: list[dict], field: str) -> list[str]:
    """The request field of each stored seat update of one subscription update (kept per kind, in
    the order sent: api/contract_edit_models.SeatUpdatesIn)."""
    counts: dict[str, int] = {}
    fields = []
    for change in changes:
        kind = next(k for k in SEAT_UPDATE_KINDS if k in change)
        fields.append(f"{field}.seat_updates.{kind}[{counts.get(kind, 0)}]")
        counts[kind] = counts.get(kind, 0) + 1
    return fields


def _check_seats(sub: dict, update: dict, field: str) -> None:
    """Seat updates only on SEAT_BASED subscriptions, on the hour and within the subscription."""
    seat_based = is_seat_based(sub)
    if update.get("seat_updates") and not seat_based:
        raise InvalidInput(f"{field}.seat_updates", "is only for SEAT_BASED subscriptions; this one is QUANTITY_ONLY")
    if update.get("quantity_updates") and seat_based:
        raise InvalidInput(f"{field}.quantity_updates", "a SEAT_BASED subscription's quantity changes through seat_updates")
    start, end = parse_rfc3339(sub["starting_at"]), _end(sub.get("ending_before"))
    new = update.get("seat_updates") or []
    for change, where in zip(new, seat_update_fields(new, field)):
        at = hour_aligned(parse_rfc3339(change["starting_at"]), f"{where}.starting_at")
        if at < start:
            raise InvalidInput(f"{where}.starting_at", "must not be before the subscription starts")
        if at >= end:
            raise InvalidInput(f"{where}.starting_at", "must be before the subscription ends")
    for change in sub.get("seat_updates") or ():
        if parse_rfc3339(change["starting_at"]) >= end:
            raise InvalidInput(
                f"{field}.ending_before", f"must be after the subscription's seat change at {change['starting_at']}"
            )


def _made_seat_based(sub: dict, mode: dict, field: str) -> None:
    """quantity_management_mode_update: a QUANTITY_ONLY subscription becomes SEAT_BASED. Its quantity
    so far becomes unassigned seats (initial quantity, then each change as unassigned seats added
    or removed), so its quantity history and what it was billed stay as they were; seat updates
    (of this update too) then assign and change seats."""
    where = f"{field}.quantity_management_mode_update"
    if is_seat_based(sub):
        raise InvalidInput(where, "the subscription is SEAT_BASED already")
    initial, changes = quantity_schedule(sub)
    for quantity in (initial, *(c.quantity for c in changes)):
        if quantity != quantity.to_integral_value():
            raise InvalidInput(where, f"the subscription's quantity {quantity} is not a whole number of seats")
    seat_updates, previous = [], initial
    for change in changes:
        delta = change.quantity - previous
        kind = "add_unassigned_seats" if delta > 0 else "remove_unassigned_seats"
        seat_updates.append({"starting_at": format_rfc3339(change.starting_at), kind: abs(delta)})
        previous = change.quantity
    sub["quantity_management_mode"] = "SEAT_BASED"
    sub["seat_config"] = {"seat_group_key": mode["seat_config"]["seat_group_key"], "initial_seat_ids": [],
                          "initial_unassigned_seats": initial}
    sub["initial_quantity"] = initial  # as a SEAT_BASED subscription keeps its initial seats
    sub.pop("quantity_updates", None)
    if seat_updates:
        sub["seat_updates"] = seat_updates


def _update_subscription(doc: dict, update: dict, field: str) -> None:
    sub = _find(doc.get("subscriptions") or [], update["id"], f"{field}.subscription_id", "a subscription")
    if "quantity_management_mode_update" in update:
        _made_seat_based(sub, update["quantity_management_mode_update"], field)
    if "ending_before" in update:
        if update["ending_before"] is None:
            sub.pop("ending_before", None)
        else:
            end = hour_aligned(parse_rfc3339(update["ending_before"]), f"{field}.ending_before")
            if end <= parse_rfc3339(sub["starting_at"]):
                raise InvalidInput(f"{field}.ending_before", "must be after the subscription starts")
            sub["ending_before"] = update["ending_before"]
    if "name" in update:
        sub["name"] = update["name"]
    if "proration_rounding" in update:
        _set(sub, "proration_rounding", update["proration_rounding"])
    if update.get("seat_updates"):
        sub["seat_updates"] = list(sub.get("seat_updates") or ()) + [dict(c) for c in update["seat_updates"]]
    _check_seats(sub, update, field)
    if update.get("quantity_updates"):
        # `_new` marks the changes this step adds (their index in the request) for _check_quantities.
        added = [dict(u, _new=j) for j, u in enumerate(update["quantity_updates"])]
        sub["quantity_updates"] = list(sub.get("quantity_updates") or ()) + added
    _check_quantities(sub, field)
    sub["quantity_updates"] = [{k: v for k, v in u.items() if k != "_new"} for u in sub.get("quantity_updates") or ()]
    if not sub["quantity_updates"]:
        sub.pop("quantity_updates")


def _update_scheduled_charge(doc: dict, update: dict, field: str) -> None:
    charge = _find(doc.get("scheduled_charges") or [], update["id"], f"{field}.scheduled_charge_id", "a scheduled charge")
    items = [dict(i) for i in charge["schedule_items"]]
    where = f"{field}.invoice_schedule"
    for j, item_id in enumerate(update.get("remove_schedule_items") or ()):
        _find(items, item_id, f"{where}.remove_schedule_items[{j}].id", "a schedule item of the charge")
        items = [i for i in items if i["id"] != item_id]
    for j, change in enumerate(update.get("update_schedule_items") or ()):
        item = _find(items, change["id"], f"{where}.update_schedule_items[{j}].id", "a schedule item of the charge")
        item.update({k: v for k, v in change.items() if k != "id"})
    items += [dict(i) for i in update.get("add_schedule_items") or ()]
    if not items:
        raise InvalidInput(f"{where}.remove_schedule_items", "would leave the charge without schedule items; archive it instead")
    charge["schedule_items"] = sorted(items, key=lambda i: (parse_rfc3339(i["timestamp"]), i["id"]))
    charge.pop("recurring_schedule", None)  # its items are no longer the ones the schedule made
    if "netsuite_sales_order_id" in update:
        charge["netsuite_sales_order_id"] = update["netsuite_sales_order_id"]


def _set(doc: dict, name: str, value) -> None:
    if value is None:
        doc.pop(name, None)
    else:
        doc[name] = value


def edit_steps(record: dict) -> Iterator[Step]:
    """The record's changes, one step per part, in the order they apply."""
    at = record["timestamp"]
    if "update_contract_name" in record:
        yield Step("update_contract_name", lambda d: _set(d, "name", record["update_contract_name"]))
    if "update_net_payment_terms_days" in record:
        yield Step("update_net_payment_terms_days", lambda d: _set(d, "net_payment_terms_days", record["update_net_payment_terms_days"]))
    if "update_contract_end_date" in record:
        yield Step("update_contract_end_date", lambda d: _set(d, "ending_before", record["update_contract_end_date"]))
    for i, override_id in enumerate(record.get("remove_overrides") or ()):
        field = f"remove_overrides[{i}].id"

        def remove(d: dict, override_id=override_id, field=field) -> None:
            _find(d.get("overrides") or [], override_id, field, "an override")
            d["overrides"] = [o for o in d["overrides"] if o["id"] != override_id]

        yield Step(field, remove)
    for kind in ("overrides", "subscriptions", "scheduled_charges", "commits", "credits"):
        if kind == "subscriptions":
            yield from _subscription_steps(record)
        if kind == "scheduled_charges":
            for i, charge_id in enumerate(record.get("archive_scheduled_charges") or ()):
                field = f"archive_scheduled_charges[{i}].id"
                yield Step(field, lambda d, c=charge_id, f=field: _archive(d, "scheduled_charges", c, f, "a scheduled charge", at))
            for i, update in enumerate(record.get("update_scheduled_charges") or ()):
                field = f"update_scheduled_charges[{i}]"
                yield Step(field, lambda d, u=update, f=field: _update_scheduled_charge(d, u, f))
        if kind in ("commits", "credits"):
            for i, grant_id in enumerate(record.get(f"archive_{kind}") or ()):
                field = f"archive_{kind}[{i}].id"
                what = "a commit" if kind == "commits" else "a credit"
                yield Step(field, lambda d, g=grant_id, f=field, k=kind, w=what: _archive(d, k, g, f, w, at))
        if kind != "subscriptions":
            for i, item in enumerate(record.get(f"add_{kind}") or ()):
                field = f"add_{kind}[{i}]"
                yield Step(field, lambda d, k=kind, x=item: d.setdefault(k, []).append(copy.deepcopy(x)))
    for field, change in recurring_grants.edit_parts(record):
        yield Step(field, change)
    for field, change in thresholds.edit_parts(record):
        yield Step(field, change)
    for field, change in spend_trackers.edit_parts(record):  # after caps changed: an archive checks them
        yield Step(field, change)
    for field, change in reseller_royalties.edit_parts(record):
        yield Step(field, change)
    for field, change in grant_edits.edit_parts(record):
        yield Step(field, change)
    for field, change in usage_filter_edits.edit_parts(record):
        yield Step(field, change)
    for field, change in contract_billing_providers.edit_parts(record):
        yield Step(field, change)
    if "amendment" in record:
        yield Step("amendment", lambda d: _record_amendment(d, record))


def _record_amendment(doc: dict, record: dict) -> None:
    """An amendment (POST /v1/contracts/amend) is listed on the contract with the parts it added."""
    parts = {kind: [part["id"] for part in record.get(f"add_{kind}") or ()]
             for kind in ("overrides", "scheduled_charges", "commits", "credits", "discounts", "professional_services")}
    entry = {"id": record["id"], "created_at": record["timestamp"], "created_by": record.get("created_by")}
    doc.setdefault("amendments", []).append(entry | record["amendment"] | parts)


def _subscription_steps(record: dict) -> Iterator[Step]:
    for i, sub in enumerate(record.get("add_subscriptions") or ()):
        yield Step(f"add_subscriptions[{i}]", lambda d, s=sub: d.setdefault("subscriptions", []).append(copy.deepcopy(s)))
    for i, update in enumerate(record.get("update_subscriptions") or ()):
        field = f"update_subscriptions[{i}]"
        yield Step(field, lambda d, u=update, f=field: _update_subscription(d, u, f))


def apply_edit(document: dict, record: dict, steps: int | None = None) -> dict:
    """The contract after the record's changes (the first `steps` of them). Pure: the input is not
    changed. InvalidInput names the request field of a change that refers to nothing."""
    changed = copy.deepcopy({k: v for k, v in document.items() if k != "_version"})
    for index, step in enumerate(edit_steps(record)):
        if steps is not None and index >= steps:
            break
        step.apply(changed)
    if "_version" in document:
        changed["_version"] = document["_version"]
    return changed


def _element_fields(record: dict) -> dict[str, str]:
    """Element id -> the request field that added or changed it, to name fields in errors."""
    fields: dict[str, str] = {}
    added = ("overrides", "subscriptions", "scheduled_charges", "commits", "credits", "recurring_commits",
             "recurring_credits", "discounts", "professional_services")
    for kind in added:
        for i, item in enumerate(record.get(f"add_{kind}") or ()):
            fields[item["id"]] = f"add_{kind}[{i}]"
    for kind in ("subscriptions", "scheduled_charges", "recurring_commits", "recurring_credits"):
        for i, update in enumerate(record.get(f"update_{kind}") or ()):
            fields.setdefault(update["id"], f"update_{kind}[{i}]")
    for grant_id, field in grant_edits.edit_fields(record).items():
        fields.setdefault(grant_id, field)
    return fields


def _request_field(error: InvalidInput, document: dict, record: dict) -> InvalidInput:
    """An error the engine raised naming the edited document's field, renamed to the request's."""
    renamed = (
        thresholds.request_field(error, record)
        or spend_trackers.request_field(error, document, record)
        or reseller_royalties.request_field(error, document, record)
    )
    if renamed is not None:
        return renamed
    fields = _element_fields(record)
    head, dot, rest = error.field.partition(".")
    kind, _, index = head.partition("[")
    if index.endswith("]") and index[:-1].isdigit():
        items = document.get(kind) or []
        position = int(index[:-1])
        if position < len(items) and items[position].get("id") in fields:
            return InvalidInput(fields[items[position]["id"]] + dot + rest, error.rule)
    if "update_contract_end_date" in record:
        return InvalidInput("update_contract_end_date", error.rule)
    return error


# -- finalized periods ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Finalized:
    """A contract's finalized invoices, as edits must leave them."""

    usage_until: datetime | None  # the end of the last finalized USAGE period
    scheduled: dict[str, datetime]  # finalized SCHEDULED invoices: slot -> issue instant
    # scheduled_charges_on_usage_invoices ALL: a charge at usage_until is billed on that finalized
    # USAGE invoice, so it is refused like one issued on a finalized SCHEDULED invoice.
    consolidated: bool = False
    # access segment id -> (drawn, first, last instant) by finalized invoices (grant_edits.drawn_by_finalized)
    drawn: dict = dataclasses.field(default_factory=dict)
    # A parent contract's: each child customer's record count when `drawn` was read (services/hierarchy.py).
    children_written: tuple = ()

    @staticmethod
    def of(records: list[StoredInvoice], contract_id: str) -> Finalized:
        final = [r for r in records if r.contract_id == contract_id and r.status == FINALIZED]
        usage = [r.period_end for r in final if r.type is InvoiceType.USAGE]
        return Finalized(
            max(usage) if usage else None,
            {r.slot: r.invoice.starting_at for r in final if r.type is InvoiceType.SCHEDULED},
            drawn=grant_edits.drawn_by_finalized(final, contract_id),
        )

    def check(self, field: str, instant: datetime, issued: bool = False) -> None:
        """Refuse a change effective at `instant` (and, `issued`, landing on a SCHEDULED invoice then)."""
        if self.usage_until is not None and instant < self.usage_until:
            raise InvalidInput(
                field,
                f"is before {format_rfc3339(self.usage_until)}, the end of the contract's last finalized billing "
                "period; a finalized invoice never changes (void and regenerate it to bill a change)",
            )
        if issued and self.consolidated and instant == self.usage_until:
            raise InvalidInput(
                field,
                f"falls at {format_rfc3339(instant)}, the end of the contract's last finalized billing period, whose "
                "finalized usage invoice bills it (scheduled_charges_on_usage_invoices); a finalized invoice never changes",
            )
        if issued and instant in self.scheduled.values():
            raise InvalidInput(
                field, f"falls on the finalized invoice issued at {format_rfc3339(instant)}; a finalized invoice never changes"
            )


def _check_dates(old: dict, record: dict, finalized: Finalized, allow_ending_before_finalized: bool) -> None:
    """The date rules: nothing effective before the last finalized USAGE period ends, nothing issued
    on a finalized SCHEDULED invoice."""
    if finalized.usage_until is None and not finalized.scheduled and not finalized.drawn:
        return  # (a parent's grants can be drawn by its children's finalized invoices alone)
    if "amendment" in record:  # effective from its start, whatever its parts say
        finalized.check("starting_at", parse_rfc3339(record["amendment"]["starting_at"]))
    for i, override in enumerate(record.get("add_overrides") or ()):
        finalized.check(f"add_overrides[{i}].starting_at", parse_rfc3339(override["starting_at"]))
    for i, override_id in enumerate(record.get("remove_overrides") or ()):
        override = next((o for o in old.get("overrides") or () if o["id"] == override_id), None)
        if override is not None:
            finalized.check(f"remove_overrides[{i}].id", parse_rfc3339(override["starting_at"]))
    for i, sub in enumerate(record.get("add_subscriptions") or ()):
        finalized.check(f"add_subscriptions[{i}].starting_at", parse_rfc3339(sub["starting_at"]))
    for i, update in enumerate(record.get("update_subscriptions") or ()):
        for j, change in enumerate(update.get("quantity_updates") or ()):
            finalized.check(f"update_subscriptions[{i}].quantity_updates[{j}].starting_at", parse_rfc3339(change["starting_at"]))
        seat_changes = update.get("seat_updates") or []
        for change, where in zip(seat_changes, seat_update_fields(seat_changes, f"update_subscriptions[{i}]")):
            finalized.check(f"{where}.starting_at", parse_rfc3339(change["starting_at"]))
        if "ending_before" in update:
            sub = next((s for s in old.get("subscriptions") or () if s["id"] == update["id"]), None)
            if sub is not None:
                finalized.check(f"update_subscriptions[{i}].ending_before",
                                min(_end(sub.get("ending_before")), _end(update["ending_before"])))
    charges = {c["id"]: c for c in old.get("scheduled_charges") or ()}
    for i, charge in enumerate(record.get("add_scheduled_charges") or ()):
        for j, item in enumerate(charge["schedule_items"]):
            finalized.check(f"add_scheduled_charges[{i}].schedule.schedule_items[{j}].timestamp", parse_rfc3339(item["timestamp"]), True)
    for i, charge_id in enumerate(record.get("archive_scheduled_charges") or ()):
        for item in charges.get(charge_id, {}).get("schedule_items") or ():
            finalized.check(f"archive_scheduled_charges[{i}].id", parse_rfc3339(item["timestamp"]), True)
    for i, update in enumerate(record.get("update_scheduled_charges") or ()):
        where = f"update_scheduled_charges[{i}].invoice_schedule"
        items = {item["id"]: item for item in charges.get(update["id"], {}).get("schedule_items") or ()}
        for j, item in enumerate(update.get("add_schedule_items") or ()):
            finalized.check(f"{where}.add_schedule_items[{j}].timestamp", parse_rfc3339(item["timestamp"]), True)
        for j, item_id in enumerate(update.get("remove_schedule_items") or ()):
            if item_id in items:
                finalized.check(f"{where}.remove_schedule_items[{j}].id", parse_rfc3339(items[item_id]["timestamp"]), True)
        for j, change in enumerate(update.get("update_schedule_items") or ()):
            if change["id"] in items:
                finalized.check(f"{where}.update_schedule_items[{j}].id", parse_rfc3339(items[change["id"]]["timestamp"]), True)
            if "timestamp" in change:
                finalized.check(f"{where}.update_schedule_items[{j}].timestamp", parse_rfc3339(change["timestamp"]), True)
    for i, commit in enumerate(record.get("add_commits") or ()):
        for j, item in enumerate(commit.get("invoice_schedule") or ()):
            finalized.check(f"add_commits[{i}].invoice_schedule.schedule_items[{j}].timestamp", parse_rfc3339(item["timestamp"]), True)
    for field, instant, issued in recurring_grants.edit_dates(old, record):
        finalized.check(field, instant, issued)
    grant_edits.check_finalized(old, record, finalized)
    for field, instant in usage_filter_edits.edit_dates(record):
        finalized.check(field, instant)
    if "update_contract_end_date" in record and not allow_ending_before_finalized:
        end = min(_end(old.get("ending_before")), _end(record["update_contract_end_date"]))
        if finalized.usage_until is not None and end < finalized.usage_until:
            raise InvalidInput(
                "update_contract_end_date",
                f"is before {format_rfc3339(finalized.usage_until)}, the end of the contract's last finalized billing period "
                "(send allow_contract_ending_before_finalized_invoice true to end it anyway; finalized invoices stay as they are)",
            )


# -- the service ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedEdit:
    """An edit checked and ready to write (ContractEditService.checked)."""

    record: dict  # the edit history entry; its sequence is the version the write makes
    document: dict  # the contract as edited
    invoices_written: int | None  # the customer's invoice record count it was checked against
    children_written: tuple = ()  # (child customer, record count): a hierarchy parent's children


class ContractEditService:
    def __init__(
        self,
        contracts: ContractService,
        store: ContractEditStore,
        invoices: FinalizedInvoices | None,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._contracts = contracts
        self._store = store
        self._invoices = invoices
        self._clock = clock
        self._sleep = sleep

    def history(self, customer_id: str, contract_id: str) -> list[dict]:
        self._contracts.get(customer_id, contract_id)
        return self._store.edits(contract_id)

    def as_of(self, customer_id: str, contract_id: str, at: datetime) -> dict:
        """The contract as it was at `at` (v2 get's as_of_date): as the first edit made after `at`
        found it (each edit keeps the version it changes), or as stored when no edit came later.
        An archive after `at` is not shown."""
        document = self._contracts.get(customer_id, contract_id)
        if at < parse_rfc3339(document["created_at"]):
            raise InvalidInput("as_of_date", f"is before the contract was created ({document['created_at']})")
        later = [r for r in self._store.edits(contract_id) if parse_rfc3339(r["timestamp"]) > at]
        if later:
            before = self._store.version(contract_id, later[0]["sequence"] - 1)
            if before is None:
                raise InvalidInput("as_of_date", f"is before {later[0]['timestamp']}, an edit made before versions were kept")
            document = before
        if document.get("archived_at") and parse_rfc3339(document["archived_at"]) > at:
            document = {k: v for k, v in document.items() if k != "archived_at"}
        return document

    def edit(
        self,
        customer_id: str,
        contract_id: str,
        changes: dict,
        *,
        author: str | None,
        uniqueness_key: str | None = None,
        allow_ending_before_finalized: bool = True,
    ) -> dict:
        """Apply `changes` (api/contract_edit_models.py's normalized request) to the contract and
        record them as one edit; returns the record. Nothing is written unless the edited contract
        validates and leaves every finalized invoice as it is."""
        if not any(key in changes for key in CHANGE_KEYS):
            raise InvalidInput("body", "an edit must change something (add_*, update_*, archive_* or remove_overrides)")
        document = self._contracts.get(customer_id, contract_id)
        record = self.new_record(document, changes, author, uniqueness_key)
        for _ in range(MAX_ATTEMPTS):
            if uniqueness_key is not None and self._store.edit_claimed(contract_id, uniqueness_key):
                raise Conflict(f"an edit with uniqueness_key {uniqueness_key!r} was already made to this contract")
            if document.get("archived_at"):
                raise InvalidInput("contract_id", "the contract is archived")
            plan = self.checked(document, record, allow_ending_before_finalized)
            self._store.keep_version(document)  # what as_of shows before this edit
            try:
                # Conditional on the contract's version and on the invoices counted: an invoice
                # finalized meanwhile is seen by the retry.
                children = plan.children_written
                self._store.commit_edit(plan.document, plan.record, uniqueness_key, plan.invoices_written,
                                        **({"others_written": children} if children else {}))
            except ContractChanged:
                document = self._contracts.get(customer_id, contract_id)
                continue
            return record
        raise Conflict("the contract kept changing while this edit was applied; retry it")

    def new_record(self, document: dict, changes: dict, author: str | None, uniqueness_key: str | None) -> dict:
        """The edit history entry for `changes` to `document`: the changes with ids and defaults
        resolved, made once so that a retry records the same ids."""
        now = format_rfc3339(self._clock())
        record: dict = {
            "id": _new_id(),
            "contract_id": document["id"],
            "customer_id": document["customer_id"],
            "timestamp": now,
            "created_by": author,
        }
        if uniqueness_key is not None:
            record["uniqueness_key"] = uniqueness_key
        for key in CHANGE_KEYS:
            if key in changes:
                record[key] = copy.deepcopy(changes[key])
        for item in record.get("add_overrides") or ():
            item.update(id=_new_id(), created_at=now)
        for sub in record.get("add_subscriptions") or ():
            sub.update(id=_new_id(), created_at=now, starting_at=sub.get("starting_at") or document["starting_at"])
        for charge in record.get("add_scheduled_charges") or ():
            charge["id"] = _new_id()
            charge["schedule_items"] = [dict(i, id=_new_id()) for i in charge["schedule_items"]]
        for update in record.get("update_scheduled_charges") or ():
            if update.get("add_schedule_items"):
                update["add_schedule_items"] = [dict(i, id=_new_id()) for i in update["add_schedule_items"]]
        for kind in ("add_commits", "add_credits"):
            for grant in record.get(kind) or ():
                grant.setdefault("created_at", now)
        recurring_grants.give_ids(record, _new_id)
        grant_edits.give_ids(record, _new_id)
        thresholds.give_ids(record, _new_id)
        if contract_billing_providers.EDIT_KEY in record:  # its schedule against the billing periods now
            contract_billing_providers.give_instant(record, self._contracts.contract(document), now)
        return record

    def checked(self, document: dict, record: dict, allow_ending_before_finalized: bool) -> PlannedEdit:
        """The edit `record` (new_record) makes to `document` as read, validated and checked against
        the finalized invoices (InvalidInput naming the request field), not written. The caller
        writes it conditional on the document's version and the counts it was checked against:
        `edit`, or ContractTransitionService in one transaction with the contract taking over."""
        record["sequence"] = document["_version"] + 1
        written, finalized = self._finalized(document)
        edited = self._edited(document, record, finalized, allow_ending_before_finalized)
        return PlannedEdit(record, edited, written, finalized.children_written)

    def _edited(self, document: dict, record: dict, finalized: Finalized, allow_ending_before_finalized: bool) -> dict:
        edited = apply_edit(document, record)
        try:
            self._contracts.validate(edited)
        except InvalidInput as exc:
            raise _request_field(exc, edited, record) from exc
        _check_dates(document, record, finalized, allow_ending_before_finalized)
        if finalized.scheduled:
            self._check_scheduled(document, record, finalized, allow_ending_before_finalized)
        return edited

    def _finalized(self, document: dict) -> tuple[int | None, Finalized]:
        """How many invoice records the customer has, and the contract's finalized invoices. The
        listing is an index read that may lag the count: read again until it holds them all."""
        if self._invoices is None:
            return None, Finalized(None, {})
        customer_id = document["customer_id"]
        for attempt in range(MAX_ATTEMPTS):
            written = self._invoices.records_written(customer_id)
            records = self._invoices.list_for_customer(customer_id)
            if len(records) >= written:
                consolidated = document.get("scheduled_charges_on_usage_invoices") == "ALL"
                finalized = replace(Finalized.of(records, document["id"]), consolidated=consolidated)
                # A parent's grants are also drawn by its children's finalized invoices (no reads without children).
                counts, theirs = children_finalized(document, self._invoices, self._sleep)
                return written, replace(finalized, drawn=merged_drawn(finalized.drawn, theirs), children_written=counts)
            self._sleep(0.05 * 2**attempt)
        raise StoreUnavailable(f"the invoice index of customer {customer_id} lags behind; retry")

    def _check_scheduled(self, document: dict, record: dict, finalized: Finalized, allow_end: bool) -> None:
        """Finalized SCHEDULED invoices priced from the contract before and after the edit must be
        equal (they never read usage). If not, the first change that alters one is named."""
        rate_card = self._contracts.rate_card_of(document)
        products = self._contracts.products()

        def priced(doc: dict) -> dict[str, tuple] | None:
            try:
                contract = contract_from_document(doc, rate_card)
                found: dict[str, tuple] = {}
                periods = {contract.period_containing(at) for at in finalized.scheduled.values()} - {None}
                for period in sorted(periods, key=lambda p: p.starting_at):
                    for invoice in build_draft_invoices(contract, products, period, NO_USAGE):
                        slot = invoice_id(contract.id, invoice.starting_at, invoice.credit_type, invoice.type)
                        if slot in finalized.scheduled:
                            found[slot] = invoice.line_items
                return found
            except InvalidInput:
                return None  # a state part-way through an edit need not be a valid contract

        before, after = priced(document), priced(apply_edit(document, record))
        if before == after:
            return
        previous = before
        for index, step in enumerate(edit_steps(record)):
            current = priced(apply_edit(document, record, index + 1))
            if current is None:
                continue
            if current != previous and not (step.field == "update_contract_end_date" and allow_end):
                changed = sorted(
                    finalized.scheduled[slot]
                    for slot in finalized.scheduled
                    if (previous or {}).get(slot) != current.get(slot)
                )
                raise InvalidInput(
                    _step_field(step.field, record),
                    f"would change the finalized invoice issued at {format_rfc3339(changed[0])}; a finalized invoice never "
                    "changes (make the change effective after it, or void and regenerate it)",
                )
            previous = current


def _step_field(field: str, record: dict) -> str:
    """The most precise request field of a step (its effective date where it has one)."""
    if field.startswith("add_overrides[") or field.startswith("add_subscriptions["):
        return f"{field}.starting_at"
    if field.startswith("update_subscriptions["):
        update = record["update_subscriptions"][int(field[len("update_subscriptions["):-1])]
        if update.get("quantity_updates"):
            return f"{field}.quantity_updates"
        if update.get("seat_updates"):
            return f"{field}.seat_updates"
        if "proration_rounding" in update:
            return f"{field}.proration_rounding"
        if "ending_before" in update:
            return f"{field}.ending_before"
    return field
