"""Contract edits on the Metronome-compatible API: `POST /v2/contracts/edit` and
`/v2/contracts/getEditHistory` request bodies (metronome-sdk types/v2/contract_edit_params.py,
contract_get_edit_history_params.py), the normalized changes they become
(services/contract_edits.py), and the JSON of an edit (contract_edit_response.py,
contract_get_edit_history_response.py).

Added parts take the same request models as contract and commit creation, so they are checked and
normalized by one code path. Edit fields the engine cannot do yet are refused by name (400 "... is
not supported yet") rather than accepted and ignored; an empty list is fine.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field

from tally.api.balance_models import CommitIn, CreditIn
from tally.api.billing_provider_models import BillingProviderConfigurationUpdateIn
from tally.api.contract_models import (
    ContractView,
    DiscountIn,
    ProfessionalServiceIn,
    _discount_json,
    _pro_service_json,
    OverrideIn,
    ProrationRoundingIn,
    ScheduledChargeIn,
    SeatId,
    SubscriptionIn,
    seat_ids_document,
    _override_json,
    _scheduled_charge_json,
    _subscription_json,
)
from tally.api.grant_edit_models import CommitUpdateIn, CreditUpdateIn
from tally.api.spend_tracker_models import (
    Alias,
    ContractCommitIn,
    ResellerRoyaltyChangeIn,
    SpendTrackerIn,
    royalty_segment_json,
)
from tally.api.models import MAX_NAME_LENGTH, Request, parse_instant
from tally.api.recurring_models import (
    RecurringCommitIn,
    RecurringCommitUpdateIn,
    RecurringCreditIn,
    RecurringCreditUpdateIn,
    recurring_grant_json,
)
from tally.api.threshold_models import (
    PrepaidBalanceThresholdConfigurationIn,
    SpendThresholdConfigurationIn,
    UpdatePrepaidBalanceThresholdConfigurationIn,
    UpdateSpendThresholdConfigurationIn,
    threshold_edit_changes,
)
from tally.api.usage_filter_models import added_usage_filters_json
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH, MAX_IDS_PER_REQUEST, MAX_PROPERTY_NAME_LENGTH
from tally.billing.pricing import Contract, Product
from tally.billing.pricing.seats import seat_count
from tally.billing.time import format_rfc3339
from tally.services.contract_billing_providers import history_json as billing_provider_history_json
from tally.services.grant_edits import update_json
from tally.services.thresholds import threshold_config_json, threshold_update_json

# Parts one edit may name in each list: an edit is a handful of changes, and each is validated
# against the whole contract.
MAX_PARTS = MAX_IDS_PER_REQUEST

# Edit fields of metronome-sdk 4.x the engine cannot do yet.
UNSUPPORTED = ("add_revenue_system_configuration_update",)

Id = Field(min_length=1, max_length=MAX_ID_LENGTH)


def _instant(field: str, value: str) -> str:
    instant = parse_instant(field, value)
    assert instant is not None
    return format_rfc3339(instant)


class IdRef(Request):
    id: str = Id


class QuantityUpdateIn(Request):
    starting_at: str
    quantity: Decimal | None = None
    quantity_delta: Decimal | None = None

    def to_change(self, path: str) -> dict:
        if (self.quantity is None) == (self.quantity_delta is None):
            raise InvalidInput(f"{path}.quantity", "give exactly one of quantity or quantity_delta")
        if self.quantity is not None and self.quantity < 0:
            raise InvalidInput(f"{path}.quantity", "must not be negative")
        if self.quantity_delta is not None and self.quantity_delta == 0:
            raise InvalidInput(f"{path}.quantity_delta", "must not be zero")
        change: dict[str, Any] = {"starting_at": _instant(f"{path}.starting_at", self.starting_at)}
        if self.quantity is not None:
            change["quantity"] = self.quantity
        else:
            change["quantity_delta"] = self.quantity_delta
        return change


class SeatIdsChangeIn(Request):
    seat_ids: list[SeatId] = Field(min_length=1, max_length=MAX_PARTS)
    starting_at: str


class UnassignedSeatsChangeIn(Request):
    quantity: Decimal
    starting_at: str


class SeatUpdatesIn(Request):
    add_seat_ids: list[SeatIdsChangeIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_unassigned_seats: list[UnassignedSeatsChangeIn] | None = Field(default=None, max_length=MAX_PARTS)
    remove_seat_ids: list[SeatIdsChangeIn] | None = Field(default=None, max_length=MAX_PARTS)
    remove_unassigned_seats: list[UnassignedSeatsChangeIn] | None = Field(default=None, max_length=MAX_PARTS)

    def to_changes(self, path: str) -> list[dict]:
        """One stored seat update per change, in the order they apply at one instant: the SDK's
        field order (seat ids added, unassigned seats added, seat ids removed, unassigned removed),
        each kind in the order sent (so `seat_update_fields` can name them again)."""
        changes: list[dict] = []
        for kind in ("add_seat_ids", "remove_seat_ids"):
            for j, change in enumerate(getattr(self, kind) or ()):
                where = f"{path}.{kind}[{j}]"
                changes.append(
                    {
                        "starting_at": _instant(f"{where}.starting_at", change.starting_at),
                        kind: seat_ids_document(change.seat_ids, f"{where}.seat_ids"),
                    }
                )
        for kind in ("add_unassigned_seats", "remove_unassigned_seats"):
            for j, change in enumerate(getattr(self, kind) or ()):
                where = f"{path}.{kind}[{j}]"
                changes.append(
                    {
                        "starting_at": _instant(f"{where}.starting_at", change.starting_at),
                        kind: Decimal(seat_count(change.quantity, f"{where}.quantity", allow_zero=False)),
                    }
                )
        order = {"add_seat_ids": 0, "add_unassigned_seats": 1, "remove_seat_ids": 2, "remove_unassigned_seats": 3}
        return sorted(changes, key=lambda c: next(order[k] for k in c if k in order))


class ModeSeatConfigIn(Request):
    seat_group_key: str = Field(min_length=1, max_length=MAX_PROPERTY_NAME_LENGTH)


class ModeUpdateIn(Request):
    """A QUANTITY_ONLY subscription made SEAT_BASED (services/contract_edits.py: its quantity so far
    becomes unassigned seats)."""

    quantity_management_mode: Literal["SEAT_BASED"]
    seat_config: ModeSeatConfigIn


class SubscriptionUpdateIn(Request):
    subscription_id: str = Id
    ending_before: str | None = None
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    quantity_updates: list[QuantityUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)
    proration_rounding: ProrationRoundingIn | None = None
    seat_updates: SeatUpdatesIn | None = None
    quantity_management_mode_update: ModeUpdateIn | None = None  # QUANTITY_ONLY to SEAT_BASED

    def to_update(self, path: str) -> dict:
        update: dict[str, Any] = {"id": self.subscription_id}
        if self.quantity_management_mode_update is not None:
            update["quantity_management_mode_update"] = {
                "quantity_management_mode": "SEAT_BASED",
                "seat_config": {"seat_group_key": self.quantity_management_mode_update.seat_config.seat_group_key},
            }
        if "ending_before" in self.model_fields_set:
            update["ending_before"] = (
                None if self.ending_before is None else _instant(f"{path}.ending_before", self.ending_before)
            )
        if self.name is not None:
            update["name"] = self.name
        if self.quantity_updates:
            update["quantity_updates"] = [
                q.to_change(f"{path}.quantity_updates[{j}]") for j, q in enumerate(self.quantity_updates)
            ]
        if "proration_rounding" in self.model_fields_set:  # null: no rounding from now on
            update["proration_rounding"] = (
                None
                if self.proration_rounding is None
                else self.proration_rounding.to_document(f"{path}.proration_rounding")
            )
        if self.seat_updates is not None:
            update["seat_updates"] = self.seat_updates.to_changes(f"{path}.seat_updates")
            if not update["seat_updates"]:
                raise InvalidInput(f"{path}.seat_updates", "names no seat change")
        if len(update) == 1:
            raise InvalidInput(
                path,
                "names no change (quantity_updates, seat_updates, quantity_management_mode_update, proration_rounding, "
                "ending_before or name)",
            )
        return update


def _item_price(path: str, amount: Decimal | None, quantity: Decimal | None, unit_price: Decimal | None) -> dict:
    """A schedule item's price as stored: unit_price and quantity (an amount is a unit price of 1)."""
    if amount is not None:
        if quantity is not None or unit_price is not None:
            raise InvalidInput(f"{path}.amount", "give either amount or quantity and unit_price")
        if amount < 0:
            raise InvalidInput(f"{path}.amount", "must not be negative")
        return {"unit_price": amount, "quantity": Decimal(1)}
    price: dict[str, Any] = {}
    for name, value in (("quantity", quantity), ("unit_price", unit_price)):
        if value is not None:
            if value < 0:
                raise InvalidInput(f"{path}.{name}", "must not be negative")
            price[name] = value
    return price


