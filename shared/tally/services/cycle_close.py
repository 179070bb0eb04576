"""Cycle close: find the billing periods that are due, finalize their invoices, publish them; and
the two corrections, void and regenerate.

The close-billing-periods workflow calls `find_due`, then for each item `finalize`, then
`publish_finalized` for every id `finalize` returns (services/cycle_close_tasks.py). Isolation: a
contract whose due periods cannot be found, whatever the error, is skipped and named by `find_due`
(the workflow dead-letters it), and a period that fails to finalize or publish is dead-lettered by
the workflow; neither holds up anyone else's close.

Exactly once.
- Invoices. A finalized invoice is stored under its draft's id (UUIDv5 of contract, type, instant,
  credit type) with a conditional create, in one transaction with the customer's record counter
  (adapters/dynamo/invoices.py). A second or concurrent finalize of the same period loses that
  write, reads the stored invoices and returns them: one invoice per slot, ever. A finalize that
  raced a write on another period of the same customer is recomputed, so every finalization is
  priced on top of the latest finalized drawdowns (FinalizationRaced after `attempts` tries). The
  write is also conditional on the contract's version read before pricing, so an edit committed
  between the pricing and the write is priced by the retry, never missed by the invoice.
- Ledger. The ledger is derived: the burn-down replays each stored invoice's drawdowns exactly, so
  one stored invoice is one set of ledger entries, however often the workflow runs.
- Messages. `publish_finalized` first claims the invoice (a conditional write of a token, unless it
  was published or another claim is younger than the lease), publishes, then records published_at.
  A regenerated invoice is published by the regenerate itself, at once; no run finalizes it, so
  `find_due` lists it whenever it is unpublished and unclaimed, without waiting out the lease.
  A rerun or an overlapping execution finds it published or claimed and sends nothing. The message
  id is stable ("invoice.finalized:<invoice id>"). Crash windows: a crash after the claim and
  before SNS accepted the message leaves a claim that expires after `publish_lease`; a crash after
  SNS accepted it and before published_at was written leads, once the lease expires, to a second
  publish with the same message id, which consumers deduplicate. In both cases `find_due` lists
  the period again once the lease has expired, so a later run completes the publication. A lease
  longer than the publishing function's timeout means a live publisher never loses its claim.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from tally.billing.errors import InvalidInput, NotFound
from tally.billing.messages import envelope
from tally.billing.notifications import Occurrence, invoice_finalized_occurrence
from tally.billing.time import format_rfc3339
from tally.services.invoice_records import (
    FINALIZED,
    VOID,
    FinalizationRaced,
    InvoiceStore,
    StoredInvoice,
    regenerated_invoice_id,
)
from tally.services.invoices import CloseOutlook, InvoiceService
from tally.services.ports import Page, StoreUnavailable

logger = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=24)
INVOICE_FINALIZED = "invoice.finalized"


class InvoiceNotFound(NotFound):
    """No finalized or voided invoice has this id."""


class InvoiceNotFinalized(InvalidInput):
    """Only a FINALIZED invoice can be voided (a draft cannot)."""


class InvoiceNotVoided(InvalidInput):
    """Only a VOID invoice can be regenerated."""


class CustomerDirectory(Protocol):
    def list(self, limit: int, cursor: str | None) -> Page: ...


class CloseIndex(Protocol):
    """The wake index (adapters/dynamo/close_index.py): each entry names a customer and one of its
    contract or grant documents, and is due at an instant. `entries` yields them in run order, each
    with its `position` (JSON, where a run resumes after it) and `order` (comparable); `entries_of`
    gives one customer's due entries as its documents hold them."""

    def entries(self, as_of: datetime, after: Any = None, chunk: int = 100) -> Iterable: ...

    def entries_of(self, customer_id: str, as_of: datetime) -> list: ...

    def advance(self, entry, version: int, wake: datetime | None) -> bool: ...


class Publisher(Protocol):
    def publish(self, topic_arn: str, message: Mapping, attributes: Mapping[str, str]) -> str: ...


