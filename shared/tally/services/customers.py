"""Customers: creation, lookup, ingest aliases, name and configuration, archiving."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Callable

from tally.billing.customers import Customer, validate_aliases
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.limits import MAX_IDS_PER_REQUEST
from tally.services.ports import CustomerStore, Page

MAX_SET_NAME_LENGTH = 160  # Metronome truncates setName's name to this


class CustomerService:
    def __init__(self, store: CustomerStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def create(
        self,
        name: str,
        ingest_aliases: list[str],
        external_id: str | None,
        custom_fields: dict[str, str],
    ) -> Customer:
        if not name or not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        aliases = validate_aliases("ingest_aliases", ingest_aliases)
        if external_id is not None and not external_id.strip():
            raise InvalidInput("external_id", "must be a non-empty string when given")
        if external_id is not None and len(external_id) > 128:
            raise InvalidInput("external_id", "must be at most 128 characters")
        now = self._clock()
        customer = Customer(
            id=str(uuid.uuid4()),
            name=name,
            external_id=external_id,
            ingest_aliases=aliases,
            custom_fields=dict(custom_fields),
            created_at=now,
            updated_at=now,
        )
        customer = replace(customer, alias_since=self._store.released_until(customer.claimed_aliases))
        self._store.create(customer)  # Conflict if an alias is taken; nothing is written then
        return customer

    def get(self, customer_id: str) -> Customer:
        customer = self._store.get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer

    def by_alias(self, alias: str) -> Customer | None:
        return self._store.by_alias(alias)

    def list(
        self,
        limit: int,
        cursor: str | None,
        *,
        customer_ids: list[str] | None = None,
        ingest_alias: str | None = None,
        only_archived: bool = False,
        salesforce_account_ids: list[str] | None = None,
    ) -> Page:
        """A page of customers: the active ones, or (only_archived) the archived ones, narrowed to
        the ids, the alias's owner and/or the Salesforce account ids given (Metronome's filters,
        combined). An unknown id or alias matches nothing. Ids and an alias are read directly; a
        Salesforce filter walks the listing a page at a time (no index: the page may hold fewer
        than `limit`, and next_page goes on from where it stopped)."""
        for name, values in (("customer_ids", customer_ids), ("salesforce_account_ids", salesforce_account_ids)):
            if values is not None and len(values) > MAX_IDS_PER_REQUEST:
                raise InvalidInput(name, f"must name at most {MAX_IDS_PER_REQUEST} ids, got {len(values)}")

        def wanted(c: Customer) -> bool:
            return (c.archived_at is not None) == only_archived and (
                salesforce_account_ids is None or c.salesforce_account_id in salesforce_account_ids
            )

        if customer_ids is not None or ingest_alias is not None:
            found = [c for cid in dict.fromkeys(customer_ids or ()) if (c := self._store.get(cid)) is not None]
            if ingest_alias is not None:
                owner = self._store.by_alias(ingest_alias)
                found = [owner] if owner is not None and (customer_ids is None or owner in found) else []
            return Page([c for c in found if wanted(c)], None)
        page = self._store.list(limit, cursor)
        return Page([c for c in page.items if wanted(c)], page.next_page)

    def set_ingest_aliases(self, customer_id: str, aliases: list[str]) -> Customer:
        return self.update_config(customer_id, ingest_aliases=aliases)

    def set_name(self, customer_id: str, name: str) -> Customer:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("name", "must be a non-empty string")
        before = self.get(customer_id)
        # Metronome truncates a longer name to 160 characters rather than refusing it.
        after = replace(before, name=name[:MAX_SET_NAME_LENGTH], updated_at=self._clock())
        self._store.replace_aliases(before, after)  # aliases unchanged: a conditional put of the record
        return after

    def update_config(
        self,
        customer_id: str,
        *,
        ingest_aliases: list[str] | None = None,
        salesforce_account_id: str | None = None,
    ) -> Customer:
        """Replace the ingest aliases (releasing the old ones, claiming the new ones) and/or set the
        Salesforce account id, in one transaction; a taken alias is a Conflict and changes nothing."""
        before = self.get(customer_id)
        changes: dict = {"updated_at": self._clock()}
        if ingest_aliases is not None:
            if before.archived_at is not None:
                raise InvalidInput("ingest_aliases", "cannot be set on an archived customer")
            changes["ingest_aliases"] = validate_aliases("ingest_aliases", ingest_aliases)
        if salesforce_account_id is not None:
            if not salesforce_account_id.strip():
                raise InvalidInput("salesforce_account_id", "must be a non-empty string when given")
            changes["salesforce_account_id"] = salesforce_account_id
        after = replace(before, **changes)
        after = self._hand_over(before, after)
        self._store.replace_aliases(before, after)
        return after

    def _hand_over(self, before: Customer, after: Customer) -> Customer:
        """`after` with its released aliases kept up to the release (its usage under them stays its
        own) and the aliases it takes over from another customer read from that one's release on."""
        removed = [a for a in before.claimed_aliases if a not in after.claimed_aliases]
        added = [a for a in after.claimed_aliases if a not in before.claimed_aliases]
        if not removed and not added:
            return after
        since = {a: t for a, t in before.alias_since.items() if a in after.claimed_aliases}
        since |= self._store.released_until(added) if added else {}
        return replace(after, alias_since=since, former_keys=before.released(removed, after.updated_at))

    def archive(self, customer_id: str) -> Customer:
        """Archive: the customer's ingest aliases (and external id) are released in the same
        transaction that records archived_at, so another customer may claim them at once; from then
        on only events sent under the customer's own id are its keys. Archiving twice changes nothing."""
        before = self.get(customer_id)
        if before.archived_at is not None:
            return before
        now = self._clock()
        after = self._hand_over(before, replace(before, ingest_aliases=(), archived_at=now, updated_at=now))
        self._store.replace_aliases(before, after)
        return after
