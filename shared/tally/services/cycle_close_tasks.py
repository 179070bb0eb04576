"""The task boundary of the `close-billing-periods` state machine: what each Lambda state receives
and returns, and the three steps that map it onto `CycleCloseService`.

The workflow (infra/constructs/cycle_close.py) runs in pages:

    FindDuePeriods ─► DeadLetterContracts (Map) ─► AnyPeriodsDue? ─yes─► ClosePeriods (Map) ─► FindDuePeriods ...
                                                                 └─no──► Closed (output: the run's summary)

FindDuePeriods also names the contracts whose due periods could not be found (`skipped`, by the
page that read their customer); DeadLetterContracts sends each to the DLQ with its reason before
the periods are closed.

Each FindDuePeriods call returns the next page of due periods, whole customers read after the
previous page's cursor (CycleCloseService.find_due): a state's payload stays far below Step
Functions' 256 KiB limit however many contracts close at once, and a run reads each customer due
about once, not once per page. It folds the previous page's outcomes into the run's summary. The
cursor (a position in the wake index, or in the customer listing without one) moves past failed
periods too, so a period that keeps failing is dead-lettered once per run and never loops; the next
scheduled run finds it due again. `more` is false once a page found nothing and nothing is left.

Continue as new: an execution reads at most `pages_per_execution` pages (CLOSE_PAGES_PER_EXECUTION,
derived in tally.billing.limits from Step Functions' 25,000-event history). The call after that
reads nothing: it folds the last page's outcomes into the summary and returns `continue_as`, the
name of the execution that carries on, with the cursor. The ContinueAsNew state starts it with this
progress as input and the current execution succeeds; the new one resumes at the cursor. The name is
derived from the run (its scheduled event) and the pages read, so a retried StartExecution, or a
duplicate of the run, is refused as ExecutionAlreadyExists and nothing is closed twice.

Errors reach Step Functions under their class name (the Lambda `errorType`), which the Retry and
Catch blocks match: InvalidScheduledEvent fails the execution before anything is written.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from tally.billing.errors import InvalidInput
from tally.billing.limits import CLOSE_PAGE_PERIODS, CLOSE_PAGES_PER_EXECUTION
from tally.services.cycle_close import MAX_CURSOR_CHARS
from tally.services.ports import StoreUnavailable

logger = logging.getLogger(__name__)

# Periods per page: a page ends at this many or more, with whole customers, and holds at most
# twice as many. An iteration's outcome is a few hundred bytes, so a page's Map result stays around
# 50 KiB and under 100 KiB, well inside the 256 KiB payload limit.
PAGE_SIZE = CLOSE_PAGE_PERIODS
# The summary names at most this many dead-lettered periods (the DLQ holds every one of them).
DEAD_LETTERED_LISTED = 50


class InvalidScheduledEvent(InvalidInput):
    """The scheduled event carries no valid `time`, so there is no "as of" instant to close at."""


class InvalidTaskInput(InvalidInput):
    """A state passed a task input it should never produce: a workflow bug, not worth retrying."""


class DueFound(Protocol):
    """`tally.services.cycle_close.DueCloses`: the due periods and the skipped contracts, as dicts,
    and the next page's cursor (None: nothing left)."""

    periods: list[dict]
    skipped: list[dict]
    cursor: str | None


class CycleClose(Protocol):
    """What the steps use of `tally.services.cycle_close.CycleCloseService`."""

    def find_due(self, as_of: datetime, grace: timedelta, after: str | None = None, limit: int | None = None) -> DueFound: ...

    def finalize(self, customer_id: str, contract_id: str, period_start: datetime, as_of: datetime) -> dict: ...

    def publish_finalized(self, invoice_id: str) -> bool: ...


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ScheduledEvent(_Model):
    """The EventBridge scheduled event; only its `time` (the "as of" instant) matters here."""

    time: AwareDatetime
    id: str | None = None  # EventBridge's event id: the same for a redelivered event

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: Any) -> Any:
        # EventBridge always sends text; a number would otherwise pass as a Unix timestamp.
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 timestamp such as 2025-02-02T01:00:00Z")
        return value


