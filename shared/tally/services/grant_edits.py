"""Edits of a contract's commits and credits: the edit's `update_commits` and `update_credits`, and
`POST /v2/contracts/commits/edit` and `/credits/edit`, which are the same change made alone.

An update is stored in the edit record in the shape of Metronome's edit history (types/v2/
contract_get_edit_history_response.py DataUpdateCommit): the grant's `id`, `access_schedule` and
(commits) `invoice_schedule` with `add_schedule_items` (given ids here), `remove_schedule_items`
({"id"}) and `update_schedule_items`, and the fields it sets (name, description, priority,
product_id, applicable_product_ids/tags, specifiers, rate_type, rollover_fraction,
netsuite_sales_order_id). Applying it to the contract document is pure (`edit_parts`).

A finalized invoice never changes, and neither does what it drew (`check_finalized`):
- an invoice schedule item on a finalized invoice is neither removed nor changed, and no item is
  added or moved onto one or into a finalized period (contract_edits.Finalized.check);
- an access segment a finalized invoice drew from is not removed, its amount does not go below
  what finalized invoices drew, and its dates keep every finalized drawdown inside it.
What changes which grant pays (products, priority, rate type) applies to drafts only: finalized
drawdowns are replayed as they were stored.
"""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from typing import Callable, Iterator, Mapping

from tally.billing.errors import InvalidInput
from tally.billing.time import format_rfc3339, parse_rfc3339

EDIT_KEYS = ("update_commits", "update_credits")
SETTABLE = (
    "name", "description", "priority", "product_id", "applicable_product_ids", "applicable_product_tags",
    "specifiers", "rate_type", "rollover_fraction", "netsuite_sales_order_id", "hierarchy_configuration",
)
# Lists the documents always carry (an unset list is empty, never None).
LISTS = ("applicable_product_ids", "applicable_product_tags", "specifiers")


def _what(kind: str) -> tuple[str, str]:
    return ("a commit", "commit_id") if kind == "commits" else ("a credit", "credit_id")


def give_ids(record: dict, new_id: Callable[[], str]) -> None:
    """Ids for the schedule items an update adds, made once so that a retried edit records the same."""
    for key in EDIT_KEYS:
        for update in record.get(key) or ():
            for schedule in ("access_schedule", "invoice_schedule"):
                part = update.get(schedule) or {}
                if part.get("add_schedule_items"):
                    part["add_schedule_items"] = [dict(i, id=new_id()) for i in part["add_schedule_items"]]


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    """(request field, change to the contract document) for each grant the record updates."""
    for key in EDIT_KEYS:
        for i, update in enumerate(record.get(key) or ()):
            field = f"{key}[{i}]"
            yield field, lambda d, k=key[len("update_"):], u=update, f=field: _update_grant(d, k, u, f)


def _find(items: list[dict], item_id: str, field: str, what: str) -> dict:
    for item in items:
        if item["id"] == item_id:
            return item
    raise InvalidInput(field, f"is not {what}")


