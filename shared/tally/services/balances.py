"""Commits and credits of a customer, their balances and ledgers, and how they meet the invoices.

Grants live in two places: contract-level ones inside their contract document (`commits`,
`credits`), customer-level ones as documents of their own. Manual ledger entries are documents
too. Nothing derived is stored: balances, drawdowns, expirations and true-ups are recomputed by
the pure burn-down (billing/balances) from the grants, the draft invoices' lines and the manual
entries, so a rate card change or a late event moves every balance consistently.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Mapping, Protocol, Sequence

from tally.billing.balances import (
    AccessSegment,
    BalanceFilter,
    BurnDown,
    CommitRateType,
    Grant,
    GrantKind,
    InvoiceItem,
    ManualEntry,
    Specifier,
    check_manual_entry,
    net_balance,
    validate_grant,
)
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.hierarchy import children_of, served_children
from tally.billing.pricing import Product, ProductType
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.recurring_grants import made_grants
from tally.services.together import together


class DocumentStore(Protocol):
    def create(self, document: dict, uniqueness_key: str | None = None) -> None: ...
    def get(self, document_id: str) -> dict | None: ...
    def replace(self, document: dict, invoices_written: int | None = None) -> None: ...
    def list_for_customer(self, customer_id: str) -> list[dict]: ...


class ContractDocuments(Protocol):
    def customer(self, customer_id: str): ...
    def list(self, customer_id: str) -> list[dict]: ...
    def get(self, customer_id: str, contract_id: str) -> dict: ...
    def products(self) -> dict[str, Product]: ...


def grant_from_document(doc: dict, contract_id: str | None = None) -> Grant:
    """The domain Grant of a stored document; `contract_id` for grants stored inside a contract."""
    return Grant(
        id=doc["id"],
        kind=GrantKind(doc["type"]),
        product_id=doc["product_id"],
        credit_type_id=doc["credit_type_id"],
        access_schedule=tuple(
            AccessSegment(
                s["id"],
                Decimal(s["amount"]),
                parse_rfc3339(s["starting_at"]),
                parse_rfc3339(s["ending_before"]),
                None if s.get("rollover_ending_before") is None else parse_rfc3339(s["rollover_ending_before"]),
            )
            for s in doc["access_schedule"]
        ),
        contract_id=contract_id if contract_id is not None else doc.get("contract_id"),
        name=doc.get("name"),
        priority=None if doc.get("priority") is None else Decimal(doc["priority"]),
        applicable_product_ids=tuple(doc.get("applicable_product_ids") or ()),
        applicable_product_tags=tuple(doc.get("applicable_product_tags") or ()),
        specifiers=tuple(
            Specifier(
                s.get("product_id"),
                tuple(s.get("product_tags") or ()),
                s.get("pricing_group_values"),
                s.get("presentation_group_values"),
            )
            for s in doc.get("specifiers") or ()
        ),
        rate_type=CommitRateType(doc.get("rate_type") or CommitRateType.LIST_RATE.value),
        rollover_fraction=None if doc.get("rollover_fraction") is None else Decimal(doc["rollover_fraction"]),
        invoice_schedule=tuple(
            InvoiceItem(
                i["id"],
                parse_rfc3339(i["timestamp"]),
                Decimal(i["amount"]),
                None if i.get("quantity") is None else Decimal(i["quantity"]),
                None if i.get("unit_price") is None else Decimal(i["unit_price"]),
            )
            for i in doc.get("invoice_schedule") or ()
        ),
        recurring_id=doc.get("recurring_commit_id") or doc.get("recurring_credit_id"),
        by_quantity=doc.get("access_type") == "QUANTITY",
    )


def contract_grant_document(doc: dict, contract: dict) -> dict:
    """A grant stored inside a contract, as a document of its own: it names its contract, and it
    was created when and by whom the contract was, unless it records its own creation."""
    inherited = {"created_at": contract.get("created_at"), "created_by": contract.get("created_by")}
    return {k: v for k, v in inherited.items() if v is not None} | doc | {"contract_id": contract["id"], "stored_in_contract": True}


def validate_grant_document(doc: dict, products: dict[str, Product], field_prefix: str) -> Grant:
    """Everything the burn-down relies on, with field names of the request."""
    grant = grant_from_document(doc)
    validate_grant(grant, products.keys(), field_prefix)
    prefix = f"{field_prefix}." if field_prefix else ""
    product = products.get(grant.product_id)
    if product is None:
        raise InvalidInput(f"{prefix}product_id", "is not a known product")
    if product.type is not ProductType.FIXED:
        raise InvalidInput(f"{prefix}product_id", "commits and credits are invoiced under a FIXED product")
    return grant


@dataclass(frozen=True, slots=True)
class CustomerGrants:
    """Every grant and manual entry of one customer, with where each grant is stored."""

    grants: tuple[Grant, ...]
    documents: dict[str, dict]  # grant id -> its document
    manual_entries: tuple[ManualEntry, ...]
    # Contract-level grants archived by an edit (archived_grant): never priced, kept for their ledgers.
    archived: tuple[Grant, ...] = ()


def _renewed(grant: Grant, contract: dict) -> Grant:
    """A grant of a contract transitioned from since: rolled over into a renewal (RENEWAL), and, with
    future_invoice_behavior.trueup REMOVE, a postpaid commit whose true-up is due at or after the
    transition has it removed (its invoice item dropped: no true-up invoice, no true-up entry)."""
    for transition in contract.get("transitions") or ():
        if transition["from_contract_id"] != contract["id"]:
            continue
        at = parse_rfc3339(contract["ending_before"])
        if transition["type"] == "RENEWAL":
            grant = grant.renewed_into(transition["to_contract_id"], at)
        if (transition.get("future_invoice_behavior") or {}).get("trueup") == "REMOVE" and grant.kind is GrantKind.POSTPAID:
            grant = replace(grant, invoice_schedule=tuple(i for i in grant.invoice_schedule if i.timestamp < at))
    return grant


def archived_grant(doc: dict, contract_id: str) -> Grant:
    """An archived commit or credit as its ledger shows it: its access ends at the archive instant
    (what is left then expires), with no rollover and no true-up. It is never priced: drafts do not
    draw from it (an edit takes it off the contract), only its finalized drawdowns are replayed."""
    at = parse_rfc3339(doc["archived_at"])
    grant = grant_from_document(doc, contract_id)
    access = tuple(
        s if s.ending_before <= at else replace(s, ending_before=at, rollover_ending_before=None)
        for s in grant.access_schedule
        if s.starting_at < at
    )
    return replace(grant, access_schedule=access, rollover_fraction=None, invoice_schedule=())


class GrantBook:
    """Reads a customer's grants (contract-level, those the contracts' recurring commits and credits
    have made by now and their threshold crossings bought, and customer-level) and manual entries."""

    def __init__(
        self,
        contracts: ContractDocuments,
        grants: DocumentStore,
        manual: DocumentStore,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        threshold_commits: Callable[[dict], list[dict]] | None = None,
    ) -> None:
        self._contracts = contracts
        self._grants = grants
        self._manual = manual
        self._clock = clock
        # The commits a contract's threshold crossings bought (services/thresholds.ThresholdGrants).
        self._threshold_commits = threshold_commits

    def of_customer(self, customer_id: str, contracts: list[dict] | None = None) -> CustomerGrants:
        """`contracts`: the customer's (unarchived) contracts, if already read."""
        grants: list[Grant] = []
        documents: dict[str, dict] = {}
        archived: list[Grant] = []
        now = self._clock()
        # Three independent reads, sent together.
        listed, stored_grants, manual_documents = together([
            (lambda: contracts) if contracts is not None else (lambda: self._contracts.list(customer_id)),
            lambda: self._grants.list_for_customer(customer_id),
            lambda: self._manual.list_for_customer(customer_id),
        ])
        for contract in listed:
            for doc in (contract.get("archived_commits") or []) + (contract.get("archived_credits") or []):
                archived.append(archived_grant(doc, contract["id"]))
            made = made_grants(contract, now)
            stored = (contract.get("commits") or []) + (contract.get("credits") or [])
            bought = self._threshold_commits(contract) if self._threshold_commits is not None else []
            children = [c["contract_id"] for c in children_of(contract)]
            for doc in stored + made["commits"] + made["credits"] + bought:
                grant = _renewed(grant_from_document(doc, contract["id"]), contract)
                if children and doc.get("hierarchy_configuration"):
                    grant = replace(grant, child_contract_ids=served_children(doc["hierarchy_configuration"], children))
                grants.append(grant)
                documents[doc["id"]] = contract_grant_document(doc, contract)
        for doc in stored_grants:
            if doc.get("archived_at"):
                continue
            grants.append(grant_from_document(doc))
            documents[doc["id"]] = doc
        manual = tuple(
            ManualEntry(d["grant_id"], d["segment_id"], Decimal(d["amount"]), parse_rfc3339(d["timestamp"]), d["reason"])
            for d in manual_documents
        )
        return CustomerGrants(tuple(grants), documents, manual, tuple(archived))

    def of_family(self, customer_id: str, members: Sequence[str]) -> CustomerGrants:
        """The grants of a hierarchy priced together (services/hierarchy.py): `customer_id`'s and its
        family `members'`, each customer-level grant limited to its own customer's contracts."""
        if not members:
            return self.of_customer(customer_id)
        grants: list[Grant] = []
        documents: dict[str, dict] = {}
        manual: list[ManualEntry] = []
        archived: list[Grant] = []
        for member in (customer_id, *members):
            try:
                own = self.of_customer(member)
                contract_ids = frozenset(d["id"] for d in self._contracts.list(member, include_archived=True))
            except NotFound:
                if member == customer_id:
                    raise
                continue  # a member no longer there shares nothing
            grants += [g if g.contract_id is not None else replace(g, customer_contract_ids=contract_ids) for g in own.grants]
            documents |= own.documents
            manual += own.manual_entries
            archived += own.archived
        return CustomerGrants(tuple(grants), documents, tuple(manual), tuple(archived))