class DuePeriod(_Model):
    customer_id: str = Field(min_length=1)
    contract_id: str = Field(min_length=1)
    period_start: AwareDatetime
    kind: Literal["USAGE", "SCHEDULED"]

    def sort_key(self) -> tuple:
        return (self.period_start, self.customer_id, self.contract_id, self.kind)


class PeriodOutcome(_Model):
    """One Map iteration's output (the PeriodClosed or PeriodDeadLettered state)."""

    period: DuePeriod
    status: Literal["CLOSED", "DEAD_LETTERED"]
    invoice_ids: list[str] = Field(default_factory=list)
    finalized: list[str] = Field(default_factory=list)
    published: list[str] = Field(default_factory=list)
    error: str | None = None


class SkippedContract(_Model):
    """A contract whose due periods could not be found (contract_id None: none of the customer's
    could be listed). `error` is the exception's class name, `cause` its message."""

    customer_id: str = Field(min_length=1)
    contract_id: str | None
    error: str
    cause: str


class RunSummary(_Model):
    """The execution's output."""

    as_of: AwareDatetime
    periods_closed: int = 0
    invoices_finalized: int = 0
    invoices_published: int = 0
    periods_dead_lettered: int = 0
    dead_lettered: list[PeriodOutcome] = Field(default_factory=list)
    contracts_skipped: int = 0
    skipped: list[SkippedContract] = Field(default_factory=list)

    def skipping(self, contracts: list[SkippedContract]) -> RunSummary:
        return self.model_copy(
            update={
                "contracts_skipped": self.contracts_skipped + len(contracts),
                "skipped": (self.skipped + contracts)[:DEAD_LETTERED_LISTED],
            }
        )

    def including(self, outcomes: list[PeriodOutcome]) -> RunSummary:
        failed = [o for o in outcomes if o.status == "DEAD_LETTERED"]
        closed = [o for o in outcomes if o.status == "CLOSED"]
        return self.model_copy(
            update={
                "periods_closed": self.periods_closed + len(closed),
                "invoices_finalized": self.invoices_finalized + sum(len(o.finalized) for o in closed),
                "invoices_published": self.invoices_published + sum(len(o.published) for o in closed),
                "periods_dead_lettered": self.periods_dead_lettered + len(failed),
                "dead_lettered": (self.dead_lettered + failed)[:DEAD_LETTERED_LISTED],
            }
        )


class Progress(_Model):
    """FindDuePeriods' result, kept at `$.progress` for the Map, the Choice and the next page."""

    as_of: AwareDatetime
    periods: list[DuePeriod]
    count: int
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_CHARS)  # None: nothing left to read
    more: bool  # this page's periods to close, or more to read: the workflow calls again
    summary: RunSummary
    skipped: list[SkippedContract] = Field(default_factory=list)  # this page's, for the DLQ
    run: str = Field(default="run", pattern=r"^[0-9a-z]{1,16}$")  # names the run's executions
    page: int = Field(default=0, ge=0)  # pages the run has read, in every execution
    execution_pages: int = Field(default=0, ge=0)  # pages the current execution has read
    # Set: this execution is done; the one of this name carries on from `cursor` (ContinueAsNew).
    continue_as: str | None = None


class _RunState(_Model):
    """FindDuePeriods' input: the scheduled event, plus on later pages the previous page."""

    progress: Progress | None = None
    closed: list[PeriodOutcome] = Field(default_factory=list)


class FinalizeInput(_Model):
    as_of: AwareDatetime
    period: DuePeriod


class Finalized(_Model):
    invoice_ids: list[str]
    finalized: list[str] = Field(default_factory=list)


class PublishInput(_Model):
    invoice_ids: list[str]


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc)


