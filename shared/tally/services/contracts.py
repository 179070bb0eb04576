"""Contracts: create, read, list, archive (changes go through contract_edits.py).

A contract is stored as a normalized document (the create request with ids and canonical times;
see `api/contract_models.py`). Its rate card is *not* copied: the engine object is rebuilt from
the catalog on every read, so rates added to the card later price the contract too, as in
Metronome. Validation is the engine's own (`validate_contract`), run before anything is written.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Callable, Protocol

from tally.billing.customers import Customer
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.hierarchy import check_child_access
from tally.billing.consolidation import concatenates, consolidates, payer_of
from tally.billing.pricing import (
    USD_CENTS,
    Contract,
    CreditType,
    Override,
    OverrideSpecifier,
    OverrideTier,
    OverwriteRate,
    Product,
    ProductType,
    QuantityChange,
    RateCard,
    ScheduledCharge,
    ScheduleItem,
    Subscription,
    UsageStatementSchedule,
    validate_contract,
)
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.pricing.contract_charges import Discount, ProfessionalService, ProServiceCharge, ProServices
from tally.services.balances import validate_grant_document
from tally.services.recurring_grants import subscription_ids_resolved, validate_recurring_documents
from tally.services.reseller_royalties import validate_reseller_royalty_documents
from tally.services.spend_trackers import validate_spend_tracker_documents
from tally.services.thresholds import validate_threshold_documents
from tally.services.together import together
from tally.billing.pricing.overrides import MultiplierPrioritization, OverrideTarget, OverrideType
from tally.billing.pricing.usage_filters import (
    ContractWindow,
    UsageFilter,
    validate_concurrent_contracts,
)
from tally.billing.pricing.periods import BillingDay, Frequency
from tally.billing.pricing.rate_schedules import RateSelector, ScheduledPrice, contract_rate_schedule
from tally.billing.pricing.rates import RateTimeline, RateType, Tier
from tally.billing.pricing.seats import SeatChange, Seats, SeatSegment, seat_quantities, seat_schedule
from tally.billing.pricing.subscriptions import (
    CollectionSchedule,
    InvoiceBehavior,
    ProrationRounding,
    ProrationRoundingMethod,
)
from tally.billing.time import format_rfc3339, parse_rfc3339


class CatalogReader(Protocol):
    """What contracts and invoices read from the catalog (implemented by services.catalog.CatalogService)."""

    def product(self, product_id: str) -> Product: ...

    def products(self) -> dict[str, Product]: ...

    def rate_card(self, rate_card_id: str) -> RateCard: ...

    def is_archived(self, rate_card_id: str) -> bool: ...

    def rate_card_id_for_alias(self, alias: str, at: datetime) -> str | None: ...

    def metric(self, metric_id: str) -> BillableMetric | None: ...


class ContractStore(Protocol):
    def create(self, document: dict, uniqueness_key: str | None = None) -> None:
        """Store a new contract; Conflict when the uniqueness key is taken. All or nothing."""

    def get(self, contract_id: str) -> dict | None:
        """The document, with `_version` set for `replace`."""

    def replace(self, document: dict) -> None:
        """Write a changed document; Conflict if it changed since it was read."""

    def list_for_customer(self, customer_id: str) -> list[dict]: ...


class ContractChanged(Conflict):
    """The contract changed between its read and a conditional write: re-read and apply again."""


class CustomerReader(Protocol):
    def get(self, customer_id: str) -> Customer | None: ...


# Credit types a contract may name. Custom pricing units live in the catalog, which does not
# expose them to contracts yet, so only the fiat default is accepted.
KNOWN_CREDIT_TYPES = {USD_CENTS.id: USD_CENTS}


def _time(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _dec(value) -> Decimal | None:
    return None if value is None else Decimal(value) if not isinstance(value, Decimal) else value


def credit_type(credit_type_id: str | None, field: str) -> CreditType | None:
    if credit_type_id is None:
        return None
    found = KNOWN_CREDIT_TYPES.get(credit_type_id)
    if found is None:
        raise InvalidInput(field, "is not a known credit type (only USD (cents) is supported on contracts)")
    return found


def _override(doc: dict, index: int) -> Override:
    rate = doc.get("overwrite_rate")
    return Override(
        id=doc["id"],
        starting_at=parse_rfc3339(doc["starting_at"]),
        ending_before=_time(doc.get("ending_before")),
        type=None if doc.get("type") is None else OverrideType(doc["type"]),
        product_id=doc.get("product_id"),
        applicable_product_tags=tuple(doc.get("applicable_product_tags") or ()),
        override_specifiers=tuple(
            OverrideSpecifier(
                product_id=spec.get("product_id"),
                product_tags=tuple(spec.get("product_tags") or ()),
                pricing_group_values=spec.get("pricing_group_values"),
                presentation_group_values=spec.get("presentation_group_values"),
                commit_ids=tuple(
                    g for name in ("commit_ids", "recurring_commit_ids", "any_commit_or_credit_ids") for g in spec.get(name) or ()
                ),
                billing_frequency=None if spec.get("billing_frequency") is None else Frequency(spec["billing_frequency"]),
            )
            for spec in doc.get("override_specifiers") or ()
        ),
        entitled=doc.get("entitled"),
        priority=_dec(doc.get("priority")),
        multiplier=_dec(doc.get("multiplier")),
        overwrite_rate=None
        if rate is None
        else OverwriteRate(
            rate_type=RateType(rate["rate_type"]),
            price=_dec(rate.get("price")),
            tiers=tuple(Tier(_dec(t["price"]), _dec(t.get("size"))) for t in rate.get("tiers") or ()),
            quantity=_dec(rate.get("quantity")),
            is_prorated=rate.get("is_prorated"),
            credit_type=credit_type(rate.get("credit_type_id"), f"overrides[{index}].overwrite_rate.credit_type_id"),
        ),
        tiers=tuple(OverrideTier(_dec(t["multiplier"]), _dec(t.get("size"))) for t in doc.get("tiers") or ()),
        commit_specific=bool(doc.get("is_commit_specific")),
        target=OverrideTarget(doc.get("target") or OverrideTarget.LIST_RATE.value),
    )


def quantity_schedule(doc: dict) -> tuple[Decimal, tuple[QuantityChange, ...]]:
    """A stored subscription's initial quantity and its changes, as absolute quantities.

    A SEAT_BASED subscription's quantity is its number of seats (seat_schedule). Otherwise,
    `quantity_updates` are kept as they were sent (by contract edits): each sets a `quantity` or
    adds a `quantity_delta`, from its `starting_at`. Metronome applies them on their effective dates
    in the order sent, so they are folded in (starting_at, order sent) order; a change at the
    subscription's start changes its initial quantity."""
    if is_seat_based(doc):
        return seat_quantities(seat_schedule_of(doc))
    start = parse_rfc3339(doc["starting_at"])
    initial = _dec(doc["initial_quantity"])
    updates = sorted(
        enumerate(doc.get("quantity_updates") or ()), key=lambda pair: (parse_rfc3339(pair[1]["starting_at"]), pair[0])
    )
    quantity = initial
    changes: dict[datetime, Decimal] = {}
    for _, update in updates:
        at = parse_rfc3339(update["starting_at"])
        quantity = _dec(update["quantity"]) if update.get("quantity") is not None else quantity + _dec(update["quantity_delta"])
        if at <= start:
            initial = quantity
        else:
            changes[at] = quantity
    return initial, tuple(QuantityChange(at, q) for at, q in sorted(changes.items()))


