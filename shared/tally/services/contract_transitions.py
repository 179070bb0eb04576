"""Contract transitions (`transition` on `POST /v1/contracts/create`): a new contract takes over
from one of the customer's contracts where that one now ends.

The old contract's end date becomes the new contract's `starting_at`, in the same transaction that
creates the new contract, conditional on the old contract's version (and on the customer's
finalized invoices counted), so a concurrent edit of the old contract is never lost and a
transition happens once or not at all. The end-date change is recorded in the old contract's edit
history, as `update_contract_end_date`, like any edit, and obeys the same rule: an end inside a
finalized billing period, or one that would change a finalized SCHEDULED invoice, is refused (a
transition has no `allow_contract_ending_before_finalized_invoice`).

- RENEWAL: the renewal follows the old contract; its usage invoices start where the old one's stop.
  A commit or credit of the old contract with a `rollover_fraction` ends at the renewal, and that
  fraction of what is left then rolls over to serve the renewal until the segment's own end
  (Grant.renewed_into, applied on every read by the GrantBook, so late usage before the renewal
  still changes what rolls over until that period is finalized).
- SUPERSEDE: the new contract replaces the old one from its start; the old one's invoices after
  that (usage periods and scheduled charges, subscriptions billed in advance) are no longer
  billed, because the old contract ends there.

Both types are stored on both contracts (`transitions`). A contract is transitioned from at most
once, and only forwards in time: the new start is after the old one's start and no later than its
end.
"""

from __future__ import annotations

from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.time import parse_rfc3339
from tally.services.contract_edits import ContractEditService
from tally.services.contracts import ContractChanged, ContractService

MAX_ATTEMPTS = 5


class ContractTransitionService:
    def __init__(self, contracts: ContractService, edits: ContractEditService, store) -> None:
        self._contracts = contracts
        self._edits = edits
        self._store = store  # DynamoContractStore: create_transition

    def create(self, request: dict, uniqueness_key: str | None, author: str | None) -> dict:
        """Create the contract `request` describes (its `transition` set) and end the one it
        transitions from at its start; returns the new contract's document."""
        transition = request["transition"]
        customer_id = request["customer_id"]
        self._old(customer_id, transition["from_contract_id"], request)  # its refusals before the new one's
        new = self._contracts.prepared(request, uniqueness_key)
        for _ in range(MAX_ATTEMPTS):
            old = self._old(customer_id, transition["from_contract_id"], new)
            record = self._edits.new_record(old, {"update_contract_end_date": new["starting_at"]}, author, None)
            record["transition"] = {"to_contract_id": new["id"], "type": transition["type"]}
            try:
                plan = self._edits.checked(old, record, allow_ending_before_finalized=False)
            except InvalidInput as exc:
                raise InvalidInput("starting_at", f"ends contract {old['id']} there, which {exc.rule}") from exc
            edited, written = plan.document, plan.invoices_written
            entry = {"from_contract_id": old["id"], "to_contract_id": new["id"], "type": transition["type"]}
            if transition.get("future_invoice_behavior"):
                entry["future_invoice_behavior"] = transition["future_invoice_behavior"]
            edited["transitions"] = [*(old.get("transitions") or ()), entry]
            new["transitions"] = [entry]
            self._store.keep_version(old)  # the old contract before its new end, for as_of_date
            try:
                self._store.create_transition(new, uniqueness_key, edited, record, written)
            except ContractChanged:
                continue
            return new
        raise Conflict("the contract transitioned from kept changing; retry")

    def _old(self, customer_id: str, contract_id: str, new: dict) -> dict:
        field = "transition.from_contract_id"
        try:
            old = self._contracts.get(customer_id, contract_id)
        except NotFound as exc:
            raise InvalidInput(field, f"names no contract of customer {customer_id}") from exc
        if old.get("archived_at"):
            raise InvalidInput(field, "names an archived contract")
        if any(t["from_contract_id"] == old["id"] for t in old.get("transitions") or ()):
            raise InvalidInput(field, "names a contract that was already transitioned from")
        start = parse_rfc3339(new["starting_at"])
        if start <= parse_rfc3339(old["starting_at"]):
            raise InvalidInput("starting_at", "must be after the start of the contract transitioned from")
        if old.get("ending_before") and start > parse_rfc3339(old["ending_before"]):
            raise InvalidInput("starting_at", "must be no later than the end of the contract transitioned from")
        return old