@dataclass(frozen=True, slots=True)
class DueCloses:
    """What find_due found: the due periods, and the contracts it had to skip (see `_skipped`);
    for a page, the cursor of the next one (None: the run has read every customer due)."""

    periods: list[dict]
    skipped: list[dict]
    cursor: str | None = None


# Customers one page may read, per period it may hold: a page of customers with nothing due (each
# read once, then put to sleep) ends there, so that one call stays well inside its timeout.
READS_PER_PERIOD = 4
# Customers listed per request by the walk (no index).
WALK_CHUNK = 100
MAX_CURSOR_CHARS = 4096  # a wake index position is two keys (<= 2 KiB); the walk's is a token and an id


@dataclass(frozen=True, slots=True)
class _Reading:
    """A customer a run reads: its due wake entries (none without the index), and the run's
    position before and after it (JSON: they travel in the workflow's state)."""

    customer_id: str
    entries: list
    before: Any
    after: Any


def _period_key(item: dict) -> tuple:
    return (item["period_start"], item["customer_id"], item["contract_id"], item["kind"])


def _cursor_text(position: Any, within: tuple | None = None) -> str:
    return json.dumps({"at": position, "within": None if within is None else list(within)}, separators=(",", ":"))


def _cursor_parts(cursor: str | None) -> tuple[Any, tuple | None]:
    """(position, within) of a cursor find_due returned; InvalidInput for anything else."""
    if cursor is None:
        return None, None
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        parts = json.loads(cursor)
        position, within = parts["at"], parts["within"]
        if position is not None and not (isinstance(position, list) and len(position) == 2):
            raise ValueError("not a position")
        if within is not None and not (isinstance(within, list) and len(within) == 4 and all(isinstance(v, str) for v in within)):
            raise ValueError("not a period")
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidInput("cursor", "must be a cursor that find_due returned") from exc
    return position, None if within is None else tuple(within)


# A skipped contract's reason is kept short: it travels in a Step Functions payload and a DLQ message.
MAX_REASON_CHARS = 500


def _skipped(customer_id: str, contract_id: str | None, exc: Exception) -> dict:
    """A contract whose due periods cannot be found; contract_id None: the customer's contracts
    cannot even be listed. The reason is the error's name and message, never its traceback."""
    return {
        "customer_id": customer_id,
        "contract_id": contract_id,
        "error": type(exc).__name__,
        "cause": (str(exc) or type(exc).__name__)[:MAX_REASON_CHARS],
    }


@dataclass(frozen=True, slots=True)
class CloseTiming:
    attempts: int = 5
    backoff: float = 0.05  # seconds, doubled on each attempt
    publish_lease: timedelta = timedelta(minutes=15)  # Lambda's longest timeout