def is_seat_based(doc: dict) -> bool:
    return doc.get("quantity_management_mode") == "SEAT_BASED"


def seat_change(update: dict) -> SeatChange:
    """A stored seat update (one kind of change, as contract edits keep them) as the engine's."""
    return SeatChange(
        parse_rfc3339(update["starting_at"]),
        add_seat_ids=tuple(update.get("add_seat_ids") or ()),
        remove_seat_ids=tuple(update.get("remove_seat_ids") or ()),
        add_unassigned=int(update.get("add_unassigned_seats") or 0),
        remove_unassigned=int(update.get("remove_unassigned_seats") or 0),
    )


def seat_schedule_of(doc: dict) -> tuple[SeatSegment, ...]:
    """A stored SEAT_BASED subscription's seats from its start (billing/pricing/seats.py)."""
    config = doc["seat_config"]
    initial = Seats(tuple(config.get("initial_seat_ids") or ()), int(config.get("initial_unassigned_seats") or 0))
    return seat_schedule(
        parse_rfc3339(doc["starting_at"]),
        _time(doc.get("ending_before")),
        initial,
        [seat_change(u) for u in doc.get("seat_updates") or ()],
    )


def _proration_rounding(doc: dict | None) -> ProrationRounding | None:
    if doc is None:
        return None
    return ProrationRounding(int(doc["decimal_places"]), ProrationRoundingMethod(doc["rounding_method"]))