class BurnDowns(Protocol):
    """The invoice service: it prices every draft, so it runs the burn-down."""

    def burn_down(self, customer_id: str) -> BurnDown: ...

    def balances_burn_down(self, customer_id: str) -> BurnDown:
        """burn_down's balances, from the customer's balance checkpoint when it holds (its ledger
        then starts at the checkpoint)."""

    def burn_inputs(self, customer_id: str) -> tuple: ...

    def commit_invoice_ids(self, customer_id: str, grants: CustomerGrants) -> dict[str, str]: ...

    def archived_burn_down(self, customer_id: str, grants: CustomerGrants) -> BurnDown: ...


@dataclass(frozen=True)
class GrantFigures:
    """What a commit's or credit's answer shows beyond its document, read once for a customer:
    the invoice billing each invoice schedule item, and, when asked for, the burn-down whose
    balances and ledgers /v1/contracts/customerBalances/list shows (so every route agrees)."""

    grants: CustomerGrants
    invoice_ids: Mapping[str, str]  # invoice schedule item id -> id of the invoice billing it
    burn: BurnDown | None = None
    archived_burn: BurnDown | None = None  # the archived grants' own (BurnDowns.archived_burn_down)

    def _burn_of(self, grant_id: str) -> BurnDown | None:
        if self.archived_burn is not None and any(g.id == grant_id for g in self.grants.archived):
            return self.archived_burn
        return self.burn

    def balance(self, grant_id: str, at: datetime | None = None) -> Decimal | None:
        burn = self._burn_of(grant_id)
        return None if burn is None else burn.grant_balance(grant_id, at)

    def ledger(self, grant_id: str) -> list | None:
        burn = self._burn_of(grant_id)
        return None if burn is None else burn.grant_ledger(grant_id)


