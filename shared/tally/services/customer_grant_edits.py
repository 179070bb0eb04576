"""Edits of customer-level commits and credits (`POST /v2/contracts/commits/edit` and
`/credits/edit` naming a grant that no contract holds).

The update is the one a contract's grants take (grant_edits: the same shape, the same rules, the
same field names), applied to the grant's own document. What finalized invoices fixed stays fixed:
a customer-level grant may pay for any contract of the customer, so the draws of every contract's
finalized invoices count, and its invoice schedule items are billed on `invoice_contract_id`'s
SCHEDULED invoices, so that contract's finalized ones are checked.

Two concurrent edits of one grant never lose either change: the write is conditional on the
grant's version (`_version`), and the loser applies its update again to what the winner stored
(Conflict after MAX_ATTEMPTS). It is also conditional on the customer's invoice record count read
before the finalized check, so an invoice finalized in between is checked by the retry. The write
counts itself (the store's grant_edits#<customer>), and a finalization is conditional on that count
read before its pricing (services/cycle_close.py), so the other order is priced again too.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Protocol

from tally.billing.errors import Conflict, InvalidInput
from tally.billing.pricing import Product
from tally.services import grant_edits
from tally.services.balances import DocumentStore, validate_grant_document
from tally.services.contract_edits import Finalized, FinalizedInvoices
from tally.services.ports import StoreUnavailable

MAX_ATTEMPTS = 5


class Products(Protocol):
    def products(self) -> dict[str, Product]: ...


class CustomerGrantEditService:
    def __init__(
        self,
        grants: DocumentStore,
        invoices: FinalizedInvoices,
        catalog: Products,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._grants = grants
        self._invoices = invoices
        self._catalog = catalog
        self._sleep = sleep

    def owns(self, customer_id: str, kind: str, grant_id: str) -> bool:
        """Whether `grant_id` is a customer-level grant of this customer and kind."""
        return self._document(customer_id, kind, grant_id) is not None

    def edit(self, customer_id: str, kind: str, update: dict) -> dict:
        """Apply `update` (grant_edits' shape, `kind` "commits" or "credits") to the customer-level
        grant it names; returns the stored document. InvalidInput names the field as
        `update_<kind>[0]...`, like a contract edit's (grant_edits.edit_grant maps it)."""
        record = {f"update_{kind}": [update]}
        grant_edits.give_ids(record, lambda: str(uuid.uuid4()))  # once: a retry adds the same items
        for _ in range(MAX_ATTEMPTS):
            document = self._document(customer_id, kind, update["id"])
            if document is None:
                raise InvalidInput(f"update_{kind}[0]", f"is not a customer-level {kind[:-1]} of the customer")
            holder = {kind: [dict(document)]}
            written, finalized = self._finalized(customer_id, document.get("invoice_contract_id"))
            grant_edits.check_finalized(holder, record, finalized)
            for _, change in grant_edits.edit_parts(record):
                change(holder)
            edited = holder[kind][0]
            validate_grant_document(edited, self._catalog.products(), f"update_{kind}[0]")
            try:
                # Conditional on the version read and on the invoices counted: a concurrent edit, or
                # an invoice finalized since the check, makes this write fail and the retry see it.
                self._grants.replace(edited, invoices_written=written)
            except Conflict:
                continue  # apply this one again to what is stored now
            return edited
        raise Conflict("the commit or credit kept changing while this edit was applied; retry it")

    def _document(self, customer_id: str, kind: str, grant_id: str) -> dict | None:
        document = self._grants.get(grant_id)
        if document is None or document.get("customer_id") != customer_id:
            return None
        if (document.get("type") == "CREDIT") != (kind == "credits"):
            return None
        return document

    def _finalized(self, customer_id: str, invoice_contract_id: str | None) -> tuple[int, Finalized]:
        """What the customer's finalized invoices fixed: every contract's draws, and the invoicing
        contract's finalized periods and SCHEDULED invoices. The listing is an index read that may
        lag the count: read again until it holds them all."""
        for attempt in range(MAX_ATTEMPTS):
            written = self._invoices.records_written(customer_id)
            records = self._invoices.list_for_customer(customer_id)
            if len(records) >= written:
                base = Finalized.of(records, invoice_contract_id) if invoice_contract_id else Finalized(None, {})
                return written, Finalized(base.usage_until, base.scheduled, drawn=grant_edits.drawn_by_finalized(records, None))
            self._sleep(0.05 * 2**attempt)
        raise StoreUnavailable(f"the invoice index of customer {customer_id} lags behind; retry")
