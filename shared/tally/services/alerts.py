"""Alerts: create, archive, read per customer, reset, and evaluate in real time.

Exactly one message per crossing, with concurrent evaluators and stream retries:

1. Read the (alert, customer) states first (consistently), then the inputs (counters, drafts,
   balances). Whatever the inputs show is therefore at least as new as the state.
2. Decide (`tally.billing.alerts.decide`) and write with a compare-and-set on the state's version.
   Of two evaluators that read the same state, one wins; the other re-reads and decides again
   (now `in_alarm`: nothing to do). A stale evaluator can never re-arm a fresh alarm, because the
   alarm's claim bumped the version it read.
3. The winning write of a crossing (ok → in_alarm) also parks the message in `pending`, with a
   publishing lease. Then publish, then clear `pending`.
   - Crash before the publish: the state is in alarm with `pending` set. The stream retries the
     batch (or the next change of that customer comes); the evaluator finds `pending`, waits out
     the lease, takes it over with a conditional write and publishes the same envelope.
   - Crash after the publish, before the clear: the same republish happens, with the same `id`:
     the one case where SNS may carry a crossing twice, and consumers drop it by `id`.
   While `pending` is set, nothing else moves the state, so crossings are published in order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Protocol

from tally.billing.alerts import (
    Alert,
    AlertState,
    AlertStatus,
    AlertType,
    CustomerStatus,
    CustomFieldFilter,
    Decision,
    GroupValue,
    Reading,
    crossing_message,
    decide,
    message_attributes,
    new_alert,
)
from tally.billing.balances import GrantKind
from tally.billing.counters import combine
from tally.billing.customers import Customer
from tally.billing.errors import InvalidInput, NotFound, TallyError
from tally.billing.pricing import USD_CENTS, InvoiceType
from tally.billing.time import format_rfc3339
from tally.services.ports import CounterStore, CustomerStore, MetricStore
from tally.services.usage import read_rows

logger = logging.getLogger(__name__)

# How long a claimer has to publish before another evaluator may take its crossing over. A claimer
# slower than this (SNS retrying) leads to a second publish with the same id, never to a loss.
DEFAULT_LEASE = timedelta(seconds=5)
MAX_ATTEMPTS = 6
CUSTOMER_PAGE = 100

BALANCE_KINDS = {
    AlertType.LOW_CREDIT_BALANCE_REACHED: {GrantKind.CREDIT},
    AlertType.LOW_REMAINING_COMMIT_BALANCE_REACHED: {GrantKind.PREPAID, GrantKind.POSTPAID},
    AlertType.LOW_REMAINING_CONTRACT_CREDIT_AND_COMMIT_BALANCE_REACHED: {
        GrantKind.CREDIT,
        GrantKind.PREPAID,
        GrantKind.POSTPAID,
    },
}


class AlertContention(TallyError):
    """The state kept changing under this evaluator; the stream retries the batch."""

    status = 503
    kind = "unavailable"


class AlertNotEvaluated(TallyError):
    """An all-customer alert whose evaluation failed for some customers, each named with its reason.
    The alerts function raises it after evaluating every other customer, so that Lambda retries
    the invocation and then leaves it, with this message, in the alerts DLQ."""


# The message names this many customers (every one is in the log), each reason this long at most.
NOT_EVALUATED_NAMED = 20
NOT_EVALUATED_REASON_CHARS = 200


def not_evaluated(alert_id: str, failed: Sequence["CustomerNotEvaluated"]) -> AlertNotEvaluated:
    named = "; ".join(
        f"{f.customer_id} ({type(f.error).__name__}: {str(f.error)[:NOT_EVALUATED_REASON_CHARS]})"
        for f in failed[:NOT_EVALUATED_NAMED]
    )
    more = f"; and {len(failed) - NOT_EVALUATED_NAMED} more" if len(failed) > NOT_EVALUATED_NAMED else ""
    return AlertNotEvaluated(f"alert {alert_id} not evaluated for {len(failed)} customer(s): {named}{more}")


class AlertStore(Protocol):
    def create(self, alert: Alert) -> None: ...
    def get(self, alert_id: str) -> Alert | None: ...
    def archive(self, alert_id: str, at: datetime, release_uniqueness_key: bool) -> Alert: ...
    def in_scope(self, customer_id: str | None) -> list[Alert]: ...
    def state(self, alert_id: str, customer_id: str) -> AlertState: ...
    def states(self, alert_ids: list[str], customer_id: str) -> dict[str, AlertState]: ...
    def fire(self, state: AlertState, window: str | None, value: Decimal, at: datetime, message: dict,
             lease_until: datetime) -> AlertState | None: ...
    def rearm(self, state: AlertState, at: datetime) -> AlertState | None: ...
    def take_lease(self, state: AlertState, lease_until: datetime) -> AlertState | None: ...
    def clear_pending(self, state: AlertState) -> None: ...


class Publisher(Protocol):
    def publish(self, topic_arn: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str: ...


class Readings(Protocol):
    """The watched values of one customer, read once per evaluation and shared by its alerts."""

    def for_customer(self, customer: Customer) -> "CustomerReadings": ...


class CustomerReadings(Protocol):
    def reading(self, alert: Alert) -> Reading: ...


# -- values ----------------------------------------------------------------------------------------
class LiveReadings:
    """Readings from the counters, the draft invoices and the burn-down.

    - usage: the metric over the customer's current billing period (its first contract's period
      holding now; the UTC calendar month without a contract), filtered by `group_values`;
    - spend_threshold_reached: the subtotal (before commits and credits) of the current period's
      USAGE drafts in the alert's credit type; monthly_invoice_total_spend_threshold_reached:
      their total (after); invoice_total_reached: the largest total of one current draft;
    - balances: the remaining amount of the active segments of the watched kinds, in the credit
      type; None (nothing to watch) when the customer has none."""

    def __init__(self, metrics: MetricStore, counters: CounterStore, invoices: Any, balances: Any,
                 clock: Callable[[], datetime]) -> None:
        self._metrics = metrics
        self._counters = counters
        self._invoices = invoices  # InvoiceService: due_periods, list
        self._balances = balances  # BalanceService: balances_burn_down
        self._clock = clock

    def for_customer(self, customer: Customer) -> "_CustomerReadings":
        return _CustomerReadings(self, customer, self._clock())


def _month(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@dataclass
class _CustomerReadings:
    live: LiveReadings
    customer: Customer
    now: datetime
    _period: tuple[datetime, datetime, bool] | None = None
    _drafts: list | None = None
    _burn: Any = None
    _grant_fields: dict | None = None  # grant id -> (its custom fields, its contract's), read once
    _metrics: dict = field(default_factory=dict)

    def period(self) -> tuple[datetime, datetime, bool]:
        """(start, end, has_contract) of the current billing period."""
        if self._period is None:
            _, due = self.live._invoices.due_periods(self.customer.id)
            current = [d.period for d in due if d.period.contains(self.now)]
            if current:
                self._period = (current[0].starting_at, current[0].ending_before, True)
            else:
                self._period = (*_month(self.now), False)
        return self._period

    def drafts(self) -> list:
        if self._drafts is None:
            start, end, has_contract = self.period()
            drafts: list = []
            if has_contract:
                page, cursor = self.live._invoices.list(self.customer.id, starting_on=start, ending_before=end)
                drafts += page
                while cursor is not None:
                    page, cursor = self.live._invoices.list(self.customer.id, starting_on=start, ending_before=end, offset=cursor)
                    drafts += page
            self._drafts = drafts
        return self._drafts

    def reading(self, alert: Alert) -> Reading:
        if alert.type is AlertType.USAGE_THRESHOLD_REACHED:
            return self._usage(alert)
        if alert.type.falling:
            return self._balance(alert)
        return self._spend(alert)

    def _usage(self, alert: Alert) -> Reading:
        assert alert.billable_metric_id is not None
        metric = self._metrics.get(alert.billable_metric_id) or self.live._metrics.get(alert.billable_metric_id)
        if metric is None:
            return Reading(None)
        self._metrics[metric.id] = metric
        start, end, _ = self.period()
        rows = read_rows(self.live._counters, self.customer, metric, start, end)
        for group in alert.group_values:
            position = metric.dimensions.index(group.key)
            rows = [r for r in rows if r.group[position] == group.value]
        value = combine(metric.aggregation_type, rows)
        return Reading(Decimal(0) if value is None else value, format_rfc3339(start), end)

    def _spend(self, alert: Alert) -> Reading:
        start, end, has_contract = self.period()
        if not has_contract:
            return Reading(None)
        # A voided invoice bills nothing (its regenerated successor, if any, is listed on its own).
        drafts = [
            d for d in self.drafts() if d.invoice.credit_type.id == alert.credit_type_id and d.invoice.status != "VOID"
        ]
        if alert.type is AlertType.INVOICE_TOTAL_REACHED:
            wanted = set(alert.invoice_types_filter) or {t.value for t in InvoiceType}
            totals = [d.invoice.total for d in drafts if d.invoice.type.value in wanted]
            value = max(totals, default=Decimal(0))
        else:
            usage = [d for d in drafts if d.invoice.type is InvoiceType.USAGE]
            if alert.type is AlertType.SPEND_THRESHOLD_REACHED:
                value = sum((d.invoice.subtotal for d in usage), Decimal(0))
            else:
                value = sum((d.invoice.total for d in usage), Decimal(0))
        return Reading(value, format_rfc3339(start), end)

    def _balance(self, alert: Alert) -> Reading:
        if self._burn is None:
            self._burn = self.live._balances.balances_burn_down(self.customer.id)  # balances only
        burn = self._burn
        kinds = BALANCE_KINDS[alert.type]
        watched = [
            b
            for b in burn.balances
            if b.kind in kinds and b.credit_type_id == alert.credit_type_id and b.active_at(burn.as_of)
        ]
        if alert.custom_field_filters:
            if self._grant_fields is None:
                self._grant_fields = self.live._balances.grant_custom_fields(self.customer.id)
            watched = [b for b in watched if _passes(alert, b, self._grant_fields.get(b.grant_id, ({}, {})))]
        if not watched:
            return Reading(None)
        return Reading(sum((b.remaining for b in watched), Decimal(0)))


def _passes(alert: Alert, balance, fields: tuple[Mapping[str, str], Mapping[str, str]]) -> bool:
    is_credit = balance.kind is GrantKind.CREDIT
    return all(f.holds(is_credit, fields[0], fields[1]) for f in alert.custom_field_filters)


# -- the service -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CustomerNotEvaluated:
    """A customer whose evaluation raised; the others were evaluated all the same."""

    customer_id: str
    error: Exception


@dataclass(frozen=True, slots=True)
class Evaluation:
    fired: int = 0
    rearmed: int = 0
    republished: int = 0
    failed: tuple[CustomerNotEvaluated, ...] = ()
    charged: int = 0  # threshold billing crossings (services/thresholds.py)

    def __add__(self, other: "Evaluation") -> "Evaluation":
        return Evaluation(
            self.fired + other.fired,
            self.rearmed + other.rearmed,
            self.republished + other.republished,
            self.failed + other.failed,
            self.charged + other.charged,
        )


class Thresholds(Protocol):
    """Threshold billing and auto-recharge (services/thresholds.ThresholdBillingService): evaluated
    wherever a customer's alerts are, on the same changes."""

    def evaluate_customer(self, customer_id: str) -> Any: ...