def _subscription(doc: dict) -> Subscription:
    initial, changes = quantity_schedule(doc)
    return Subscription(
        id=doc["id"],
        product_id=doc["product_id"],
        collection_schedule=CollectionSchedule(doc["collection_schedule"]),
        billing_frequency=Frequency(doc["billing_frequency"]),
        starting_at=parse_rfc3339(doc["starting_at"]),
        initial_quantity=initial,
        is_prorated=doc["is_prorated"],
        ending_before=_time(doc.get("ending_before")),
        quantity_updates=changes,
        name=doc.get("name"),
        invoice_behavior=InvoiceBehavior(doc.get("invoice_behavior") or InvoiceBehavior.BILL_IMMEDIATELY.value),
        proration_rounding=_proration_rounding(doc.get("proration_rounding")),
        billing_anchor=_time((doc.get("billing_cycle_config") or {}).get("anchor_date")),
        advance_on_usage_invoice=(doc.get("billing_cycle_config") or {}).get("invoice_placement") == "ON_USAGE_INVOICE",
    )


def _scheduled_charge(doc: dict, index: int) -> ScheduledCharge:
    return ScheduledCharge(
        id=doc["id"],
        product_id=doc["product_id"],
        schedule_items=tuple(
            ScheduleItem(parse_rfc3339(i["timestamp"]), _dec(i["unit_price"]), _dec(i["quantity"]))
            for i in doc["schedule_items"]
        ),
        name=doc.get("name"),
        credit_type=credit_type(doc.get("credit_type_id"), f"scheduled_charges[{index}].schedule.credit_type_id")
        or USD_CENTS,
        do_not_invoice=bool(doc.get("do_not_invoice")),
    )


def contract_from_document(doc: dict, rate_card: RateCard) -> Contract:
    """The engine's contract for a stored document and its rate card (as the catalog has it now)."""
    schedule = doc["usage_statement_schedule"]
    return Contract(
        id=doc["id"],
        customer_id=doc["customer_id"],
        starting_at=parse_rfc3339(doc["starting_at"]),
        rate_card=rate_card,
        ending_before=_time(doc.get("ending_before")),
        overrides=tuple(_override(o, i) for i, o in enumerate(doc.get("overrides") or ())),
        subscriptions=tuple(_subscription(s) for s in doc.get("subscriptions") or ()),
        scheduled_charges=tuple(_scheduled_charge(c, i) for i, c in enumerate(doc.get("scheduled_charges") or ())),
        usage_statement_schedule=UsageStatementSchedule(
            Frequency(schedule["frequency"]),
            BillingDay(schedule["day"]),
            _time(schedule.get("billing_anchor_date")),
            _time(schedule.get("invoice_generation_starting_at")),
        ),
        multiplier_override_prioritization=MultiplierPrioritization(doc["multiplier_override_prioritization"]),
        usage_filter=_usage_filter(doc.get("usage_filter")),
        usage_filter_updates=tuple(_usage_filter(u) for u in (doc.get("usage_filter") or {}).get("updates") or ()),
        discounts=tuple(_discount(d, i) for i, d in enumerate(doc.get("discounts") or ())),
        professional_services=_professional_services(doc),
        scheduled_charges_on_usage_invoices=doc.get("scheduled_charges_on_usage_invoices") == "ALL",
        payer=payer_of(doc),
        consolidated_usage=consolidates(doc) or concatenates(doc),
    )