class ScheduleItemAddIn(Request):
    timestamp: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None

    def to_item(self, path: str) -> dict:
        price = _item_price(path, self.amount, self.quantity, self.unit_price)
        if len(price) < 2:
            raise InvalidInput(f"{path}.unit_price", "give either amount or quantity and unit_price")
        return {"timestamp": _instant(f"{path}.timestamp", self.timestamp)} | price


class ScheduleItemUpdateIn(Request):
    id: str = Id
    timestamp: str | None = None
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None

    def to_change(self, path: str) -> dict:
        change: dict[str, Any] = {"id": self.id} | _item_price(path, self.amount, self.quantity, self.unit_price)
        if self.timestamp is not None:
            change["timestamp"] = _instant(f"{path}.timestamp", self.timestamp)
        return change


class InvoiceScheduleUpdateIn(Request):
    add_schedule_items: list[ScheduleItemAddIn] | None = Field(default=None, max_length=MAX_PARTS)
    remove_schedule_items: list[IdRef] | None = Field(default=None, max_length=MAX_PARTS)
    update_schedule_items: list[ScheduleItemUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)


class ScheduledChargeUpdateIn(Request):
    scheduled_charge_id: str = Id
    invoice_schedule: InvoiceScheduleUpdateIn | None = None
    netsuite_sales_order_id: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)

    def to_update(self, path: str) -> dict:
        update: dict[str, Any] = {"id": self.scheduled_charge_id}
        schedule = self.invoice_schedule
        where = f"{path}.invoice_schedule"
        if schedule is not None:
            if schedule.add_schedule_items:
                update["add_schedule_items"] = [
                    i.to_item(f"{where}.add_schedule_items[{j}]") for j, i in enumerate(schedule.add_schedule_items)
                ]
            if schedule.remove_schedule_items:
                update["remove_schedule_items"] = [i.id for i in schedule.remove_schedule_items]
            if schedule.update_schedule_items:
                update["update_schedule_items"] = [
                    i.to_change(f"{where}.update_schedule_items[{j}]") for j, i in enumerate(schedule.update_schedule_items)
                ]
        if "netsuite_sales_order_id" in self.model_fields_set:
            update["netsuite_sales_order_id"] = self.netsuite_sales_order_id
        if len(update) == 1:
            raise InvalidInput(path, "names no change (invoice_schedule or netsuite_sales_order_id)")
        return update