def _field_and_rule(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors(include_url=False)[0]
    return ".".join(str(part) for part in first["loc"]) or "input", first["msg"]


def _parse(model: type[_Model], payload: Any, error: type[InvalidInput] = InvalidTaskInput):
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise error(*_field_and_rule(exc)) from exc


def _run_key(event: ScheduledEvent) -> str:
    """A short key of the scheduled event: two runs as of the same time (a rerun by hand) get
    different execution names, and a redelivered event the same ones."""
    return hashlib.sha256((event.id or "").encode()).hexdigest()[:12] if event.id else "run"


def continuation_name(as_of: datetime, run: str, page: int) -> str:
    """The execution that carries run `run` on after its `page`-th page (Step Functions allows 80
    characters of [0-9A-Za-z_-])."""
    return f"close-{_utc(as_of):%Y%m%dT%H%M%SZ}-{run}-after-page-{page}"


def find_due_periods(
    state: Any,
    service: CycleClose,
    grace: timedelta,
    page_size: int = PAGE_SIZE,
    pages_per_execution: int = CLOSE_PAGES_PER_EXECUTION,
) -> dict:
    """The next page of periods due as of the scheduled event's `time`, and the run's summary so far;
    or, once this execution has read `pages_per_execution` pages, no page and the name of the
    execution that continues the run."""
    event = _parse(ScheduledEvent, state, InvalidScheduledEvent)
    run = _parse(_RunState, state)
    if run.progress is None:
        as_of, cursor, summary = _utc(event.time), None, RunSummary(as_of=_utc(event.time))
        key, pages_read, execution_pages = _run_key(event), 0, 0
    else:
        as_of, cursor = run.progress.as_of, run.progress.cursor
        key, pages_read, execution_pages = run.progress.run, run.progress.page, run.progress.execution_pages
        summary = run.progress.summary.including(run.closed)
        if cursor is None:  # the previous page was the last one
            return Progress(
                as_of=as_of, periods=[], count=0, more=False, summary=summary, run=key, page=pages_read,
                execution_pages=execution_pages,
            ).model_dump(mode="json")
        if execution_pages >= pages_per_execution:
            # The next execution starts counting its own pages from 0.
            return Progress(
                as_of=as_of, periods=[], count=0, cursor=cursor, more=True, summary=summary, run=key, page=pages_read,
                execution_pages=0, continue_as=continuation_name(as_of, key, pages_read),
            ).model_dump(mode="json")

    try:
        scan = service.find_due(as_of, grace, after=cursor, limit=page_size)
    except InvalidInput as exc:
        raise InvalidTaskInput(exc.field, exc.rule) from exc
    found = (_parse(DuePeriod, item) for item in scan.periods)
    page = sorted({period.sort_key(): period for period in found}.values(), key=DuePeriod.sort_key)
    skipped = [_parse(SkippedContract, item) for item in scan.skipped]
    progress = Progress(
        as_of=as_of,
        periods=page,
        count=len(page),
        cursor=scan.cursor,
        more=bool(page) or scan.cursor is not None,
        summary=summary.skipping(skipped),
        skipped=skipped,
        run=key,
        page=pages_read + 1,
        execution_pages=execution_pages + 1,
    )
    return progress.model_dump(mode="json")


def finalize_period(task: Any, service: CycleClose, on_ledger_written: Callable[[str], object] | None = None) -> dict:
    """Finalize one period's invoices; idempotent per (contract, period), so retries are safe.

    `on_ledger_written(customer_id)` runs after every call, not only the one that stored the
    invoices: a retry after a crash between the two must still evaluate the customer's balance
    alerts, and evaluating twice publishes nothing twice (alerts move ok -> in_alarm once).
    Only its StoreUnavailable fails the step (to be retried); any other error is logged, because
    the invoices are final and a broken alert must not hold back their publication forever. The
    customer's next usage or ledger change evaluates its alerts again."""
    given = _parse(FinalizeInput, task)
    customer_id = given.period.customer_id
    result = service.finalize(customer_id, given.period.contract_id, _utc(given.period.period_start), _utc(given.as_of))
    if on_ledger_written is not None:
        try:
            on_ledger_written(customer_id)
        except StoreUnavailable:
            raise
        except Exception:  # noqa: BLE001 - see the docstring
            logger.exception("balance alerts of customer %s not evaluated after finalizing", customer_id)
    return _parse(Finalized, result).model_dump(mode="json")


def publish_invoices(task: Any, service: CycleClose) -> dict:
    """Publish invoice.finalized for each invoice; the service publishes each one exactly once, so
    a retried or re-run step publishes only what is still missing. Returns those published now."""
    given = _parse(PublishInput, task)
    published = [invoice_id for invoice_id in given.invoice_ids if service.publish_finalized(invoice_id)]
    return {"published": published}
