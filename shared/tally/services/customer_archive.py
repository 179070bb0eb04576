"""Archiving a customer: its aliases are released (CustomerService.archive) and its contracts end.

As in Metronome, an archived customer is billed no further: each live contract ends at the archive
edge (the first UTC hour at or after the archive instant, since contract dates are hour-aligned and
the customer's usage up to the instant is its own) through the contract-edit machinery, so the edit
is in the contract's history and the current draft stops there. A contract that would only start
after the edge is archived instead. Finalized invoices are never touched and stay readable.

Retries: archiving again re-reads the recorded archive instant and finishes what a crashed attempt
left; a contract already ending by the edge is left alone, and each end-date edit carries the
uniqueness key ARCHIVE_EDIT_KEY, so two racing attempts make one edit.
"""

from __future__ import annotations

from tally.billing.customers import Customer, release_edge
from tally.billing.errors import Conflict
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.contract_edits import ContractEditService
from tally.services.contracts import ContractService
from tally.services.customers import CustomerService

ARCHIVE_EDIT_KEY = "customer-archived"


class CustomerArchiving:
    def __init__(self, customers: CustomerService, contracts: ContractService, edits: ContractEditService) -> None:
        self._customers = customers
        self._contracts = contracts
        self._edits = edits

    def archive(self, customer_id: str) -> Customer:
        customer = self._customers.archive(customer_id)  # archived_at recorded once; a retry reads it
        self.end_contracts(customer)
        return customer

    def end_contracts(self, customer: Customer) -> list[str]:
        """End (or archive, if not yet started) each live contract at the archive edge; the ids changed."""
        assert customer.archived_at is not None
        edge = release_edge(customer.archived_at)
        changed = []
        for document in self._contracts.list(customer.id):
            ending = document.get("ending_before")
            if ending is not None and parse_rfc3339(ending) <= edge:
                continue  # over by then already (or ended by an earlier attempt)
            if parse_rfc3339(document["starting_at"]) >= edge:
                self._contracts.archive(customer.id, document["id"])  # never billed: nothing to keep
                changed.append(document["id"])
                continue
            try:
                self._edits.edit(
                    customer.id,
                    document["id"],
                    {"update_contract_end_date": format_rfc3339(edge)},
                    author=None,
                    uniqueness_key=ARCHIVE_EDIT_KEY,
                    allow_ending_before_finalized=True,  # finalized invoices stay as they are
                )
            except Conflict:
                # The key is claimed: a concurrent attempt made this very edit.
                history = self._edits.history(customer.id, document["id"])
                if not any(e.get("uniqueness_key") == ARCHIVE_EDIT_KEY for e in history):
                    raise
                continue
            changed.append(document["id"])
        return changed