class AlertService:
    def __init__(
        self,
        store: AlertStore,
        customers: CustomerStore,
        metrics: MetricStore,
        credit_type_known: Callable[[str], bool],
        readings: Readings,
        publisher: Publisher,
        topic_arn: Callable[[], str],
        clock: Callable[[], datetime],
        *,
        evaluate_later: Callable[[dict], None] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        sleep: Callable[[float], None] = time.sleep,
        thresholds: Thresholds | None = None,
        family: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._thresholds = thresholds
        # A customer's hierarchy (services/hierarchy.py): a child's usage draws its parent's balances.
        self._family = family
        self._store = store
        self._customers = customers
        self._metrics = metrics
        self._credit_type_known = credit_type_known
        self._readings = readings
        self._publisher = publisher
        self._topic_arn = topic_arn
        self._clock = clock
        # Starts evaluating an all-customer alert on every customer, off the request path.
        self._evaluate_later = evaluate_later
        self._lease = lease
        self._sleep = sleep

    # -- API ---------------------------------------------------------------------------------
    def create(
        self,
        *,
        name: str,
        alert_type: str,
        threshold: Any,
        customer_id: str | None = None,
        billable_metric_id: str | None = None,
        credit_type_id: str | None = None,
        group_values: Iterable[GroupValue] = (),
        invoice_types_filter: Iterable[str] = (),
        uniqueness_key: str | None = None,
        evaluate_on_create: bool = True,
        custom_field_filters: Iterable[CustomFieldFilter] = (),
    ) -> Alert:
        customer = None
        if customer_id is not None:
            customer = self._customers.get(customer_id)
            if customer is None:
                raise InvalidInput("customer_id", f"customer {customer_id} not found")
        credit_type_id = credit_type_id or USD_CENTS.id
        alert = new_alert(
            id=str(uuid.uuid4()),
            name=name,
            alert_type=alert_type,
            threshold=threshold,
            created_at=self._clock(),
            credit_type_id=credit_type_id,
            credit_type_known=self._credit_type_known(credit_type_id),
            customer_id=customer_id,
            billable_metric_id=billable_metric_id,
            metric=self._metrics.get(billable_metric_id) if billable_metric_id else None,
            group_values=tuple(group_values),
            invoice_types_filter=tuple(invoice_types_filter),
            uniqueness_key=uniqueness_key,
            custom_field_filters=tuple(custom_field_filters),
        )
        self._store.create(alert)
        if evaluate_on_create:
            if customer is not None:
                # The alert is stored: a failure here must not turn the create into an error that
                # a retry would answer with a second alert. Its customer's next change evaluates it.
                try:
                    self.evaluate(customer, [alert])
                except Exception:  # noqa: BLE001
                    logger.exception("alert %s not evaluated on create for customer %s", alert.id, customer.id)
            elif self._evaluate_later is not None:
                self._evaluate_later({"evaluate_alert": alert.id})
            else:
                self.evaluate_on_every_customer(alert.id)
        return alert

    def archive(self, alert_id: str, release_uniqueness_key: bool = False) -> Alert:
        return self._store.archive(alert_id, self._clock(), release_uniqueness_key)

    def _customer(self, customer_id: str) -> Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer

    def customer_alerts(self, customer_id: str, statuses: Iterable[str] | None = None) -> list[tuple[Alert, AlertState]]:
        """The customer's alerts and the all-customer ones, oldest first, with their state."""
        self._customer(customer_id)
        wanted = {s.lower() for s in statuses} if statuses else {AlertStatus.ENABLED.value}
        alerts = [
            a for a in self._store.in_scope(customer_id) + self._store.in_scope(None) if a.status.value in wanted
        ]
        alerts.sort(key=lambda a: (a.created_at, a.id))
        states = self._store.states([a.id for a in alerts], customer_id)
        return [(a, states[a.id]) for a in alerts]

    def customer_alert(self, alert_id: str, customer_id: str) -> tuple[Alert, AlertState]:
        self._customer(customer_id)
        alert = self._store.get(alert_id)
        if alert is None or alert.customer_id not in (None, customer_id):
            raise NotFound(f"alert {alert_id} not found for customer {customer_id}")
        return alert, self._store.state(alert_id, customer_id)

    def reset(self, alert_id: str, customer_id: str) -> None:
        """Re-arm the alert for the customer (in_alarm → ok), then evaluate it again at once: if the
        value is still past the threshold, that is a new crossing with a new message."""
        alert, _ = self.customer_alert(alert_id, customer_id)
        customer = self._customer(customer_id)
        for _attempt in range(MAX_ATTEMPTS):
            state = self._store.state(alert.id, customer_id)
            if state.pending is not None:
                self._finish_pending(state)
                continue
            if state.status is CustomerStatus.OK or self._store.rearm(state, self._clock()) is not None:
                break
        else:
            raise AlertContention(f"alert {alert_id} kept changing during reset; retry")
        if alert.status is AlertStatus.ENABLED:
            self.evaluate(customer, [alert])

    # -- evaluation --------------------------------------------------------------------------
    def customer_for_ingest_key(self, ingest_key: str) -> Customer | None:
        # Alias first: two reads either way (alias → customer, or alias miss → customer by id).
        return self._customers.by_alias(ingest_key) or self._customers.get(ingest_key)

    def alerts_for(self, customer: Customer, everyone: list[Alert] | None = None) -> list[Alert]:
        everyone = self._store.in_scope(None) if everyone is None else everyone
        return [a for a in self._store.in_scope(customer.id) + everyone if a.applies_to(customer.id)]

    def evaluate_usage_changes(self, changed: Mapping[str, set[str]]) -> dict[str, Evaluation | Exception]:
        """Evaluate the customers whose counters changed. `changed`: ingest key -> metric ids.
        Usage alerts of untouched metrics are skipped; every other alert type is evaluated.
        Returns per ingest key what happened (an exception: that customer failed)."""
        everyone = [a for a in self._store.in_scope(None) if a.status is AlertStatus.ENABLED]
        by_customer: dict[str, tuple[Customer, set[str], list[str]]] = {}
        results: dict[str, Evaluation | Exception] = {}
        for ingest_key, metric_ids in changed.items():
            customer = self.customer_for_ingest_key(ingest_key)
            if customer is None:
                results[ingest_key] = Evaluation()  # usage of nobody (yet): no alert can apply
                continue
            entry = by_customer.setdefault(customer.id, (customer, set(), []))
            entry[1].update(metric_ids)
            entry[2].append(ingest_key)
        for customer, metric_ids, keys in by_customer.values():
            alerts = [
                a
                for a in self.alerts_for(customer, everyone)
                if a.type is not AlertType.USAGE_THRESHOLD_REACHED or a.billable_metric_id in metric_ids
            ]
            try:
                outcome: Evaluation | Exception = self.evaluate(customer, alerts) + self._evaluate_thresholds(customer)
            except Exception as exc:  # noqa: BLE001 - reported per customer; the stream retries it
                outcome = exc
            for key in keys:
                results[key] = outcome
        self._evaluate_families(by_customer, everyone, results)
        return results

    def _evaluate_families(self, by_customer: Mapping, everyone: list[Alert], results: dict) -> None:
        """Usage of a hierarchy's member can draw balances its parent shares: the other members'
        alerts other than usage ones (balances, thresholds such as auto-recharge) are evaluated
        too, once per batch. A failure is reported on the keys that led there, so the stream retries."""
        if self._family is None:
            return
        done = set(by_customer)
        for customer, _, keys in list(by_customer.values()):
            if any(isinstance(results.get(k), Exception) for k in keys):
                continue
            try:
                for member_id in self._family(customer.id):
                    member = None if member_id in done else self._customers.get(member_id)
                    done.add(member_id)
                    if member is None:
                        continue
                    alerts = [a for a in self.alerts_for(member, everyone) if a.type is not AlertType.USAGE_THRESHOLD_REACHED]
                    outcome = self.evaluate(member, alerts) + self._evaluate_thresholds(member)
                    for key in keys:
                        results[key] = results[key] + outcome
            except Exception as exc:  # noqa: BLE001 - reported per customer; the stream retries it
                for key in keys:
                    results[key] = exc

    def evaluate_after_write(self, customer_id: str) -> None:
        """Evaluate the customer's alerts after a write that moved a balance. The write is done: a
        failure here must not turn it into an error that a retry would repeat. It is handed to the
        alerts function instead (asynchronous: Lambda retries it twice, then its DLQ keeps it)."""
        try:
            self.evaluate_customer(customer_id)
            return
        except Exception:  # noqa: BLE001 - whatever failed, the write stands
            logger.exception("alerts of customer %s not evaluated after a write", customer_id)
        if self._evaluate_later is None:
            return
        try:
            self._evaluate_later({"evaluate_customer": customer_id})
        except Exception:  # noqa: BLE001
            logger.exception("alerts of customer %s not handed to the alerts function", customer_id)

    def evaluate_customer(self, customer_id: str) -> Evaluation:
        """Every alert and threshold of the customer (e.g. after a ledger write changed its balances)."""
        customer = self._customer(customer_id)
        return self.evaluate(customer, self.alerts_for(customer)) + self._evaluate_thresholds(customer)

    def _evaluate_thresholds(self, customer: Customer) -> Evaluation:
        """The customer's threshold billing, after its alerts (which saw the usage as it came)."""
        if self._thresholds is None:
            return Evaluation()
        outcome = self._thresholds.evaluate_customer(customer.id)
        return Evaluation(republished=outcome.republished, charged=outcome.charged)

    def evaluate_on_every_customer(self, alert_id: str) -> Evaluation:
        """The alert on every live customer. A customer whose evaluation raises, whatever the
        error, is logged and listed in `failed`; every other customer is still evaluated."""
        alert = self._store.get(alert_id)
        if alert is None or alert.status is not AlertStatus.ENABLED:
            return Evaluation()
        total, cursor = Evaluation(), None
        while True:
            page = self._customers.list(CUSTOMER_PAGE, cursor)
            for customer in page.items:
                if customer.archived_at is None:
                    try:
                        total += self.evaluate(customer, [alert])
                    except Exception as exc:  # noqa: BLE001 - one customer must not stop the walk
                        logger.exception("alert %s not evaluated for customer %s", alert.id, customer.id)
                        total += Evaluation(failed=(CustomerNotEvaluated(customer.id, exc),))
            cursor = page.next_page
            if not cursor:
                return total

    def evaluate(self, customer: Customer, alerts: list[Alert]) -> Evaluation:
        if not alerts:
            return Evaluation()
        # States first, inputs second (see the module docstring).
        states = self._store.states([a.id for a in alerts], customer.id)
        readings = self._readings.for_customer(customer)
        total = Evaluation()
        for alert in alerts:
            total += self._evaluate_one(alert, customer, states[alert.id], readings)
        return total

    def _evaluate_one(self, alert: Alert, customer: Customer, state: AlertState, readings: CustomerReadings) -> Evaluation:
        outcome = Evaluation()
        for _attempt in range(MAX_ATTEMPTS):
            if state.pending is not None:
                outcome += self._finish_pending(state)
            else:
                reading = readings.reading(alert)
                decision = decide(alert, state, reading)
                if decision is Decision.STAY:
                    return outcome
                now = self._clock()
                if decision is Decision.FIRE:
                    assert reading.value is not None
                    message = crossing_message(alert, customer.id, state.crossings + 1, reading, now)
                    claimed = self._store.fire(state, reading.window, reading.value, now, message, now + self._lease)
                    if claimed is not None:
                        self._publish(claimed)
                        return outcome + Evaluation(fired=1)
                elif self._store.rearm(state, now) is not None:
                    return outcome + Evaluation(rearmed=1)
            # Lost a race (or finished someone's pending crossing): read again, decide again, on
            # inputs read after that state.
            state = self._store.state(alert.id, customer.id)
            readings = self._readings.for_customer(customer)
        raise AlertContention(f"alert {alert.id} for customer {customer.id} kept changing")

    def _finish_pending(self, state: AlertState) -> Evaluation:
        """Publish a crossing someone claimed and did not clear: after its lease, take it over."""
        now = self._clock()
        if state.lease_until is not None and state.lease_until > now:
            # Its claimer may still be publishing: wait the lease out, then look again.
            self._sleep(min((state.lease_until - now).total_seconds(), self._lease.total_seconds()))
            return Evaluation()
        taken = self._store.take_lease(state, now + self._lease)
        if taken is None:
            return Evaluation()
        self._publish(taken)
        return Evaluation(republished=1)

    def _publish(self, state: AlertState) -> None:
        assert state.pending is not None
        message = dict(state.pending)
        try:
            self._publisher.publish(self._topic_arn(), message, message_attributes(message))
        except Exception:
            # Let the retry publish at once instead of waiting the lease out.
            self._store.take_lease(state, self._clock())
            raise
        self._store.clear_pending(state)
