"""Threshold billing and auto-recharge: the configurations a contract stores, their evaluation
where usage is seen, the commits the crossings buy, and the external payment gate.

Configurations. `spend_threshold_configuration` and `prepaid_balance_threshold_configuration` are
stored in the contract document as the API shows them, plus a `revision` id that every add and
update renews (a failed payment turns one revision off). Contract create takes them, the edit's
`add_*` and `update_*` add or change them (`edit_parts`, applied by services/contract_edits.py).

Evaluation (`ThresholdBillingService.evaluate_customer`) runs where alerts run: on the counters
stream for every customer whose usage changed, after a write that moved a balance, after a create or
edit that sets a configuration, after a payment is reported. Exactly once per crossing, with
concurrent evaluators and stream retries, the way alerts are (services/alerts.py):
1. Read the contract's charges of that kind first (strongly consistent), then the inputs (drafts,
   burn-down). The burn-down reads the same charges, so inputs are at least as new as the state.
2. `decide` names crossing n+1; the charge is claimed with a conditional put keyed by (contract,
   kind, n+1). Of two evaluators that decided the same crossing one wins; the other reads again,
   now sees the new commit in its inputs, and decides again (nothing, usually).
3. The claim parks its messages in the charge (`pending`, with a lease); then they are published,
   then cleared. A crash in between leaves them pending: the next evaluation waits out the lease,
   takes it over and publishes the same envelopes (same ids; consumers drop a repeat). While a
   charge's messages are pending nothing further is decided for that kind, so messages go in order.

The commits. A charge's commit is derived, never stored in the contract: `ThresholdGrants` adds
the commits of released charges (no gate, or paid) to the customer's grants, contract-level, so
they burn down, are invoiced (SCHEDULED invoice at the crossing) and are listed like any commit.

Messages go to the alerts topic: they are Metronome's threshold notifications (webhooks of the
`payment_gate.*` family), raised by the same evaluation as alerts; the invoice a crossing issues is
announced on the invoices topic by cycle close, as every invoice is.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping, Protocol

from tally.billing.balances import GrantKind
from tally.billing.errors import Conflict, InvalidInput, NotFound, TallyError
from tally.billing.pricing import USD_CENTS, InvoiceType, Product, ProductType
from tally.billing.thresholds import (
    ChargeState,
    ChargeStatus,
    Crossing,
    PaymentGate,
    PaymentOutcome,
    ThresholdConfig,
    ThresholdKind,
    decide,
    derived_id,
    external_initiate,
    message_attributes,
    payment_status,
    recharge_window,
    threshold_reached,
    validate_config,
    workflow_id,
    DEFAULT_PRIORITY,
)
from tally.billing.time import format_rfc3339, truncate_to_hour
from tally.services.spend_trackers import tracked_spend

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
# A spend threshold far below one batch's spend makes a crossing per threshold amount; the rest
# waits for the next evaluation rather than holding one invocation.
MAX_CHARGES_PER_EVALUATION = 100
DEFAULT_LEASE = timedelta(seconds=5)
KINDS = tuple(ThresholdKind)


class ThresholdContention(TallyError):
    """A contract's charges kept changing under this evaluator; the stream retries the batch."""

    status = 503
    kind = "unavailable"


@dataclass(frozen=True, slots=True)
class StoredCharge:
    """One claimed crossing: its document (never changes), its status, and its messages still to
    publish (`pending`, under a lease)."""

    document: dict
    status: ChargeStatus
    pending: list[dict] | None = None
    lease_until: datetime | None = None
    settled_at: datetime | None = None
    payment: dict | None = None  # STRIPE gate: the Stripe object charged (recorded before it is confirmed)

    @property
    def kind(self) -> ThresholdKind:
        return ThresholdKind(self.document["kind"])

    @property
    def state(self) -> ChargeState:
        return ChargeState(self.document["crossing"], self.status, self.document["revision"])


