"""Offset lifecycle notifications: their configurations (/v2/notifications/*) and their delivery.

Delivery runs as a task of the close-billing-periods workflow (DeliverNotifications, after the
periods are closed), never as a poller of its own. Its work is O(configurations + due
occurrences): every write of a contract (adapters/dynamo/documents.py) and every finalization of
an invoice (services/cycle_close.py) first records the occurrences it will have in an index kept
by event instant (`lifecycle#<type>#<UTC day>`), and a run asks that index, per live configuration,
for the occurrences whose due instant (instant + offset) it has not walked past yet.

Index entries are written ahead of the write they describe and never deleted, so an entry may be
stale (the write lost its race, or a later edit moved the contract's end): each is checked against
the stored contract or invoice when it falls due, and a stale one is skipped.

Exactly once per (configuration, occurrence):
- The message id is derived from both (billing/notifications.py `delivery_id`), so consumers
  deduplicate a republish.
- A delivery first claims `notification_delivery#<config>#<occurrence>` with a conditional write
  (absent, or claimed longer ago than the lease and never delivered), publishes, then marks it
  delivered. A second or concurrent run loses the claim and publishes nothing. A crash between the
  claim and the publish leaves a claim that expires after the lease; until then a run that finds
  it (a retry of the task, a concurrent run) is held there: it neither publishes nor moves the
  watermark or drops the late entry past it, so a run after the lease claims it again and
  publishes (with the same id).
- Each configuration's watermark (`evaluated_until`, and the last occurrence key at that instant
  when a run stopped part-way) only moves once every occurrence before it was delivered or found
  stale; a run that fails for one configuration leaves its watermark and goes on with the others.

Occurrences written late. An occurrence may be written when it is already due: a contract created
today ending in 3 days, for a configuration "7 days before the end"; a commit segment starting now,
for offset zero, written after the watermark passed now. The walk is past it and never sees it.
Metronome's SDK says only that the offset is "how much time before or after the base event this
notification should be sent". A billing engineer expects the notice late rather than never, once,
at the next run, but no news about events long past (a contract backdated by a month announces
nothing). So the index write (adapters/dynamo/notifications.py) also puts each occurrence that is
already due (or due within RUN_SKEW) for a live configuration, and written at most LATE_BOUND
after its own event instant (billing/notifications.py `late_for`), in that configuration's late
partition `notification_late#<config>`, after its index entry. Every run, after the walk, drains
each live configuration's late partition: it delivers each entry due at or before `as_of` through
the same claim, then deletes the entry. An entry stays for a later run while it is not due yet,
while another run holds its claim, and while it is found stale less than a lease after it was
written (entries are written ahead of the contract, whose write may still be landing).

Why a late partition rather than walking back a window: the look-back would have to be as long as
the largest offset (366 days) to catch a contract created today ending in 3 days for "-P366D", and
every run would re-read every occurrence of that window; the late partition holds only the
occurrences actually late, each read by one run, so the work stays O(configurations + due
occurrences). Why it loses none: a run that did not see an occurrence's index entry queried the
index before the entry was written, so its `as_of` (its scheduled time, at most RUN_SKEW ahead of
the clock) is before the write plus RUN_SKEW; an occurrence due after that is walked by a later
run, one due before it is in the late partition, written after the index entry and deleted only
once settled. The bound is checked against the write, not the run: an outage of the workflow
delays a late notice, it does not drop it. Limits: the configurations are read (gsi1, eventually
consistent) when an occurrence near enough to be late is written, so a configuration created
within that lag of the write may miss a late occurrence of it; a run whose `as_of` is more than
RUN_SKEW ahead of the clock (only a hand-made one) may leave behind occurrences written meanwhile.

A system notification (edit without an id, `is_enabled`) is a stored configuration of offset zero
named `system:<type>`, walked the same way while enabled, from the instant it was last enabled.

Archiving stops future deliveries (an archived configuration is never walked). An edit changes the
name and the offset of the deliveries still to come: the watermark is kept in due-time, so a
smaller offset walks no occurrence twice (and the claims would stop it anyway), and occurrences a
larger offset makes due before the watermark are not sent late (unless written late after the
edit). Late entries are read only for live configurations, and a system notification's only when
written since it was last enabled.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Protocol

from tally.billing.errors import InvalidInput, NotFound
from tally.billing.limits import MAX_NOTIFICATIONS_PER_TASK
from tally.billing.notifications import (
    INVOICE_FINALIZED,
    LIFECYCLE_TYPES,
    OFFSET_TYPE,
    SYSTEM_TYPE,
    Occurrence,
    check_type,
    contract_occurrences,
    event_window,
    grant_id_of,
    grant_occurrences,
    is_live,
    notification_message,
    parse_offset,
)
from tally.billing.time import format_rfc3339, parse_rfc3339
from tally.services.ports import StoreUnavailable

logger = logging.getLogger(__name__)

ENVIRONMENT_TYPE = "PRODUCTION"
DEFAULT_LEASE = timedelta(minutes=15)  # longer than the delivering function's timeout
# What a claim finds (NotificationStore.claim).
CLAIMED, DELIVERED, BUSY = "CLAIMED", "DELIVERED", "BUSY"
STALE = "STALE"  # what a delivery finds when the stored data no longer has the occurrence


class NotificationNotFound(NotFound):
    """No offset notification configuration has this id."""


class NotificationArchived(InvalidInput):
    """An archived configuration cannot be edited."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """How far a configuration's deliveries went: every occurrence due before `until`, and those
    due exactly at `until` with a key up to `key` (all of them when `key` is None)."""

    until: datetime
    key: str | None = None

    def covers(self, due: datetime, key: str) -> bool:
        if due != self.until:
            return due < self.until
        return self.key is None or key <= self.key


class NotificationStore(Protocol):
    def create(self, config: dict, uniqueness_key: str | None) -> None: ...

    def get(self, config_id: str) -> dict | None: ...

    def list(self) -> list[dict]: ...

    def replace(self, config: dict) -> None: ...

    def put_system(self, config: dict) -> None: ...

    def watermark(self, config: dict) -> Watermark | None: ...

    def advance(self, config_id: str, mark: Watermark) -> None: ...

    def occurrences(self, lifecycle_type: str, low: datetime, high: datetime) -> Iterable[Occurrence]: ...

    def late(self, config_id: str) -> Iterable[tuple[Occurrence, datetime]]: ...

    def forget_late(self, config_id: str, key: str) -> None: ...

    def claim(self, config_id: str, key: str, token: str, now: datetime, lease_before: datetime) -> str: ...

    def release(self, config_id: str, key: str, token: str) -> None: ...

    def mark_delivered(self, config_id: str, key: str, token: str, at: datetime, message_id: str) -> None: ...


class Publisher(Protocol):
    def publish(self, topic_arn: str, message: Mapping, attributes: Mapping[str, str]) -> str: ...


@dataclass
class DeliveryRun:
    """What one deliver_due call did."""

    as_of: datetime
    delivered: list[str] = field(default_factory=list)  # message ids
    stale: int = 0
    held: int = 0  # configurations stopped at a claim another run holds (until its lease ends)
    failed: list[dict] = field(default_factory=list)
    more: bool = False

    def summary(self) -> dict:
        return {
            "as_of": format_rfc3339(self.as_of),
            "delivered": len(self.delivered),
            "stale": self.stale,
            "held": self.held,
            "failed": self.failed[:20],
            "more": self.more,
        }


class _BudgetSpent(Exception):
    pass


class NotificationService:
    def __init__(
        self,
        store: NotificationStore,
        publisher: Publisher,
        topic_arn: Callable[[], str],
        clock: Callable[[], datetime],
        *,
        contracts: Callable[[str], dict | None],
        invoices: Callable[[str], Any],
        grants: Callable[[str], dict | None] = lambda grant_id: None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._topic_arn = topic_arn  # read when first needed: the API function publishes nothing
        self._clock = clock
        self._contracts = contracts
        self._invoices = invoices
        self._grants = grants  # customer-level commits and credits
        self._lease = lease

    # -- configurations ------------------------------------------------------------------------
    def create(self, name: str, lifecycle_type: str, offset: str, uniqueness_key: str | None = None) -> dict:
        check_type(lifecycle_type)
        parse_offset(offset)
        config = {
            "id": str(uuid.uuid4()),
            "name": name,
            "type": OFFSET_TYPE,
            "policy": {"type": lifecycle_type, "offset": offset},
            "created_at": format_rfc3339(self._clock()),
            "created_by": "api",
            "environment_type": ENVIRONMENT_TYPE,
        }
        if uniqueness_key is not None:
            config["uniqueness_key"] = uniqueness_key
        self._store.create(config, uniqueness_key)
        return config

    def get(self, config_id: str) -> dict:
        config = self._store.get(config_id)
        if config is None or config.get("type") == SYSTEM_TYPE:
            raise NotificationNotFound(f"notification {config_id} not found")
        return config

    def list(self, archive_filter: str = "NOT_ARCHIVED") -> list[dict]:
        configs = [c for c in self._store.list() if c.get("type") != SYSTEM_TYPE]
        if archive_filter == "ARCHIVED":
            return [c for c in configs if c.get("archived_at")]
        if archive_filter == "NOT_ARCHIVED":
            return [c for c in configs if not c.get("archived_at")]
        return configs

    def edit(self, config_id: str, lifecycle_type: str, offset: str, name: str | None = None) -> dict:
        """A new offset (and name) for the deliveries still to come; the type cannot change."""
        parse_offset(offset)
        config = self.get(config_id)
        if config.get("archived_at"):
            raise NotificationArchived("id", "names an archived notification, which cannot be edited")
        if lifecycle_type != config["policy"]["type"]:
            raise InvalidInput("policy.type", f"must match the notification's lifecycle event type ({config['policy']['type']})")
        changed = dict(config, policy={"type": lifecycle_type, "offset": offset})
        if name is not None:
            changed["name"] = name
        self._store.replace(changed)  # conditional on the version read: a concurrent edit is a 409
        return self.get(config_id)

    def archive(self, config_id: str) -> dict:
        config = self.get(config_id)
        if config.get("archived_at"):
            return config  # archiving twice changes nothing
        self._store.replace(dict(config, archived_at=format_rfc3339(self._clock())))
        return self.get(config_id)

    def system_configs(self) -> list[dict]:
        """The lifecycle event types Tally notifies on (what an offset notification may name), each
        with whether its system notification (at the event itself) is enabled."""
        enabled = {c["policy"]["type"]: bool(c.get("is_enabled")) for c in self._store.list() if c.get("type") == SYSTEM_TYPE}
        return [system_json(t, enabled.get(t, False)) for t in LIFECYCLE_TYPES]

    def set_system_enabled(self, lifecycle_type: str, enabled: bool) -> dict:
        """Turn the system notification of a lifecycle event type on or off. It is delivered as an
        offset notification of offset zero would be, from the instant it is enabled: occurrences
        while it was off are not sent late."""
        check_type(lifecycle_type)
        config_id = system_config_id(lifecycle_type)
        current = self._store.get(config_id)
        if current is not None and bool(current.get("is_enabled")) == enabled:
            return system_json(lifecycle_type, enabled)
        now = self._clock()
        config = {
            "id": config_id,
            "name": lifecycle_type,
            "type": SYSTEM_TYPE,
            "policy": {"type": lifecycle_type, "offset": "PT0S"},
            "created_at": (current or {}).get("created_at") or format_rfc3339(now),
            "created_by": "api",
            "environment_type": ENVIRONMENT_TYPE,
            "is_enabled": enabled,
        }
        if enabled:  # late entries written before this are not sent (nothing while off is sent late)
            config["enabled_at"] = format_rfc3339(now)
        self._store.put_system(config)  # idempotent by key: one item per type
        if enabled:
            self._store.advance(config_id, Watermark(now))
        return system_json(lifecycle_type, enabled)

    # -- delivery ------------------------------------------------------------------------------
    def deliver_due(self, as_of: datetime, budget: int = MAX_NOTIFICATIONS_PER_TASK) -> DeliveryRun:
        """Publish every notification due at or before `as_of` that no run published yet, for every
        live configuration, at most `budget` occurrences walked (`more`: call again)."""
        run = DeliveryRun(as_of)
        remaining = [budget]
        for config in self._store.list():
            if not is_live(config):
                continue
            try:
                self._deliver_config(config, as_of, run, remaining)
            except _BudgetSpent:
                run.more = True
                break
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - one configuration must not stop the others
                logger.exception("notification %s: deliveries failed; its watermark stays", config["id"])
                run.failed.append({"id": config["id"], "error": type(exc).__name__})
        return run

    def _deliver_config(self, config: dict, as_of: datetime, run: DeliveryRun, remaining: list[int]) -> None:
        offset = parse_offset(config["policy"]["offset"])
        mark = self._store.watermark(config) or Watermark(parse_rfc3339(config["created_at"]))
        if as_of > mark.until:
            self._walk(config, offset, mark, as_of, run, remaining)
        self._deliver_late(config, offset, as_of, run, remaining)

    def _walk(self, config: dict, offset: timedelta, mark: Watermark, as_of: datetime, run: DeliveryRun,
              remaining: list[int]) -> None:
        """Deliver what fell due since the watermark and move it to `as_of`, or up to a held claim."""
        low, high = event_window(mark.until, as_of, offset)
        for occurrence in self._store.occurrences(config["policy"]["type"], low, high):
            due = occurrence.instant + offset
            if mark.covers(due, occurrence.key) or due > as_of:
                continue
            self._spend(config, mark, remaining)
            if self._deliver(config, occurrence, offset, run) == BUSY:
                self._store.advance(config["id"], mark)
                run.held += 1
                return
            mark = Watermark(due, occurrence.key)
        self._store.advance(config["id"], Watermark(as_of))

    def _deliver_late(self, config: dict, offset: timedelta, as_of: datetime, run: DeliveryRun, remaining: list[int]) -> None:
        """Drain the configuration's late partition (see the module docstring)."""
        since = parse_rfc3339(config["enabled_at"]) if config.get("type") == SYSTEM_TYPE and config.get("enabled_at") else None
        for occurrence, written_at in self._store.late(config["id"]):
            if since is not None and written_at < since:  # written before the system notification was last off
                self._store.forget_late(config["id"], occurrence.key)
                continue
            if occurrence.instant + offset > as_of:
                continue  # due within the skew of its write: a later run (or the walk) sends it
            self._spend(config, None, remaining)
            outcome = self._deliver(config, occurrence, offset, run)
            if outcome == BUSY:
                run.held += 1
                continue  # kept: a run after the claim's lease delivers it
            if outcome == STALE and written_at > self._clock() - self._lease:
                continue  # kept: entries are written ahead, so the write that makes it may still be landing
            self._store.forget_late(config["id"], occurrence.key)  # once settled: a crash before this re-reads it

    def _spend(self, config: dict, mark: Watermark | None, remaining: list[int]) -> None:
        if remaining[0] <= 0:
            if mark is not None:
                self._store.advance(config["id"], mark)
            raise _BudgetSpent
        remaining[0] -= 1

    def _deliver(self, config: dict, occurrence: Occurrence, offset: timedelta, run: DeliveryRun) -> str:
        """Publish the notification unless it was delivered (DELIVERED) or is stale (STALE); BUSY
        if another run holds its claim (nothing may move past it until that claim is settled or
        expired)."""
        current = self._current(occurrence)
        if current is None:
            run.stale += 1
            return STALE
        token, now = str(uuid.uuid4()), self._clock()
        claimed = self._store.claim(config["id"], occurrence.key, token, now, now - self._lease)
        if claimed != CLAIMED:
            return claimed  # delivered already, or being delivered by a run that may have died
        message = notification_message(config, current, offset)
        try:
            message_id = self._publisher.publish(self._topic_arn(), message, _attributes(message))
        except Exception:
            self._store.release(config["id"], occurrence.key, token)  # a retry may publish at once
            raise
        self._store.mark_delivered(config["id"], occurrence.key, token, self._clock(), message_id)
        run.delivered.append(message["id"])
        return DELIVERED

    def _current(self, occurrence: Occurrence) -> Occurrence | None:
        """The occurrence as the stored data has it now, or None if it no longer has it."""
        if occurrence.type == INVOICE_FINALIZED:
            record = self._invoices(occurrence.subject)
            if record is None or getattr(record, "status", None) != "FINALIZED" or record.finalized_at != occurrence.instant:
                return None
            return occurrence
        if occurrence.contract_id is None:  # a customer-level commit's or credit's segment
            grant = self._grants(grant_id_of(occurrence))
            if grant is None:
                return None
            return next((o for o in grant_occurrences(grant) if o.key == occurrence.key), None)
        contract = self._contracts(occurrence.contract_id)
        if contract is None:
            return None
        return next((o for o in contract_occurrences(contract) if o.key == occurrence.key), None)