class CycleCloseService:
    def __init__(
        self,
        invoices: InvoiceService,
        store: InvoiceStore,
        customers: CustomerDirectory,
        publisher: Publisher,
        invoices_topic: Callable[[], str],
        clock: Callable[[], datetime],
        grace: timedelta = DEFAULT_GRACE,
        *,
        timing: CloseTiming = CloseTiming(),
        sleep: Callable[[float], None] = time.sleep,
        lifecycle: Callable[[list[Occurrence]], None] | None = None,
        index: CloseIndex | None = None,
    ) -> None:
        self._invoices = invoices
        self._store = store
        self._customers = customers
        self._publisher = publisher
        self._invoices_topic = invoices_topic  # read when first needed: the API function has none
        self._clock = clock
        self._grace = grace
        self._timing = timing
        self._sleep = sleep
        self._lifecycle = lifecycle  # the notifications' occurrence index (services/notifications.py)
        self._index = index  # the wake index: which customers a run reads (None: every customer)

    # -- finding and finalizing --------------------------------------------------------------------
    def find_due(
        self, as_of: datetime, grace: timedelta, after: str | None = None, limit: int | None = None
    ) -> DueCloses:
        """Every (customer, contract, period) of a live contract with an invoice due as of `as_of`
        and not finalized yet: kind USAGE once the period's end plus `grace` has passed, SCHEDULED
        once an issue instant in the period has passed. A period whose FINALIZED invoice was never
        published (its claim expired) is listed again, so a run completes the publication. A voided
        invoice is not due: it waits for a regenerate. Ordered by (period_start, customer, contract, kind).

        With a wake index, only the customers it names as due are read (see CloseIndex); without
        one, every customer. A contract whose due periods cannot be found, whatever the error, is
        skipped and named with it in `skipped`; every other contract is listed. Only
        StoreUnavailable (the store, not one customer's data) fails the whole call.

        With `limit`, one page of a run: the customers after the cursor `after` (None: the first
        page), in the index's run order (or the walk's), whole, until the page holds `limit`
        periods or more (or has read READS_PER_PERIOD * `limit` customers), and the cursor of the
        next page (None once every customer due was read). A page holds at most 2 * `limit`: a
        customer that would make it more is left whole to the next page (read again there), unless
        it alone has more than that, and its periods go out `limit` at a time.
        Each customer due is read by one page of the run, so a run reads about once per customer
        however many are due; a contract is skipped (named) by that page only."""
        unpublished_before = self._clock() - self._timing.publish_lease
        start, within = _cursor_parts(after)
        periods: list[dict] = []
        skipped: list[dict] = []
        position, reads = start, 0
        readings = self._customers_to_read(as_of, start, 100 if limit is None else limit)
        while True:
            if limit is not None and (len(periods) >= limit or reads >= READS_PER_PERIOD * limit):
                return DueCloses(sorted(periods, key=_period_key), skipped, _cursor_text(position))
            reading = next(readings, None)
            if reading is None:
                return DueCloses(sorted(periods, key=_period_key), skipped, None)
            customer_id = reading.customer_id
            items, failed, outlook = self._due_of_customer(customer_id, as_of, grace, unpublished_before)
            reads += 1
            items = sorted({_period_key(item): item for item in items}.values(), key=_period_key)
            if within is not None and within[1] == customer_id:  # the rest of a customer split across pages
                items, failed = [item for item in items if _period_key(item) > within], []
            within = None
            if limit is not None and len(periods) + len(items) > 2 * limit:
                if periods:  # read whole by the next page
                    return DueCloses(sorted(periods, key=_period_key), skipped, _cursor_text(reading.before))
                return DueCloses(items[:limit], skipped + failed,
                                 _cursor_text(reading.before, _period_key(items[limit - 1])))
            periods += items
            skipped += failed
            position = reading.after
            if reading.entries and outlook is not None and not items and not failed and not outlook.pending:
                self._advance(customer_id, reading.entries, outlook)

    def _customers_to_read(self, as_of: datetime, start: Any, chunk: int) -> Iterator[_Reading]:
        """The customers a run reads, from `start` on: those the index names (read `chunk` entries
        at a time), or every customer."""
        if self._index is not None:
            yield from self._indexed_customers(as_of, start, chunk)
            return
        token, last = start if start is not None else (None, None)
        while True:
            page = self._customers.list(WALK_CHUNK, token)
            ids = [customer.id for customer in page.items]
            # Resume after the last customer read; if it left the listing, from the listing's start
            # (some customers are read twice, none is missed).
            begin = ids.index(last) + 1 if last in ids else 0
            before = [token, last if begin else None]
            for customer_id in ids[begin:]:
                yield _Reading(customer_id, [], before, [token, customer_id])
                before = [token, customer_id]
            if not page.next_page:
                return
            token = page.next_page

    def _indexed_customers(self, as_of: datetime, start: Any, chunk: int) -> Iterator[_Reading]:
        """The customers of the due wake entries after `start`, in run order, each once per run:
        at its first due entry (a customer with due entries behind this one was read at those), with
        all its due entries (so that a customer with nothing due is put to sleep entirely)."""
        seen: set[str] = set()
        before = start
        for entry in self._index.entries(as_of, start, chunk):
            customer_id = entry.customer_id
            if customer_id not in seen:
                seen.add(customer_id)
                others = [e for e in self._index.entries_of(customer_id, as_of) if e.document_key != entry.document_key]
                if not any(other.order < entry.order for other in others):
                    yield _Reading(customer_id, [entry, *others], before, entry.position)
            before = entry.position

    def _advance(self, customer_id: str, entries: list, outlook: CloseOutlook) -> None:
        """Nothing is due: move the customer's entries to its next instant. Only an entry whose
        document this read saw, at the version it saw (a document the listing did not show yet
        stays due); the index refuses the move if the entry or the document changed since. None if
        the invoice listing (an index read) lagged behind the records written (a regenerated
        invoice to announce may be among those it missed)."""
        if self._store.records_written(customer_id) > outlook.records:
            return
        for entry in entries:
            version = outlook.versions.get(entry.document_key)
            if version is not None:
                self._index.advance(entry, version, outlook.next_at)

    def _due_of_customer(
        self, customer_id: str, as_of: datetime, grace: timedelta, unpublished_before: datetime
    ) -> tuple[list[dict], list[dict], CloseOutlook | None]:
        """(due periods, skipped contracts, its outlook if read at once) of one customer: all its contracts at once, and after a
        failure contract by contract, to name the culprits and list the rest.

        - A culprit, a contract whose own periods cannot be computed, is named.
        - A contract that then fails only alongside a culprit (pricing reads all of a customer's
          contracts and grants) is held back unnamed: fixing the culprit releases it.
        - Without a culprit, each failing contract is named; if none fails alone, the customer is.
        A contract listed here whose customer cannot be priced as a whole fails at finalize, and
        the workflow dead-letters that period with the reason."""
        records: list[StoredInvoice] | None = None
        try:
            records = self._store.list_for_customer(customer_id)
            outlook = self._invoices.close_outlook(customer_id, as_of, grace, records, unpublished_before)
            return outlook.found, [], outlook
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - one customer's data must not stop everyone's close
            if records is None:  # its invoices cannot be read: nothing to split by contract
                return [], [self._report_skip(customer_id, None, exc)], None
            logger.warning("cannot find the due periods of customer %s at once", customer_id, exc_info=True)
            whole = exc
        try:
            contract_ids = self._invoices.contract_ids(customer_id)
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            return [], [self._report_skip(customer_id, None, exc)], None
        found: list[dict] = []
        culprits: list[dict] = []
        held: list[tuple[str, Exception]] = []
        for contract_id in contract_ids:
            try:
                self._invoices.due_periods(customer_id, contract_id, until=as_of)  # the contract alone
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001
                culprits.append(self._report_skip(customer_id, contract_id, exc))
                continue
            try:
                found += self._invoices.due_closes(
                    customer_id, as_of, grace, records, unpublished_before, contract_id=contract_id
                )
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001
                held.append((contract_id, exc))
        if culprits:
            for contract_id, exc in held:
                logger.warning("contract %s of customer %s held back by another", contract_id, customer_id, exc_info=exc)
            return found, culprits, None
        if held:
            return found, [self._report_skip(customer_id, contract_id, exc) for contract_id, exc in held], None
        return [], [self._report_skip(customer_id, None, whole)], None  # it fails only as a whole

    @staticmethod
    def _report_skip(customer_id: str, contract_id: str | None, exc: Exception) -> dict:
        what = "every contract" if contract_id is None else f"contract {contract_id}"
        logger.error("skipping %s of customer %s: due periods cannot be found", what, customer_id, exc_info=exc)
        return _skipped(customer_id, contract_id, exc)

    def finalize(self, customer_id: str, contract_id: str, period_start: datetime, as_of: datetime) -> dict:
        """Store the period's due invoices as FINALIZED, priced as a read would price them now.
        Idempotent per (contract, period): a repeated or concurrent call returns the same ids and
        finalizes nothing more. {"invoice_ids": every FINALIZED invoice of the period, "finalized":
        those this call stored}. Raises PeriodNotFound, FinalizationRaced, StoreUnavailable."""
        for attempt in range(self._timing.attempts):
            # Read before pricing: an edit committed after this read fails the write below, and the
            # retry prices the edited contract (edits check the invoice count, this the contract).
            version = self._invoices.contract_version(customer_id, contract_id)
            grant_edits = self._store.grant_edits_made(customer_id)  # customer-level grants: the same
            written, records = self._records(customer_id)
            family, records = self._family(customer_id, contract_id, records)
            close = self._invoices.close_period(
                customer_id, contract_id, period_start, as_of, self._grace, records, self._clock(),
                family_records=bool(family),
            )
            if not close.new:
                return {"invoice_ids": close.final_ids, "finalized": []}
            self._record_finalized(close.new)
            try:
                self._store.create(
                    customer_id, written, close.new,
                    contract_version=None if version is None else (contract_id, version), grant_edits=grant_edits,
                    checkpoint=close.checkpoint, **family,
                )
            except FinalizationRaced:
                self._sleep(self._timing.backoff * 2**attempt)
                continue
            return {"invoice_ids": close.final_ids, "finalized": [record.id for record in close.new]}
        raise FinalizationRaced(f"invoices of customer {customer_id} kept changing while finalizing; retry")

    def _record_finalized(self, records: list[StoredInvoice]) -> None:
        """Index the invoice.finalized occurrences ahead of the write (a lost write leaves entries
        that delivery checks against the stored invoice and skips)."""
        if self._lifecycle is not None:
            self._lifecycle(
                [invoice_finalized_occurrence(r.id, r.customer_id, r.contract_id, r.finalized_at) for r in records]
            )

    def _family(self, customer_id: str, contract_id: str, records: list[StoredInvoice]) -> tuple[dict, list[StoredInvoice]]:
        """A hierarchy shares balances (services/hierarchy.py): every member's finalized invoices
        are priced from and must be unchanged at the write, and so must the parent contracts whose
        grants it may draw, so two members never spend the same money (the loser prices again on
        top of the winner's drawdowns). (The write's extra conditions, `records` with the members'.)
        Nothing is read beyond the customer's contracts outside a hierarchy."""
        members = self._invoices.family(customer_id)
        if not members:
            return {}, records
        parents = [(c["id"], c["_version"]) for c in self._invoices.parent_contracts(customer_id) if c["id"] != contract_id]
        others = []
        for member in members:
            member_written, member_records = self._records(member)
            others.append((member, member_written))
            records = records + member_records
        return {"others_written": others, "parent_versions": parents}, records

    def _records(self, customer_id: str) -> tuple[int, list[StoredInvoice]]:
        """The customer's record count (read consistently) and its records. The listing is an
        index read, which may lag a recent write: wait until it holds at least that many."""
        for attempt in range(self._timing.attempts):
            written = self._store.records_written(customer_id)
            records = self._store.list_for_customer(customer_id)
            if len(records) >= written:
                return written, records
            self._sleep(self._timing.backoff * 2**attempt)
        raise StoreUnavailable(f"the invoice index of customer {customer_id} lags behind; retry")

    # -- publishing --------------------------------------------------------------------------------
    def publish_finalized(self, invoice_id: str) -> bool:
        """Publish `invoice.finalized` for a FINALIZED invoice once: True if this call published it,
        False if it was published (or is being published) already, or was voided first."""
        record = self._store.get(invoice_id)
        if record is None:
            raise InvoiceNotFound(f"invoice {invoice_id} is not finalized")
        if record.published_at is not None or record.status != FINALIZED:
            return False
        token, now = str(uuid.uuid4()), self._clock()
        if not self._store.claim_publication(invoice_id, token, now, now - self._timing.publish_lease):
            return False
        try:
            message_id = self._publisher.publish(
                self._invoices_topic(),
                envelope(f"{INVOICE_FINALIZED}:{record.id}", INVOICE_FINALIZED, _properties(record)),
                {"type": INVOICE_FINALIZED, "customer_id": record.customer_id},
            )
        except Exception:
            self._store.release_publication(invoice_id, token)  # a retry may publish at once
            raise
        self._store.mark_published(invoice_id, token, self._clock(), message_id)
        return True

    # -- corrections -------------------------------------------------------------------------------
    def void(self, invoice_id: str) -> str:
        """FINALIZED -> VOID. Its drawdowns are given back (the ledger shows them canceled), and its
        slot has no invoice until a regenerate. Voiding a VOID invoice again changes nothing."""
        record = self._stored(invoice_id, InvoiceNotFinalized, "only a FINALIZED invoice can be voided, not a draft")
        if record.status == VOID:
            return record.id
        if not self._store.void(record.id, self._clock(), record.customer_id):
            again = self._store.get(record.id)
            if again is None or again.status != VOID:
                raise FinalizationRaced(f"invoice {invoice_id} changed while voiding; retry")
        return record.id

    def regenerate(self, invoice_id: str) -> str:
        """A new FINALIZED invoice for a VOID invoice's slot, recomputed from current data, with an
        id derived from the voided one's: regenerating twice gives the same invoice. Its
        invoice.finalized message is published at once (`announce`); if that fails, the next cycle
        close run publishes it (find_due lists a regenerated invoice as soon as no claim holds it)."""
        record = self._stored(invoice_id, InvoiceNotVoided, "only a VOID invoice can be regenerated; void it first")
        if record.status != VOID:
            raise InvoiceNotVoided("id", "only a VOID invoice can be regenerated; void it first")
        new_id = regenerated_invoice_id(record.id)
        for attempt in range(self._timing.attempts):
            if record.regenerated_invoice_id is not None:
                self.announce(record.regenerated_invoice_id)  # a retry completes an announcement that failed
                return record.regenerated_invoice_id
            # Read before pricing, as finalize does: an edit committed after this read fails the
            # write below, so the regenerated invoice is never priced from a stale contract.
            version = self._invoices.contract_version(record.customer_id, record.contract_id)
            grant_edits = self._store.grant_edits_made(record.customer_id)
            written, records = self._records(record.customer_id)
            family, records = self._family(record.customer_id, record.contract_id, records)
            regenerated = self._invoices.regenerated(record, new_id, records, self._clock(), family_records=bool(family))
            self._record_finalized([regenerated])
            try:
                self._store.create(
                    record.customer_id, written, [regenerated], regenerated_from=record.id,
                    contract_version=None if version is None else (record.contract_id, version),
                    grant_edits=grant_edits, **family,
                )
            except FinalizationRaced:
                self._sleep(self._timing.backoff * 2**attempt)
                record = self._store.get(record.id) or record
                continue
            self.announce(new_id)
            return new_id
        raise FinalizationRaced(f"invoices of customer {record.customer_id} kept changing while regenerating; retry")

    def announce(self, invoice_id: str) -> bool:
        """publish_finalized, for a caller that must not fail once the invoice is stored: a failure
        is logged and the claim given back, and the next cycle close run publishes it."""
        try:
            return self.publish_finalized(invoice_id)
        except Exception:  # noqa: BLE001 - the invoice is stored; its announcement is retried by cycle close
            logger.warning("invoice %s is stored but not announced yet; the next cycle close run will", invoice_id,
                           exc_info=True)
            return False

    def _stored(self, invoice_id: str, refusal: type[InvalidInput], rule: str) -> StoredInvoice:
        """The stored invoice; a 400 naming `id` for a draft's id, a 404 for an unknown one.

        Draft ids are never stored: they are UUIDv5s of (contract, type, instant, credit type),
        which cannot be traced back to a customer without pricing every customer. So an unstored
        UUIDv5 is answered as a draft, and any other unknown id as not found."""
        try:
            version = uuid.UUID(invoice_id).version
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidInput("id", "must be an invoice id (a UUID)") from exc
        record = self._store.get(invoice_id)
        if record is not None:
            return record
        if version == 5:
            raise refusal("id", rule)
        raise InvoiceNotFound(f"invoice {invoice_id} not found")


def _properties(record: StoredInvoice) -> dict:
    invoice = record.invoice
    properties = {
        "invoice_id": record.id,
        "customer_id": record.customer_id,
        "contract_id": record.contract_id,
        "invoice_type": invoice.type.value,
        "status": FINALIZED,
        "credit_type": {"id": invoice.credit_type.id, "name": invoice.credit_type.name},
        "start_timestamp": format_rfc3339(invoice.starting_at),
        "end_timestamp": format_rfc3339(invoice.ending_before),
        "issued_at": format_rfc3339(invoice.ending_before),
        "finalized_at": format_rfc3339(record.finalized_at),
        "subtotal": invoice.subtotal,
        "total": invoice.total,
    }
    if record.regenerated_from_invoice_id is not None:
        properties["regenerated_from_invoice_id"] = record.regenerated_from_invoice_id
    return properties