class BalanceService:
    def __init__(
        self,
        contracts: ContractDocuments,
        book: GrantBook,
        grants: DocumentStore,
        manual: DocumentStore,
        burn_downs: BurnDowns,
        clock: Callable[[], datetime],
    ) -> None:
        self._contracts = contracts
        self._book = book
        self._grants = grants
        self._manual = manual
        self._burn_downs = burn_downs
        self._clock = clock

    # -- writes ------------------------------------------------------------------------------
    def create_customer_grant(self, document: dict) -> dict:
        """A customer-level commit or credit; nothing is stored unless it validates."""
        customer_id = document["customer_id"]
        self._contracts.customer(customer_id)
        contracts = {c["id"] for c in self._contracts.list(customer_id)}
        if document.get("contract_id") is not None and document["contract_id"] not in contracts:
            raise InvalidInput("applicable_contract_ids[0]", "is not a contract of the customer")
        if document.get("invoice_contract_id") is not None and document["invoice_contract_id"] not in contracts:
            raise InvalidInput("invoice_contract_id", "is not a contract of the customer")
        if document.get("invoice_schedule") and document.get("invoice_contract_id") is None:
            raise InvalidInput("invoice_contract_id", "is required for a commit with an invoice schedule")
        if document.get("hierarchy_configuration") is not None:
            raise InvalidInput("hierarchy_configuration", "child access is set on a parent contract's commits and credits, not a customer's")
        validate_grant_document(document, self._contracts.products(), "")
        self._grants.create(document, document.get("uniqueness_key"))
        return document

    def update_end_date(self, customer_id: str, grant_id: str, kind: str, access_ending_before: datetime | None,
                        invoices_ending_before: datetime | None) -> dict:
        """Customer-level grants only: cut the access schedule (and invoice schedule) at a new end."""
        document = self._grants.get(grant_id)
        if document is None or document["customer_id"] != customer_id or (document["type"] == "CREDIT") != (kind == "CREDIT"):
            raise NotFound(f"{kind.lower()} {grant_id} not found for customer {customer_id}")
        changed = dict(document)
        if access_ending_before is not None:
            end = format_rfc3339(access_ending_before)
            kept = []
            for segment in document["access_schedule"]:
                if parse_rfc3339(segment["starting_at"]) >= access_ending_before:
                    continue
                if parse_rfc3339(segment["ending_before"]) > access_ending_before:
                    segment = dict(segment, ending_before=end)
                kept.append(segment)
            changed["access_schedule"] = kept
        if invoices_ending_before is not None:
            changed["invoice_schedule"] = [
                i for i in document.get("invoice_schedule") or () if parse_rfc3339(i["timestamp"]) < invoices_ending_before
            ]
        validate_grant_document(changed, self._contracts.products(), "")
        self._grants.replace(changed)
        return changed

    def add_manual_entry(
        self, customer_id: str, grant_id: str, segment_id: str, amount: Decimal, reason: str,
        timestamp: datetime | None, uniqueness_key: str | None, per_group_amounts: Mapping[str, Decimal] | None = None,
    ) -> None:
        """A manual ledger entry on one segment. `per_group_amounts` splits the amount by seat
        (Metronome: for grants of seat-based subscriptions): it must add up to the amount, and is
        kept with the entry; the segment's balance moves by the amount either way."""
        self._contracts.customer(customer_id)
        if per_group_amounts is not None and sum(per_group_amounts.values(), Decimal(0)) != amount:
            raise InvalidInput("per_group_amounts", f"must add up to amount ({amount})")
        grants, charges, manual, tags, credit_types = self._burn_downs.burn_inputs(customer_id)
        if not any(g.id == grant_id for g in grants):
            raise NotFound(f"commit or credit {grant_id} not found for customer {customer_id}")
        entry = ManualEntry(grant_id, segment_id, amount, timestamp or self._clock(), reason)
        # InvalidInput naming the field when the segment is unknown or the entry would overdraw it
        check_manual_entry(entry, grants, charges, manual, tags, credit_types)
        document = {
            "id": str(uuid.uuid4()),
            "customer_id": customer_id,
            "grant_id": grant_id,
            "segment_id": segment_id,
            "amount": amount,
            "reason": reason,
            "timestamp": format_rfc3339(entry.timestamp),
        }
        if per_group_amounts is not None:
            document["per_group_amounts"] = dict(per_group_amounts)
        self._manual.create(document, uniqueness_key)

    # -- reads -------------------------------------------------------------------------------
    def grants(self, customer_id: str) -> CustomerGrants:
        self._contracts.customer(customer_id)
        return self._book.of_customer(customer_id)

    def burn_down(self, customer_id: str) -> BurnDown:
        return self._burn_downs.burn_down(customer_id)

    def balances_burn_down(self, customer_id: str) -> BurnDown:
        """The burn-down for balances only (from the balance checkpoint when it holds): its ledger
        may start at the checkpoint, its balances are burn_down's."""
        return self._burn_downs.balances_burn_down(customer_id)

    def figures(self, customer_id: str, *, with_balances: bool, with_ledgers: bool = True) -> GrantFigures:
        """The customer's grants with their invoice links, and their burn-down if `with_balances`
        (whole, for its ledgers, with `with_ledgers`; else from the balance checkpoint)."""
        grants = self.grants(customer_id)
        burn = None
        if with_balances and grants.grants:
            burn = self.burn_down(customer_id) if with_ledgers else self._burn_downs.balances_burn_down(customer_id)
        archived = self._burn_downs.archived_burn_down(customer_id, grants) if with_balances and grants.archived else None
        return GrantFigures(grants, self._burn_downs.commit_invoice_ids(customer_id, grants), burn, archived)

    def grant_custom_fields(self, customer_id: str) -> dict[str, tuple[Mapping[str, str], Mapping[str, str]]]:
        """Grant id -> (its custom fields, its contract's; {} for a customer-level grant's)."""
        contracts = {c["id"]: c.get("custom_fields") or {} for c in self._contracts.list(customer_id)}
        documents = self._book.of_customer(customer_id).documents
        return {
            grant_id: (doc.get("custom_fields") or {}, contracts.get(doc.get("contract_id") or "", {}) if doc.get("stored_in_contract") else {})
            for grant_id, doc in documents.items()
        }

    def net_balance(
        self, customer_id: str, credit_type_id: str | None, include_drafts: bool, filters: Sequence[BalanceFilter] = ()
    ) -> Decimal:
        """What the commits and credits in effect still hold now, in one credit type: every kind
        (Metronome's getNetBalance; a postpaid commit's is what it still covers), or the grants
        matching any of `filters`."""
        burn = self.balances_burn_down(customer_id)
        grant_ids = None
        if filters:
            grants = self._book.of_customer(customer_id)
            grant_ids = {
                g.id
                for g in grants.grants
                if any(f.matches(g.id, g.kind, grants.documents[g.id].get("custom_fields") or {}) for f in filters)
            }
        return net_balance(burn, include_drafts=include_drafts, credit_type_id=credit_type_id, grant_ids=grant_ids)