def _attributes(message: dict) -> dict[str, str]:
    """SNS message attributes subscribers filter on (as alerts carry them)."""
    properties = message["properties"]
    return {
        "type": message["type"],
        "customer_id": properties.get("customer_id") or "",
        "notification_id": properties.get("notification_id") or "",
    }


def notification_json(config: dict) -> dict:
    """LifecycleEventOffsetNotificationConfig."""
    shown = {
        "id": config["id"],
        "name": config["name"],
        "type": config.get("type", OFFSET_TYPE),
        "policy": {"type": config["policy"]["type"], "offset": config["policy"]["offset"]},
        "created_at": config["created_at"],
        "created_by": config["created_by"],
        "environment_type": config["environment_type"],
    }
    if config.get("archived_at"):
        shown["archived_at"] = config["archived_at"]
    return shown


def system_config_id(lifecycle_type: str) -> str:
    return f"system:{lifecycle_type}"


def system_json(lifecycle_type: str, enabled: bool) -> dict:
    """LifecycleEventSystemNotificationConfig."""
    return {"type": SYSTEM_TYPE, "policy": {"type": lifecycle_type}, "is_enabled": enabled}


def deliver_notifications(state: Any, service: NotificationService) -> dict:
    """The DeliverNotifications task: the state's scheduled `time` is the instant deliveries are
    due as of (the same `as_of` the run closes periods at)."""
    time = state.get("time") if isinstance(state, dict) else None
    if not isinstance(time, str):
        raise InvalidInput("time", "must be an RFC 3339 timestamp such as 2025-02-02T01:00:00Z")
    try:
        as_of = parse_rfc3339(time)
    except ValueError as exc:
        raise InvalidInput("time", "must be an RFC 3339 timestamp such as 2025-02-02T01:00:00Z") from exc
    return service.deliver_due(as_of).summary()


def check_list_filter(value: str | None) -> str:
    if value is None:
        return "NOT_ARCHIVED"
    if value not in ("ARCHIVED", "NOT_ARCHIVED", "ALL"):
        raise InvalidInput("archive_filter", "must be ARCHIVED, NOT_ARCHIVED or ALL")
    return value