def _update_grant(doc: dict, kind: str, update: dict, field: str) -> None:
    what, id_field = _what(kind)
    grant = _find(doc.get(kind) or [], update["id"], f"{field}.{id_field}", f"{what} of the contract")
    access = update.get("access_schedule") or {}
    where = f"{field}.access_schedule"
    segments = [dict(s) for s in grant["access_schedule"]]
    for j, ref in enumerate(access.get("remove_schedule_items") or ()):
        _find(segments, ref["id"], f"{where}.remove_schedule_items[{j}].id", "an access schedule item of the grant")
        segments = [s for s in segments if s["id"] != ref["id"]]
    for j, change in enumerate(access.get("update_schedule_items") or ()):
        segment = _find(segments, change["id"], f"{where}.update_schedule_items[{j}].id", "an access schedule item of the grant")
        segment.update({k: v for k, v in change.items() if k != "id"})
    segments += [dict(s) for s in access.get("add_schedule_items") or ()]
    if not segments:
        raise InvalidInput(f"{where}.remove_schedule_items", "would leave the grant without access; archive it instead")
    grant["access_schedule"] = sorted(segments, key=lambda s: (parse_rfc3339(s["starting_at"]), s["id"]))
    invoices = update.get("invoice_schedule") or {}
    if invoices:
        where = f"{field}.invoice_schedule"
        items = [dict(i) for i in grant.get("invoice_schedule") or ()]
        for j, ref in enumerate(invoices.get("remove_schedule_items") or ()):
            _find(items, ref["id"], f"{where}.remove_schedule_items[{j}].id", "an invoice schedule item of the commit")
            items = [i for i in items if i["id"] != ref["id"]]
        for j, change in enumerate(invoices.get("update_schedule_items") or ()):
            item = _find(items, change["id"], f"{where}.update_schedule_items[{j}].id", "an invoice schedule item of the commit")
            _reprice(item, change)
        for added in invoices.get("add_schedule_items") or ():
            item = {"id": added["id"], "timestamp": added["timestamp"]}
            _reprice(item, added)
            items.append(item)
        grant["invoice_schedule"] = sorted(items, key=lambda i: (parse_rfc3339(i["timestamp"]), i["id"]))
    for name in SETTABLE:
        if name in update:
            grant[name] = (update[name] or []) if name in LISTS else update[name]


def _reprice(item: dict, change: Mapping) -> None:
    """An invoice item's price after a change: an amount alone is a quantity of 1 at that price
    (Metronome), else quantity x unit_price, a part not given keeping its value."""
    if "timestamp" in change:
        item["timestamp"] = change["timestamp"]
    if change.get("amount") is not None:
        item.update(amount=change["amount"], quantity=Decimal(1), unit_price=change["amount"])
    elif change.get("quantity") is not None or change.get("unit_price") is not None:
        quantity = change.get("quantity", item.get("quantity"))
        unit_price = change.get("unit_price", item.get("unit_price"))
        if quantity is None or unit_price is None:
            raise InvalidInput("unit_price", "give amount, or quantity with unit_price")
        item.update(quantity=quantity, unit_price=unit_price, amount=quantity * unit_price)


def edit_fields(record: dict) -> dict[str, str]:
    """Grant id -> the request field that updated it (contract_edits names validation errors so)."""
    return {u["id"]: f"{key}[{i}]" for key in EDIT_KEYS for i, u in enumerate(record.get(key) or ())}


# -- what finalized invoices fix -------------------------------------------------------------------
def drawn_by_finalized(records, contract_id: str | None) -> dict[str, tuple[Decimal, datetime, datetime]]:
    """segment id -> (balance finalized invoices of the contract (None: of every contract) drew
    from it, first and last instant of those charges)."""
    drawn: dict[str, tuple[Decimal, datetime, datetime]] = {}
    for record in records:
        if (contract_id is not None and record.contract_id != contract_id) or record.status != "FINALIZED":
            continue
        for charge in record.drawdowns:
            last_at = charge.starting_at if charge.ending_before is None else charge.ending_before
            for application in charge.applications or ():
                total, first, last = drawn.get(application.segment_id, (Decimal(0), charge.starting_at, last_at))
                drawn[application.segment_id] = (
                    total + application.balance_consumed, min(first, charge.starting_at), max(last, last_at)
                )
    return drawn


def check_finalized(old: dict, record: dict, finalized) -> None:
    """Refuse, naming the field, an update that would change a finalized invoice or what one drew
    (`finalized`: contract_edits.Finalized, with `drawn` from drawn_by_finalized)."""
    for key in EDIT_KEYS:
        kind = key[len("update_"):]
        grants = {g["id"]: g for g in old.get(kind) or ()}
        for i, update in enumerate(record.get(key) or ()):
            grant = grants.get(update["id"])
            if grant is None:
                continue  # apply_edit names it
            field = f"{key}[{i}]"
            _check_access(grant, update.get("access_schedule") or {}, f"{field}.access_schedule", finalized.drawn)
            _check_invoices(grant, update.get("invoice_schedule") or {}, f"{field}.invoice_schedule", finalized)