def _discount(doc: dict, index: int) -> Discount:
    return Discount(
        id=doc["id"],
        product_id=doc["product_id"],
        schedule_items=tuple(
            ScheduleItem(parse_rfc3339(i["timestamp"]), _dec(i["unit_price"]), _dec(i["quantity"]))
            for i in doc["schedule_items"]
        ),
        name=doc.get("name"),
        credit_type=credit_type(doc.get("credit_type_id"), f"discounts[{index}].schedule.credit_type_id") or USD_CENTS,
    )


def _professional_services(doc: dict) -> ProServices:
    """The terms (`professional_services`) and what scheduleProServicesInvoice scheduled for them
    (`professional_service_invoices`: each an issue instant and its line items)."""
    return ProServices(
        tuple(
            ProfessionalService(
                p["id"], p["product_id"], _dec(p["quantity"]), _dec(p["unit_price"]), _dec(p["max_amount"]), p.get("description")
            )
            for p in doc.get("professional_services") or ()
        ),
        tuple(
            ProServiceCharge(
                line["id"],
                line["professional_service_id"],
                parse_rfc3339(invoice["issued_at"]),
                _dec(line["quantity"]),
                _dec(line["unit_price"]),
                line.get("metadata"),
            )
            for invoice in doc.get("professional_service_invoices") or ()
            for line in invoice["line_items"]
        ),
    )


def _usage_filter(doc: dict | None) -> UsageFilter | None:
    """A stored filter: {group_key, group_values, starting_at (none: from the contract's start),
    updates: later filters of the same shape, each with its starting_at (setUsageFilter)}."""
    if doc is None:
        return None
    return UsageFilter(doc["group_key"], tuple(doc["group_values"]), _time(doc.get("starting_at")))


def _new_id() -> str:
    return str(uuid.uuid4())