class ThresholdStore(Protocol):
    def charges(self, contract_id: str, kind: ThresholdKind | None = None) -> list[StoredCharge]: ...
    def claim(self, document: dict, status: ChargeStatus, pending: list[dict], lease_until: datetime) -> StoredCharge | None: ...
    def by_workflow(self, workflow_id: str) -> StoredCharge | None: ...
    def settle(self, charge: StoredCharge, status: ChargeStatus, pending: list[dict], lease_until: datetime,
               at: datetime) -> StoredCharge | None: ...
    def take_lease(self, charge: StoredCharge, lease_until: datetime) -> StoredCharge | None: ...
    def clear_pending(self, charge: StoredCharge) -> None: ...
    def record_payment(self, charge: StoredCharge, payment: dict) -> StoredCharge | None: ...


class Publisher(Protocol):
    def publish(self, topic_arn: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str: ...


# -- configurations in contract documents ---------------------------------------------------------
EDIT_KEYS = (
    "add_spend_threshold_configuration", "add_prepaid_balance_threshold_configuration",
    "update_spend_threshold_configuration", "update_prepaid_balance_threshold_configuration",
)


def give_ids(record: dict, new_id: Callable[[], str]) -> None:
    """A new revision for each configuration an edit record adds or updates (made once, so that a
    retried edit records the same)."""
    for key in EDIT_KEYS:
        if key in record:
            record[key]["revision"] = new_id()


def merged(config: dict, update: dict) -> dict:
    """A stored configuration with an update's fields: a null clears a field (Metronome: "set to
    null to clear"), `commit` and `discount_configuration` merge field by field."""
    result = copy.deepcopy(config)
    for name, value in update.items():
        if name in ("commit", "discount_configuration") and value is not None:
            part = dict(result.get(name) or {})
            for field, inner in value.items():
                if inner is None:
                    part.pop(field, None)
                else:
                    part[field] = copy.deepcopy(inner)
            if part:
                result[name] = part
            else:
                result.pop(name, None)
        elif value is None:
            result.pop(name, None)
        else:
            result[name] = copy.deepcopy(value)
    return result


def _add(doc: dict, kind: ThresholdKind, config: dict, field: str) -> None:
    if doc.get(kind.value) is not None:
        raise InvalidInput(field, f"the contract has a {kind.value} already; change it with update_{kind.value}")
    doc[kind.value] = copy.deepcopy(config)


def _update(doc: dict, kind: ThresholdKind, update: dict, field: str) -> None:
    if doc.get(kind.value) is None:
        raise InvalidInput(field, f"the contract has no {kind.value}; add one with add_{kind.value}")
    doc[kind.value] = merged(doc[kind.value], update)
    validate_config(kind, doc[kind.value], field)


def edit_parts(record: dict) -> Iterator[tuple[str, Callable[[dict], None]]]:
    """(request field, change to the contract document) for each configuration the record adds or
    updates. Effective at once: they change what the next evaluation decides, never an invoice."""
    for kind in KINDS:
        add, update = f"add_{kind.value}", f"update_{kind.value}"
        if add in record:
            yield add, lambda d, k=kind, c=record[add], f=add: _add(d, k, c, f)
        if update in record:
            yield update, lambda d, k=kind, u=record[update], f=update: _update(d, k, u, f)


def request_field(error: InvalidInput, record: dict) -> InvalidInput | None:
    """An error naming a stored configuration's field, renamed to the edit request's field."""
    for kind in KINDS:
        if error.field == kind.value or error.field.startswith(f"{kind.value}."):
            for key in (f"update_{kind.value}", f"add_{kind.value}"):
                if key in record:
                    return InvalidInput(key + error.field[len(kind.value):], error.rule)
    return None


def _known_product(products: Mapping[str, Product], product_id: Any, field: str, fixed: bool = False) -> None:
    product = products.get(product_id) if isinstance(product_id, str) else None
    if product is None:
        raise InvalidInput(field, "is not a known product")
    if fixed and product.type is not ProductType.FIXED:
        raise InvalidInput(field, "threshold commits are invoiced under a FIXED product")


def validate_threshold_documents(document: dict, products: Mapping[str, Product]) -> None:
    """The configurations a contract document holds (services/contracts.py validates with it)."""
    for kind in KINDS:
        config = document.get(kind.value)
        if config is None:
            continue
        validate_config(kind, config, kind.value)
        commit = config["commit"]
        _known_product(products, commit.get("product_id"), f"{kind.value}.commit.product_id", fixed=True)
        for index, product_id in enumerate(commit.get("applicable_product_ids") or ()):
            _known_product(products, product_id, f"{kind.value}.commit.applicable_product_ids[{index}]")
        for index, spec in enumerate(commit.get("specifiers") or ()):
            if spec.get("product_id") is not None:
                _known_product(products, spec["product_id"], f"{kind.value}.commit.specifiers[{index}].product_id")
        if config.get("custom_credit_type_id") not in (None, USD_CENTS.id):
            raise InvalidInput(
                f"{kind.value}.custom_credit_type_id", "is not a known credit type (only USD (cents) is supported on contracts)"
            )


def sets_threshold(changes: Mapping[str, Any]) -> bool:
    """Whether a contract create (its document) or an edit (its changes) adds or updates a
    configuration: Metronome evaluates the contract at once then ("Toggling to true will result an
    immediate evaluation")."""
    return any(changes.get(k) is not None for k in (*EDIT_KEYS, *(kind.value for kind in KINDS)))


def threshold_config_json(config: Mapping[str, Any]) -> dict:
    """A stored configuration as the SDK's SpendThresholdConfiguration or
    PrepaidBalanceThresholdConfiguration (v1 and v2 alike)."""
    return {k: copy.deepcopy(v) for k, v in config.items() if k != "revision"}


def threshold_update_json(update: Mapping[str, Any]) -> dict:
    """An edit's update_*_threshold_configuration, as the edit history shows it."""
    return {k: copy.deepcopy(v) for k, v in update.items() if k != "revision"}


# -- the commits crossings buy -------------------------------------------------------------------
class ThresholdGrants:
    """The commits of a contract's released charges, as grant documents (balances.GrantBook adds
    them to the customer's grants). Only contracts that were ever configured have charges."""

    def __init__(self, store: ThresholdStore) -> None:
        self._store = store

    def of_contract(self, contract: Mapping[str, Any]) -> list[dict]:
        if not any(contract.get(kind.value) is not None for kind in KINDS):
            return []
        return [c.document["commit"] for c in self._store.charges(contract["id"]) if c.status.released]


def commit_document(
    config: ThresholdConfig, contract_id: str, crossing: Crossing, workflow: str, at: datetime,
    access: tuple[datetime, datetime], credit_type_id: str,
) -> dict:
    """The PREPAID commit a crossing buys: `access_amount` over `access`, invoiced `invoice_amount`
    at the crossing. Ids derive from the workflow id, so every claimer builds the same document."""
    commit = config.commit
    document: dict[str, Any] = {
        "id": derived_id(workflow, "commit"),
        "type": GrantKind.PREPAID.value,
        "product_id": commit["product_id"],
        "priority": Decimal(commit["priority"]) if commit.get("priority") is not None else DEFAULT_PRIORITY,
        "credit_type_id": credit_type_id,
        "access_schedule": [
            {
                "id": derived_id(workflow, "access"),
                "amount": crossing.access_amount,
                "starting_at": format_rfc3339(access[0]),
                "ending_before": format_rfc3339(access[1]),
            }
        ],
        "invoice_schedule": [
            {
                "id": derived_id(workflow, "invoice"),
                "timestamp": format_rfc3339(at),
                "amount": crossing.invoice_amount,
                "quantity": Decimal(1),
                "unit_price": crossing.invoice_amount,
            }
        ],
        "applicable_product_ids": list(commit.get("applicable_product_ids") or ()),
        "applicable_product_tags": list(commit.get("applicable_product_tags") or ()),
        "specifiers": [dict(s) for s in commit.get("specifiers") or ()],
        "rate_type": commit.get("rate_type") or "LIST_RATE",
        "custom_fields": {},
        "created_at": format_rfc3339(at),
        "threshold_workflow_id": workflow,
    }
    for name in ("name", "description", "rollover_fraction"):
        if commit.get(name) is not None:
            document[name] = commit[name]
    if crossing.discounted:  # spend trackers with DISCOUNTED_ONLY count it
        document["spend_tracker_attributes"] = {"counts_as_discounted": True}
    return document


# -- the service ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ThresholdEvaluation:
    charged: int = 0
    republished: int = 0

    def __add__(self, other: ThresholdEvaluation) -> ThresholdEvaluation:
        return ThresholdEvaluation(self.charged + other.charged, self.republished + other.republished)


class Contracts(Protocol):
    """services/contracts.py ContractService."""

    def list(self, customer_id: str) -> list[dict]: ...
    def get(self, customer_id: str, contract_id: str) -> dict: ...
    def contract(self, document: dict): ...


class ContractWrites(Protocol):
    def replace(self, document: dict) -> None: ...


class ThresholdBillingService:
    def __init__(
        self,
        contracts: Contracts,
        contract_writes: ContractWrites,
        invoices: Any,  # InvoiceService: list
        balances: Any,  # BalanceService: grants, burn_down
        store: ThresholdStore,
        publisher: Publisher,
        topic_arn: Callable[[], str],
        clock: Callable[[], datetime],
        *,
        lease: timedelta = DEFAULT_LEASE,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._contracts = contracts
        self._contract_writes = contract_writes
        self._invoices = invoices
        self._balances = balances
        self._store = store
        self._publisher = publisher
        self._topic_arn = topic_arn
        self._clock = clock
        self._lease = lease
        self._sleep = sleep

    # -- evaluation --------------------------------------------------------------------------
    def evaluate_customer(self, customer_id: str) -> ThresholdEvaluation:
        """Every configured threshold of the customer's live contracts."""
        total = ThresholdEvaluation()
        for document in self._contracts.list(customer_id):
            for kind in KINDS:
                if document.get(kind.value) is not None:
                    total += self._evaluate(customer_id, document, kind)
        return total

    def _evaluate(self, customer_id: str, document: dict, kind: ThresholdKind) -> ThresholdEvaluation:
        config = ThresholdConfig.of(kind, document[kind.value])
        contract = self._contracts.contract(document)
        outcome = ThresholdEvaluation()
        attempts = 0
        while attempts < MAX_ATTEMPTS:
            charges = self._store.charges(document["id"], kind)  # the state first, the inputs after it
            unpublished = [c for c in charges if c.pending is not None]
            if unpublished:
                for charge in unpublished:
                    outcome += self._finish_pending(charge)
                attempts += 1
                continue
            states = [c.state for c in charges]
            # Pricing is the expensive read: skip it when no value could make a crossing.
            if decide(config, states, config.threshold_amount, contract.rate_card.fiat_credit_type) is None:
                return outcome
            now = self._clock()
            value = self._reading(customer_id, document, contract, config, now)
            tracked = self._tracked_spend(document, contract, config, now)
            crossing = decide(config, states, value, contract.rate_card.fiat_credit_type, tracked)
            if crossing is None:
                return outcome
            claimed = self._claim(customer_id, document, contract, config, crossing, now)
            if claimed is None:
                attempts += 1  # someone claimed it first: read again, decide again
                continue
            self._publish(claimed)
            outcome += ThresholdEvaluation(charged=1)
            if outcome.charged >= MAX_CHARGES_PER_EVALUATION:
                logger.warning("contract %s: %d %s crossings in one evaluation; the next one goes on",
                               document["id"], outcome.charged, kind.workflow_type)
                return outcome
        raise ThresholdContention(f"{kind.value} of contract {document['id']} kept changing")

    def _tracked_spend(self, document: dict, contract, config: ThresholdConfig, now: datetime) -> Decimal:
        """The spend the discount's cap is measured against (0 without a cap). It counts the
        commits this contract's released crossings bought; a crossing is still claimed once, by its
        number, whatever the reading."""
        if config.cap_alias is None:
            return Decimal(0)
        bought = [c.document["commit"] for c in self._store.charges(document["id"]) if c.status.released]
        return tracked_spend(document, contract, config.cap_alias, bought, now)

    def _reading(self, customer_id: str, document: dict, contract, config: ThresholdConfig, now: datetime) -> Decimal | None:
        if config.kind is ThresholdKind.SPEND:
            return self._uncollected_spend(customer_id, document["id"], contract, now)
        return self._balance(customer_id, document, config)

    def _uncollected_spend(self, customer_id: str, contract_id: str, contract, now: datetime) -> Decimal | None:
        """The total of the contract's current USAGE draft (after commits and credits): what it has
        spent in the period and nobody has collected yet. None outside the contract."""
        period = contract.period_containing(now)
        if period is None:
            return None
        fiat = contract.rate_card.fiat_credit_type
        drafts: list = []
        offset: int | None = 0
        while offset is not None:
            page, offset = self._invoices.list(
                customer_id, offset=offset, contract_id=contract_id, starting_on=period.starting_at,
                ending_before=period.ending_before,
            )
            drafts += page
        return sum(
            (
                d.invoice.total
                for d in drafts
                if d.invoice.type is InvoiceType.USAGE and d.invoice.status == "DRAFT" and d.invoice.credit_type == fiat
            ),
            Decimal(0),
        )

    def _balance(self, customer_id: str, document: dict, config: ThresholdConfig) -> Decimal:
        """What the prepaid commits and credits in effect for the contract (its own, and the
        customer's) still hold now, less the excluded ones; 0 without any."""
        credit_type_id = document[config.kind.value].get("custom_credit_type_id") or USD_CENTS.id
        grants = self._balances.grants(customer_id)
        burn = self._balances.balances_burn_down(customer_id)  # balances only
        total = Decimal(0)
        for balance in burn.balances:
            if balance.kind not in (GrantKind.PREPAID, GrantKind.CREDIT) or balance.credit_type_id != credit_type_id:
                continue
            if balance.contract_id not in (None, document["id"]) or not balance.active_at(burn.as_of):
                continue
            custom_fields = (grants.documents.get(balance.grant_id) or {}).get("custom_fields") or {}
            if config.excludes(balance.kind is GrantKind.CREDIT, custom_fields):
                continue
            total += balance.remaining
        return total

    def _claim(self, customer_id: str, document: dict, contract, config: ThresholdConfig, crossing: Crossing,
               now: datetime) -> StoredCharge | None:
        from tally.services.invoices import invoice_id  # invoices imports contracts, which imports this module

        kind, contract_id = config.kind, document["id"]
        fiat = contract.rate_card.fiat_credit_type
        workflow = workflow_id(contract_id, kind, crossing.number)
        if kind is ThresholdKind.SPEND:
            period = contract.period_containing(now)
            access = (period.starting_at, period.ending_before)  # the usage already spent draws it down
        else:
            access = recharge_window(config, truncate_to_hour(now))
        credit_type_id = document[kind.value].get("custom_credit_type_id") or fiat.id
        invoice = invoice_id(contract_id, now, fiat, InvoiceType.SCHEDULED)
        record = {
            "id": workflow,
            "customer_id": customer_id,
            "contract_id": contract_id,
            "kind": kind.value,
            "crossing": crossing.number,
            "revision": config.revision,
            "created_at": format_rfc3339(now),
            "payment_gate_type": config.payment_gate.value,
            "threshold_amount": config.threshold_amount,
            "value": crossing.value,
            "invoice_id": invoice,
            "invoice_total": crossing.invoice_amount,
            "commit": commit_document(config, contract_id, crossing, workflow, now, access, credit_type_id),
        }
        messages = [threshold_reached(kind, workflow, customer_id, contract_id, crossing, config.threshold_amount, now,
                                      config.payment_gate)]
        if config.payment_gate is PaymentGate.STRIPE:
            # Charged by the delivery function, which the threshold_reached message reaches through its
            # queue (services/threshold_payments.py): never here, where a slow Stripe would hold up
            # every customer of the batch. The stripe_config is kept as it was at the claim.
            record["stripe_config"] = copy.deepcopy(document[kind.value]["payment_gate_config"].get("stripe_config")
                                                    or {"payment_type": "INVOICE"})
            status = ChargeStatus.PENDING_PAYMENT
        elif config.payment_gate is PaymentGate.EXTERNAL:
            currency = "USD" if fiat.id == USD_CENTS.id else fiat.name
            messages.append(
                external_initiate(kind, workflow, customer_id, contract_id, invoice, crossing.invoice_amount, currency)
            )
            status = ChargeStatus.PENDING_PAYMENT
        else:
            status = ChargeStatus.GRANTED
        return self._store.claim(record, status, messages, now + self._lease)

    # -- publishing ----------------------------------------------------------------------------
    def _finish_pending(self, charge: StoredCharge) -> ThresholdEvaluation:
        """Publish messages someone parked and did not clear: after their lease, take them over."""
        now = self._clock()
        if charge.lease_until is not None and charge.lease_until > now:
            # Their claimer may still be publishing: wait the lease out, then look again.
            self._sleep(min((charge.lease_until - now).total_seconds(), self._lease.total_seconds()))
            return ThresholdEvaluation()
        taken = self._store.take_lease(charge, now + self._lease)
        if taken is None:
            return ThresholdEvaluation()
        self._publish(taken)
        return ThresholdEvaluation(republished=1)

    def _publish(self, charge: StoredCharge) -> None:
        assert charge.pending is not None
        try:
            for message in charge.pending:
                self._publisher.publish(self._topic_arn(), message, message_attributes(message))
        except Exception:
            self._store.take_lease(charge, self._clock())  # a retry may publish at once
            raise
        self._store.clear_pending(charge)

    # -- the external payment gate -------------------------------------------------------------
    def release(self, workflow: str, outcome: PaymentOutcome) -> StoredCharge:
        """Metronome's commits/threshold-billing/release: the outcome of the payment of an EXTERNAL
        gate's crossing. Paid, its commit counts from then on; failed, it never does and the
        configuration is turned off. Reporting the same outcome again changes nothing."""
        return self.settle(workflow, outcome, external=True)

    def settle(self, workflow: str, outcome: PaymentOutcome, detail: Mapping[str, Any] | None = None,
               *, external: bool = False) -> StoredCharge:
        """The outcome of a gated crossing's payment, once (EXTERNAL: reported through `release`;
        STRIPE: by services/threshold_payments.py, `detail` added to payment_status)."""
        wanted = ChargeStatus.PAID if outcome is PaymentOutcome.PAID else ChargeStatus.FAILED
        for _attempt in range(MAX_ATTEMPTS):
            charge = self._store.by_workflow(workflow)
            if charge is None:
                raise NotFound(f"threshold billing workflow {workflow} not found")
            if charge.status is ChargeStatus.GRANTED:
                raise InvalidInput("workflow_id", "is not waiting for a payment (its payment gate is NONE)")
            if external and charge.document.get("payment_gate_type") == PaymentGate.STRIPE.value:
                raise InvalidInput("workflow_id", "is paid through Stripe (payment gate STRIPE): Tally settles it itself")
            if charge.status is not ChargeStatus.PENDING_PAYMENT and charge.status is not wanted:
                raise InvalidInput("outcome", f"the workflow was released as {charge.status.value.lower()} already")
            if charge.pending is not None:  # its earlier messages go out first
                self._finish_pending(charge)
                continue
            if charge.status is wanted:  # reported before: complete what a crash may have left
                if wanted is ChargeStatus.FAILED:
                    self._turn_off(charge)
                return charge
            now = self._clock()
            document = charge.document
            message = payment_status(charge.kind, workflow, document["customer_id"], document["contract_id"],
                                     document["invoice_id"], outcome, now, detail)
            settled = self._store.settle(charge, wanted, [message], now + self._lease, now)
            if settled is None:
                continue
            if wanted is ChargeStatus.FAILED:
                self._turn_off(settled)
            self._publish(settled)
            return settled
        raise ThresholdContention(f"threshold billing workflow {workflow} kept changing; retry")

    def _turn_off(self, charge: StoredCharge) -> None:
        """Metronome: after a failed payment the configuration's is_enabled is false (`decide`
        already treats that revision as off; this shows it on the contract)."""
        document = charge.document
        kind = charge.kind.value
        for _attempt in range(MAX_ATTEMPTS):
            contract = self._contracts.get(document["customer_id"], document["contract_id"])
            config = contract.get(kind)
            if config is None or not config.get("is_enabled") or config.get("revision") != document["revision"]:
                return  # off already, or changed by an edit since
            changed = copy.deepcopy(contract)
            changed[kind]["is_enabled"] = False
            try:
                self._contract_writes.replace(changed)
                return
            except Conflict:
                continue
        raise ThresholdContention(f"contract {document['contract_id']} kept changing; retry")