def _check_access(grant: dict, access: dict, where: str, drawn: Mapping) -> None:
    for j, ref in enumerate(access.get("remove_schedule_items") or ()):
        if ref["id"] in drawn:
            raise InvalidInput(
                f"{where}.remove_schedule_items[{j}].id",
                f"finalized invoices drew {drawn[ref['id']][0]} from this access schedule item; a finalized drawdown "
                "never changes (void those invoices first)",
            )
    for j, change in enumerate(access.get("update_schedule_items") or ()):
        if change["id"] not in drawn:
            continue
        total, first, last = drawn[change["id"]]
        at = f"{where}.update_schedule_items[{j}]"
        if "amount" in change and Decimal(change["amount"]) < total:
            raise InvalidInput(f"{at}.amount", f"must be at least {total}, what finalized invoices drew from it")
        if "starting_at" in change and parse_rfc3339(change["starting_at"]) > first:
            raise InvalidInput(
                f"{at}.starting_at", f"must not be after {format_rfc3339(first)}, when a finalized invoice drew from it"
            )
        if "ending_before" in change and parse_rfc3339(change["ending_before"]) < last:
            raise InvalidInput(
                f"{at}.ending_before", f"must not be before {format_rfc3339(last)}, when a finalized invoice drew from it"
            )


def _check_invoices(grant: dict, invoices: dict, where: str, finalized) -> None:
    items = {i["id"]: i for i in grant.get("invoice_schedule") or ()}
    for j, ref in enumerate(invoices.get("remove_schedule_items") or ()):
        if ref["id"] in items:
            finalized.check(f"{where}.remove_schedule_items[{j}].id", parse_rfc3339(items[ref["id"]]["timestamp"]), True)
    for j, change in enumerate(invoices.get("update_schedule_items") or ()):
        if change["id"] in items:
            finalized.check(f"{where}.update_schedule_items[{j}].id", parse_rfc3339(items[change["id"]]["timestamp"]), True)
        if "timestamp" in change:
            finalized.check(f"{where}.update_schedule_items[{j}].timestamp", parse_rfc3339(change["timestamp"]), True)
    for j, item in enumerate(invoices.get("add_schedule_items") or ()):
        finalized.check(f"{where}.add_schedule_items[{j}].timestamp", parse_rfc3339(item["timestamp"]), True)


def update_json(update: dict) -> dict:
    """An update as the edit history shows it (it is stored in that shape)."""
    return copy.deepcopy(update)


def edit_grant(edits, contracts, customer_id: str, kind: str, update: dict, author: str | None,
               customer_grants=None) -> dict:
    """POST /v2/contracts/commits/edit and /credits/edit: `update` made to the contract holding the
    grant, as an edit of that contract with this one change (recorded in its history), or to a
    customer-level grant (`customer_grants`: services/customer_grant_edits.py; no contract, so no
    history entry)."""
    what, id_field = _what(kind)
    try:
        for document in contracts.list(customer_id):
            if any(g["id"] == update["id"] for g in document.get(kind) or ()):
                return edits.edit(customer_id, document["id"], {f"update_{kind}": [update]}, author=author)
        if customer_grants is not None and customer_grants.owns(customer_id, kind, update["id"]):
            return customer_grants.edit(customer_id, kind, update)
    except InvalidInput as exc:
        raise InvalidInput(_top_field(exc.field, kind), exc.rule) from exc
    raise InvalidInput(id_field, f"is not {what} of the customer (of a live contract, or customer-level)")


def _top_field(field: str, kind: str) -> str:
    """update_commits[0].access_schedule... -> access_schedule... (the route's body is the update)."""
    prefix = f"update_{kind}[0]"
    if field == prefix:
        return _what(kind)[1]
    if field.startswith(prefix + "."):
        rest = field[len(prefix) + 1:]
        return rest
    return field