class ContractService:
    def __init__(
        self,
        store: ContractStore,
        customers: CustomerReader,
        catalog: CatalogReader,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._customers = customers
        self._catalog = catalog
        self._clock = clock

    # -- reads -------------------------------------------------------------------------------
    def customer(self, customer_id: str) -> Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer

    def get(self, customer_id: str, contract_id: str) -> dict:
        self.customer(customer_id)
        document = self._store.get(contract_id)
        if document is None or document["customer_id"] != customer_id:
            raise NotFound(f"contract {contract_id} not found for customer {customer_id}")
        return document

    def list(
        self,
        customer_id: str,
        *,
        include_archived: bool = False,
        covering_date: datetime | None = None,
        starting_at: datetime | None = None,
    ) -> list[dict]:
        if covering_date is not None and starting_at is not None:
            raise InvalidInput("covering_date", "cannot be combined with starting_at")
        _, stored = self._customer_and_documents(customer_id)
        found = []
        for document in stored:
            start, end = parse_rfc3339(document["starting_at"]), _time(document.get("ending_before"))
            if document.get("archived_at") and not include_archived:
                continue
            if covering_date is not None and not (start <= covering_date and (end is None or covering_date < end)):
                continue
            if starting_at is not None and start < starting_at:
                continue
            found.append(document)
        return sorted(found, key=lambda d: (d["starting_at"], d["created_at"], d["id"]))

    def customer_and_contracts(self, customer_id: str) -> tuple[Customer, list[dict]]:
        """The customer and `list(customer_id)`, read together."""
        customer, stored = self._customer_and_documents(customer_id)
        found = [d for d in stored if not d.get("archived_at")]
        return customer, sorted(found, key=lambda d: (d["starting_at"], d["created_at"], d["id"]))

    def _customer_and_documents(self, customer_id: str) -> tuple[Customer, list[dict]]:
        # Two independent reads, sent together: the customer's own (NotFound first) and its contracts'.
        customer, stored = together([lambda: self.customer(customer_id), lambda: self._store.list_for_customer(customer_id)])
        return customer, stored

    def ids(self, customer_id: str) -> list[str]:
        """The ids of the customer's unarchived contracts, read without interpreting them, so that a
        stored contract that no longer parses can still be named."""
        self.customer(customer_id)
        return [d["id"] for d in self._store.list_for_customer(customer_id) if not d.get("archived_at")]

    def contract(self, document: dict) -> Contract:
        """The engine object of a stored contract, with its rate card as the catalog has it now."""
        return contract_from_document(document, self._catalog.rate_card(document["rate_card_id"]))

    def products(self) -> dict[str, Product]:
        return self._catalog.products()

    def rate_card_of(self, document: dict) -> RateCard:
        return self._catalog.rate_card(document["rate_card_id"])

    # -- writes ------------------------------------------------------------------------------
    def create(self, request: dict, uniqueness_key: str | None = None) -> dict:
        """`request` is the normalized create body (api/contract_models.py). Nothing is written
        unless the whole contract validates."""
        document = self.prepared(request, uniqueness_key)
        self._store.create(document, uniqueness_key)
        return document

    def check_terms(self, request: dict) -> None:
        """InvalidInput unless `request`'s terms would make a valid contract, whoever the customer
        (a package's terms, checked when the package is created)."""
        self.prepared(request, for_customer=False)

    def prepared(self, request: dict, uniqueness_key: str | None = None, for_customer: bool = True) -> dict:
        """The document `create` writes: ids given, rate card resolved, validated; not written."""
        if for_customer:
            self.customer(request["customer_id"])
        now = self._clock()
        document = dict(request)
        document["rate_card_id"] = self._resolve_rate_card(request)
        document.pop("rate_card_alias", None)
        document["id"] = _new_id()
        document["created_at"] = format_rfc3339(now)
        document["overrides"] = [o | {"id": _new_id(), "created_at": document["created_at"]} for o in request["overrides"]]
        document["subscriptions"] = [
            s
            | {
                "id": _new_id(),
                "created_at": document["created_at"],
                "starting_at": s.get("starting_at") or request["starting_at"],
            }
            for s in request["subscriptions"]
        ]
        document["scheduled_charges"] = [
            c | {"id": _new_id(), "schedule_items": [i | {"id": _new_id()} for i in c["schedule_items"]]}
            for c in request["scheduled_charges"]
        ]
        for kind in ("recurring_commits", "recurring_credits", "professional_services"):
            if request.get(kind):
                document[kind] = [p | {"id": _new_id()} for p in request[kind]]
        _recurring_temporary_ids_resolved(document)
        subscription_ids_resolved(
            document["subscriptions"], [*(document.get("recurring_commits") or ()), *(document.get("recurring_credits") or ())]
        )
        if request.get("discounts"):
            document["discounts"] = [
                d | {"id": _new_id(), "schedule_items": [i | {"id": _new_id()} for i in d["schedule_items"]]}
                for d in request["discounts"]
            ]
        if uniqueness_key is not None:
            document["uniqueness_key"] = uniqueness_key
            # A retried create is a conflict, not a clash with itself; the store's conditional write
            # still decides races.
            if any(d.get("uniqueness_key") == uniqueness_key for d in self._store.list_for_customer(request["customer_id"])):
                raise Conflict(f"a contract with uniqueness_key {uniqueness_key!r} already exists")
        self._validate(document)
        return document

    def archive(self, customer_id: str, contract_id: str) -> dict:
        document = self.get(customer_id, contract_id)
        if document.get("archived_at"):
            return document  # archiving twice changes nothing
        changed = dict(document, archived_at=format_rfc3339(self._clock()))
        self._store.replace(changed)
        return changed

    def subscription_quantity_history(self, customer_id: str, contract_id: str, subscription_id: str) -> dict:
        """Quantity and unit price from the subscription's start, at each quantity change."""
        document = self.get(customer_id, contract_id)
        contract = self.contract(document)
        subscription = next((s for s in contract.subscriptions if s.id == subscription_id), None)
        if subscription is None:
            raise NotFound(f"subscription {subscription_id} not found on contract {contract_id}")
        timeline = RateTimeline(contract.rate_card.rates)
        history = []
        for starting_at, _, quantity in subscription.quantity_schedule:
            rate = timeline.rate_for(subscription.product_id, {}, starting_at, subscription.billing_frequency)
            unit_price = Decimal(0) if rate is None or rate.price is None else rate.price
            history.append({"starting_at": starting_at, "quantity": quantity, "unit_price": unit_price})
        return {
            "subscription_id": subscription.id,
            "fiat_credit_type_id": contract.rate_card.fiat_credit_type.id,
            "history": history,
        }

    def subscription_seats(self, customer_id: str, contract_id: str, subscription_id: str) -> tuple[SeatSegment, ...]:
        """A SEAT_BASED subscription's seats from its start, one segment per change; the last ends
        when the subscription does (with the contract, unless it ends before)."""
        document = self.get(customer_id, contract_id)
        sub = next((s for s in document.get("subscriptions") or () if s["id"] == subscription_id), None)
        if sub is None:
            raise NotFound(f"subscription {subscription_id} not found on contract {contract_id}")
        if not is_seat_based(sub):
            raise InvalidInput("subscription_id", "is not a SEAT_BASED subscription (its quantity_management_mode is QUANTITY_ONLY)")
        ends = [e for e in (_time(sub.get("ending_before")), _time(document.get("ending_before"))) if e is not None]
        return seat_schedule_of(dict(sub, ending_before=format_rfc3339(min(ends)) if ends else None))

    def contract_seat_ids(self, customer_id: str, contract_id: str, subscription_ids: list[str] | None = None) -> list[str]:
        """Every seat id ever assigned on the contract's SEAT_BASED subscriptions (those named, when
        `subscription_ids` is given), in subscription order, then in the order first assigned."""
        document = self.get(customer_id, contract_id)
        subs = {s["id"]: s for s in document.get("subscriptions") or ()}
        for index, sub_id in enumerate(subscription_ids or ()):
            if sub_id not in subs:
                raise InvalidInput(f"subscription_ids[{index}]", "is not a subscription of the contract")
            if not is_seat_based(subs[sub_id]):
                raise InvalidInput(f"subscription_ids[{index}]", "is not a SEAT_BASED subscription")
        wanted = set(subscription_ids) if subscription_ids else None
        seen: dict[str, None] = {}
        for sub in subs.values():
            if not is_seat_based(sub) or (wanted is not None and sub["id"] not in wanted):
                continue
            for segment in seat_schedule_of(sub):
                seen.update(dict.fromkeys(segment.seats.assigned))
        return list(seen)

    def rate_schedule(
        self, customer_id: str, contract_id: str, at: datetime, selectors: list[RateSelector] | None = None
    ) -> tuple[Contract, list[ScheduledPrice]]:
        """What the contract pays at `at`, overrides applied, priced as its invoices are
        (getContractRateSchedule; billing/pricing/rate_schedules.py)."""
        contract = self.contract(self.get(customer_id, contract_id))
        return contract, contract_rate_schedule(contract, self._catalog.products(), at, selectors or ())

    # -- helpers -----------------------------------------------------------------------------
    def _resolve_rate_card(self, request: dict) -> str:
        rate_card_id, alias = request.get("rate_card_id"), request.get("rate_card_alias")
        if (rate_card_id is None) == (alias is None):
            raise InvalidInput("rate_card_id", "set exactly one of rate_card_id or rate_card_alias")
        if alias is not None:
            rate_card_id = self._catalog.rate_card_id_for_alias(alias, parse_rfc3339(request["starting_at"]))
            if rate_card_id is None:
                raise InvalidInput("rate_card_alias", "no rate card holds this alias at the contract's starting_at")
            return rate_card_id
        try:
            archived = self._catalog.is_archived(rate_card_id)
        except NotFound as exc:
            raise InvalidInput("rate_card_id", "is not a known rate card") from exc
        if archived:
            raise InvalidInput("rate_card_id", "the rate card is archived")
        return rate_card_id

    def validate(self, document: dict) -> None:
        """Everything a stored contract must satisfy (InvalidInput names the document's field)."""
        self._validate(document)

    def _validate(self, document: dict) -> None:
        try:
            contract = self.contract(document)
        except NotFound as exc:
            raise InvalidInput("rate_card_id", "is not a known rate card") from exc
        products = self._catalog.products()
        try:
            validate_contract(contract, products)  # InvalidInput names the request field
        except InvalidInput as exc:
            raise _recurring_field(exc, document) from exc
        for kind in ("commits", "credits"):
            for index, grant in enumerate(document.get(kind) or ()):
                validate_grant_document(grant, products, f"{kind}[{index}]")
        validate_recurring_documents(document, products, validate_grant_document)
        validate_threshold_documents(document, products)
        validate_spend_tracker_documents(document, contract.rate_card.fiat_credit_type.id)
        validate_reseller_royalty_documents(document, products)
        check_child_access(document)  # CONTRACT_IDS name this contract's children (billing/hierarchy.py)
        _check_commit_specific(document, products)
        if contract.usage_filter is not None:
            self._check_filter_is_readable(contract, products)
        # The contract a new one transitions from ends where the new one starts (the same write).
        ends = {document["transition"]["from_contract_id"]: document["starting_at"]} if document.get("transition") else {}
        others = [
            self.contract(d | ({"ending_before": ends[d["id"]]} if d["id"] in ends else {}))
            for d in self._store.list_for_customer(contract.customer_id)
            if not d.get("archived_at") and d["id"] != contract.id
        ]
        validate_concurrent_contracts(_window(contract), [_window(c) for c in others])

    def _check_filter_is_readable(self, contract: Contract, products: dict[str, Product]) -> None:
        """Counters keep usage per metric dimension, so a filter can only split usage on a property
        every metric of the card groups by; and only COUNT and SUM add up across filter values."""
        assert contract.usage_filter is not None
        keys = [(f"usage_filter.updates[{i}].group_key", u.group_key) for i, u in enumerate(contract.usage_filter_updates)]
        for field, key in [("usage_filter.group_key", contract.usage_filter.group_key), *keys]:
            self._check_filter_key(contract, products, key, field)

    def _check_filter_key(self, contract: Contract, products: dict[str, Product], key: str, field: str) -> None:
        for product_id in sorted(RateTimeline(contract.rate_card.rates).product_ids()):
            for version in products[product_id].versions:
                if version.billable_metric_id is None:
                    continue
                metric = self._catalog.metric(version.billable_metric_id)
                if metric is None:
                    continue
                if key not in metric.dimensions:
                    raise InvalidInput(
                        field,
                        f"is not a group key of billable metric {metric.id} (product {product_id} on the rate card)",
                    )
                if metric.aggregation_type not in (Aggregation.COUNT, Aggregation.SUM):
                    raise InvalidInput(
                        "usage_filter",
                        f"needs COUNT or SUM billable metrics; {metric.id} (product {product_id}) is "
                        f"{metric.aggregation_type.value}",
                    )


_SCHEDULE_ITEM = re.compile(r"(scheduled_charges|discounts)\[(\d+)\]\.schedule\.schedule_items\[(\d+)\]\.timestamp")


def _recurring_field(error: InvalidInput, document: dict) -> InvalidInput:
    """An item of a charge made from a recurring schedule is named by the schedule's bound that
    put it where it is refused: its starting_at when before the contract, else its ending_before."""
    match = _SCHEDULE_ITEM.fullmatch(error.field)
    if match is None:
        return error
    kind, index, position = match[1], int(match[2]), int(match[3])
    charges = document.get(kind) or []
    if index >= len(charges) or "recurring_schedule" not in charges[index]:
        return error
    item = charges[index]["schedule_items"][position]
    bound = "starting_at" if parse_rfc3339(item["timestamp"]) < parse_rfc3339(document["starting_at"]) else "ending_before"
    return InvalidInput(
        f"{kind}[{index}].schedule.recurring_schedule.{bound}",
        f"makes an item at {item['timestamp']}: {error.rule}",
    )


def _recurring_temporary_ids_resolved(document: dict) -> None:
    """Commit-specific overrides may name a recurring commit or credit of the same request by its
    `temporary_id`; they are stored naming its id."""
    ids = {
        r["temporary_id"]: r["id"]
        for kind in ("recurring_commits", "recurring_credits") for r in document.get(kind) or () if r.get("temporary_id")
    }
    if not ids:
        return
    for override in document.get("overrides") or ():
        for spec in override.get("override_specifiers") or ():
            for name in ("recurring_commit_ids", "any_commit_or_credit_ids"):
                if spec.get(name) is not None:
                    spec[name] = [ids.get(grant_id, grant_id) for grant_id in spec[name]]


def _check_commit_specific(document: dict, products: dict[str, Product]) -> None:
    """Commit-specific overrides name commits and credits of the contract (by id, or by the
    temporary_id of one created with it), or recurring commits (`recurring_commit_ids`: the commits
    they make) and, in `any_commit_or_credit_ids`, any of these or recurring credits; and price
    usage: the draws of commits on usage lines."""
    grant_ids = {g["id"] for kind in ("commits", "credits") for g in document.get(kind) or ()}
    recurring_commit_ids = {r["id"] for r in document.get("recurring_commits") or ()}
    recurring_credit_ids = {r["id"] for r in document.get("recurring_credits") or ()}
    named = {
        "commit_ids": (grant_ids, "is not a commit or credit of this contract (nor the temporary_id of one created with it)"),
        "recurring_commit_ids": (
            recurring_commit_ids, "is not a recurring commit of this contract (nor the temporary_id of one created with it)"
        ),
        "any_commit_or_credit_ids": (
            grant_ids | recurring_commit_ids | recurring_credit_ids,
            "is not a commit, credit, recurring commit or recurring credit of this contract (nor the temporary_id of one "
            "created with it)",
        ),
    }
    for index, override in enumerate(document.get("overrides") or ()):
        if not override.get("is_commit_specific"):
            continue
        product = products.get(override.get("product_id") or "")
        if product is not None and product.type is not ProductType.USAGE:
            raise InvalidInput(
                f"overrides[{index}].product_id", "commit-specific overrides price usage products (what commits pay for)"
            )
        for position, spec in enumerate(override.get("override_specifiers") or ()):
            for name, (known, rule) in named.items():
                for k, grant_id in enumerate(spec.get(name) or ()):
                    if grant_id not in known:
                        raise InvalidInput(f"overrides[{index}].override_specifiers[{position}].{name}[{k}]", rule)


def _window(contract: Contract) -> ContractWindow:
    return ContractWindow(
        contract.id, contract.starting_at, contract.ending_before, contract.usage_filter, contract.usage_filter_updates
    )