class EditCommitIn(ContractCommitIn):
    pass


class EditCreditIn(CreditIn):
    rollover_fraction: Decimal | None = None

    def to_document(self, path: str = "") -> dict:
        document = super().to_document(path)
        if self.rollover_fraction is not None:
            document["rollover_fraction"] = self.rollover_fraction
        return document


class ContractEdit(Request):
    model_config = ConfigDict(extra="forbid")

    contract_id: str = Id
    customer_id: str = Id
    uniqueness_key: str | None = Field(default=None, min_length=1, max_length=128)
    allow_contract_ending_before_finalized_invoice: bool = True  # Metronome's default
    add_overrides: list[OverrideIn] | None = Field(default=None, max_length=MAX_PARTS)
    remove_overrides: list[IdRef] | None = Field(default=None, max_length=MAX_PARTS)
    add_subscriptions: list[SubscriptionIn] | None = Field(default=None, max_length=MAX_PARTS)
    update_subscriptions: list[SubscriptionUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_scheduled_charges: list[ScheduledChargeIn] | None = Field(default=None, max_length=MAX_PARTS)
    archive_scheduled_charges: list[IdRef] | None = Field(default=None, max_length=MAX_PARTS)
    update_scheduled_charges: list[ScheduledChargeUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_commits: list[EditCommitIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_credits: list[EditCreditIn] | None = Field(default=None, max_length=MAX_PARTS)
    archive_commits: list[IdRef] | None = Field(default=None, max_length=MAX_PARTS)
    archive_credits: list[IdRef] | None = Field(default=None, max_length=MAX_PARTS)
    update_contract_end_date: str | None = None
    update_contract_name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    update_net_payment_terms_days: Decimal | None = None
    # Refused when non-empty (see UNSUPPORTED).
    add_recurring_commits: list[RecurringCommitIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_recurring_credits: list[RecurringCreditIn] | None = Field(default=None, max_length=MAX_PARTS)
    update_recurring_commits: list[RecurringCommitUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)
    update_recurring_credits: list[RecurringCreditUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_discounts: list[DiscountIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_professional_services: list[ProfessionalServiceIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_spend_threshold_configuration: SpendThresholdConfigurationIn | None = None
    add_prepaid_balance_threshold_configuration: PrepaidBalanceThresholdConfigurationIn | None = None
    update_spend_threshold_configuration: UpdateSpendThresholdConfigurationIn | None = None
    update_prepaid_balance_threshold_configuration: UpdatePrepaidBalanceThresholdConfigurationIn | None = None
    add_billing_provider_configuration_update: BillingProviderConfigurationUpdateIn | None = None
    add_reseller_royalties: list[ResellerRoyaltyChangeIn] | None = Field(default=None, max_length=MAX_PARTS)
    add_revenue_system_configuration_update: Any = None
    add_spend_trackers: list[SpendTrackerIn] | None = Field(default=None, max_length=MAX_PARTS)
    archive_spend_trackers: list[Alias] | None = Field(default=None, max_length=MAX_PARTS)
    update_commits: list[CommitUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)
    update_credits: list[CreditUpdateIn] | None = Field(default=None, max_length=MAX_PARTS)

    def changes(self) -> dict:
        """The normalized changes (services/contract_edits.py): canonical times, Decimals, added
        parts as the documents contract creation stores, without ids yet."""
        for name in UNSUPPORTED:
            value = getattr(self, name)
            if value is not None and value != []:
                raise InvalidInput(name, "is not supported yet")
        changes: dict[str, Any] = {}
        if self.add_overrides:
            changes["add_overrides"] = [o.to_document(f"add_overrides[{i}]") for i, o in enumerate(self.add_overrides)]
        if self.remove_overrides:
            changes["remove_overrides"] = [r.id for r in self.remove_overrides]
        if self.add_subscriptions:
            changes["add_subscriptions"] = [
                s.to_document(f"add_subscriptions[{i}]") for i, s in enumerate(self.add_subscriptions)
            ]
        if self.update_subscriptions:
            changes["update_subscriptions"] = [
                u.to_update(f"update_subscriptions[{i}]") for i, u in enumerate(self.update_subscriptions)
            ]
        if self.add_scheduled_charges:
            changes["add_scheduled_charges"] = [
                c.to_document(f"add_scheduled_charges[{i}]") for i, c in enumerate(self.add_scheduled_charges)
            ]
        if self.archive_scheduled_charges:
            changes["archive_scheduled_charges"] = [r.id for r in self.archive_scheduled_charges]
        if self.update_scheduled_charges:
            changes["update_scheduled_charges"] = [
                u.to_update(f"update_scheduled_charges[{i}]") for i, u in enumerate(self.update_scheduled_charges)
            ]
        if self.add_commits:
            changes["add_commits"] = [c.to_document(f"add_commits[{i}].") for i, c in enumerate(self.add_commits)]
        if self.add_credits:
            changes["add_credits"] = [c.to_document(f"add_credits[{i}].") for i, c in enumerate(self.add_credits)]
        for name in ("archive_commits", "archive_credits"):
            refs = getattr(self, name)
            if refs:
                changes[name] = [r.id for r in refs]
        for name in ("add_recurring_commits", "add_recurring_credits", "add_discounts", "add_professional_services"):
            parts = getattr(self, name)
            if parts:
                changes[name] = [p.to_document(f"{name}[{i}]") for i, p in enumerate(parts)]
        for name in ("update_recurring_commits", "update_recurring_credits", "update_commits", "update_credits"):
            updates = getattr(self, name)
            if updates:
                changes[name] = [u.to_update(f"{name}[{i}]") for i, u in enumerate(updates)]
        changes |= threshold_edit_changes(self)
        if self.add_billing_provider_configuration_update is not None:
            changes["add_billing_provider_configuration_update"] = self.add_billing_provider_configuration_update.to_change()
        if self.add_spend_trackers:
            changes["add_spend_trackers"] = [t.to_document() for t in self.add_spend_trackers]
        if self.archive_spend_trackers:
            changes["archive_spend_trackers"] = list(self.archive_spend_trackers)
        if self.add_reseller_royalties:
            changes["add_reseller_royalties"] = [
                r.to_change(f"add_reseller_royalties[{i}]") for i, r in enumerate(self.add_reseller_royalties)
            ]
        if "update_contract_end_date" in self.model_fields_set:
            changes["update_contract_end_date"] = (
                None
                if self.update_contract_end_date is None
                else _instant("update_contract_end_date", self.update_contract_end_date)
            )
        for name in ("update_contract_name", "update_net_payment_terms_days"):
            if name in self.model_fields_set:
                changes[name] = getattr(self, name)
        if self.update_net_payment_terms_days is not None and self.update_net_payment_terms_days < 0:
            raise InvalidInput("update_net_payment_terms_days", "must not be negative")
        return changes


class ContractEditHistory(Request):
    model_config = ConfigDict(extra="forbid")

    contract_id: str = Id
    customer_id: str = Id


# -- responses ---------------------------------------------------------------------------------
def _drop_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def _seat_updates_json(changes: list[dict]) -> dict:
    """Stored seat updates grouped back by kind, in the SDK's shape."""
    body: dict[str, list] = {}
    for change in changes:
        for kind in ("add_seat_ids", "remove_seat_ids"):
            if kind in change:
                body.setdefault(kind, []).append({"seat_ids": change[kind], "starting_at": change["starting_at"]})
        for kind in ("add_unassigned_seats", "remove_unassigned_seats"):
            if kind in change:
                body.setdefault(kind, []).append({"quantity": change[kind], "starting_at": change["starting_at"]})
    return body


def _schedule_item_json(item: dict) -> dict:
    body = dict(item)
    if "unit_price" in item and "quantity" in item:
        body["amount"] = item["unit_price"] * item["quantity"]
    return body


def edit_json(record: dict, document: dict, contract: Contract, products: dict[str, Product], view: ContractView) -> dict:
    """One edit of the contract (`document`, `contract` its engine object) in Metronome's shape: the
    `edit` of an edit response, an entry of the history. Added parts are shown as they were added,
    with the serializers of the contract's own JSON. `created_by` (the id of the API key that made
    it) is Tally's addition."""
    fiat = contract.rate_card.fiat_credit_type
    names = view.credit_type_names
    body: dict[str, Any] = {"id": record["id"], "timestamp": record["timestamp"]}
    if record.get("created_by") is not None:
        body["created_by"] = record["created_by"]
    if record.get("uniqueness_key") is not None:
        body["uniqueness_key"] = record["uniqueness_key"]
    if "add_overrides" in record:
        body["add_overrides"] = [_override_json(o, products, fiat, names) for o in record["add_overrides"]]
    if "add_subscriptions" in record:
        # Billing periods are the subscription's now, not the edit's: left out of the record.
        body["add_subscriptions"] = [_subscription_json(s, products, fiat, contract, None) for s in record["add_subscriptions"]]
    if "add_scheduled_charges" in record:
        body["add_scheduled_charges"] = [
            _scheduled_charge_json(c, products, fiat, names) for c in record["add_scheduled_charges"]
        ]
    for kind in ("add_commits", "add_credits"):
        if kind in record:
            body[kind] = [view.grant_json(g, document, products) for g in record[kind]]
    for kind in ("remove_overrides", "archive_scheduled_charges", "archive_commits", "archive_credits"):
        if kind in record:
            body[kind] = [{"id": item_id} for item_id in record[kind]]
    if "update_subscriptions" in record:
        body["update_subscriptions"] = [
            {"id": u["id"]}
            | ({"ending_before": u["ending_before"]} if "ending_before" in u else {})
            | ({"proration_rounding": u["proration_rounding"]} if "proration_rounding" in u else {})
            | _drop_none(
                {
                    "name": u.get("name"),
                    "quantity_updates": u.get("quantity_updates"),
                    "seat_updates": _seat_updates_json(u["seat_updates"]) if u.get("seat_updates") else None,
                }
            )
            for u in record["update_subscriptions"]
        ]
    if "update_scheduled_charges" in record:
        updates = []
        for u in record["update_scheduled_charges"]:
            schedule = _drop_none(
                {
                    "add_schedule_items": [_schedule_item_json(i) for i in u["add_schedule_items"]]
                    if "add_schedule_items" in u
                    else None,
                    "remove_schedule_items": [{"id": i} for i in u["remove_schedule_items"]]
                    if "remove_schedule_items" in u
                    else None,
                    "update_schedule_items": [_schedule_item_json(i) for i in u["update_schedule_items"]]
                    if "update_schedule_items" in u
                    else None,
                }
            )
            entry: dict[str, Any] = {"id": u["id"]}
            if schedule:
                entry["invoice_schedule"] = schedule
            if "netsuite_sales_order_id" in u:
                entry["netsuite_sales_order_id"] = u["netsuite_sales_order_id"]
            updates.append(entry)
        body["update_scheduled_charges"] = updates
    for kind in ("add_recurring_commits", "add_recurring_credits"):
        if kind in record:
            body[kind] = [recurring_grant_json(r, document, products) for r in record[kind]]
    if "add_discounts" in record:
        body["add_discounts"] = [_discount_json(d, products, fiat, names) for d in record["add_discounts"]]
    if "add_professional_services" in record:
        body["add_pro_services"] = [_pro_service_json(p) for p in record["add_professional_services"]]
    for kind in ("update_recurring_commits", "update_recurring_credits"):
        if kind in record:
            body[kind] = [dict(u) for u in record[kind]]
    for kind in ("update_commits", "update_credits"):
        if kind in record:
            body[kind] = [update_json(u) for u in record[kind]]
    for name in ("add_spend_threshold_configuration", "add_prepaid_balance_threshold_configuration"):
        if name in record:
            body[name] = threshold_config_json(record[name])
    for name in ("update_spend_threshold_configuration", "update_prepaid_balance_threshold_configuration"):
        if name in record:
            body[name] = threshold_update_json(record[name])
    for name in ("update_contract_end_date", "update_contract_name", "update_net_payment_terms_days"):
        if name in record:
            body[name] = record[name]
    if "add_usage_filters" in record:  # POST /v1/contracts/setUsageFilter
        body["add_usage_filters"] = added_usage_filters_json(record["add_usage_filters"], contract)
    if "add_reseller_royalties" in record:
        body["add_reseller_royalties"] = [royalty_segment_json(r) for r in record["add_reseller_royalties"]]
    # Not in the SDK's history type (it lists neither): shown as the edit gave them.
    if "add_spend_trackers" in record:
        body["add_spend_trackers"] = [dict(t) for t in record["add_spend_trackers"]]
    if "archive_spend_trackers" in record:
        body["archive_spend_trackers"] = list(record["archive_spend_trackers"])
    body |= billing_provider_history_json(record)
    return body
