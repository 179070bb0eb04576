"""Named schedules of rate cards, contracts and customers: read, update, list (billing/named_schedules.py).

A schedule belongs to one owner and is known by its name; a contract's schedules are also told apart
by their `properties` (key-value pairs that qualify which schedule a lookup means), so one name may
hold several schedules on one contract. Each schedule is one stored item, replaced conditionally on
the version read: two concurrent updates of one schedule are applied one after the other, never
one over the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from tally.billing import exact_json
from tally.billing.errors import Conflict, InvalidInput
from tally.billing.limits import MAX_NAMED_SCHEDULE_BYTES
from tally.billing.named_schedules import Segment, covering, set_value
from tally.billing.time import format_rfc3339

ATTEMPTS = 5  # an update that keeps losing races to other updates of the same schedule gives up (409)


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    owner: str  # "rate_card#<id>", "contract#<id>" or "customer#<id>"
    name: str
    properties: Mapping[str, str] = field(default_factory=dict)
    segments: tuple[Segment, ...] = ()
    version: int = 0  # 0: not stored yet


class NamedScheduleStore(Protocol):
    def get(self, owner: str, name: str, properties: Mapping[str, str]) -> StoredSchedule | None: ...

    def put(self, schedule: StoredSchedule) -> None:
        """Store the schedule as version + 1; Conflict if its stored version is not `version`."""

    def of_owner(self, owner: str) -> list[StoredSchedule]: ...


class OwnerDirectory(Protocol):
    """Raises NotFound for an unknown owner (the services of rate cards, contracts and customers)."""

    def rate_card(self, rate_card_id: str) -> None: ...

    def contract(self, customer_id: str, contract_id: str) -> None: ...

    def contract_ids(self, customer_id: str) -> list[str]: ...

    def customer(self, customer_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ScheduleListing:
    contract_id: str
    name: str
    properties: Mapping[str, str]
    segments: tuple[Segment, ...]


class NamedScheduleService:
    def __init__(self, store: NamedScheduleStore, owners: OwnerDirectory, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._owners = owners
        self._clock = clock

    # -- rate cards --------------------------------------------------------------------------
    def rate_card_schedule(self, rate_card_id: str, name: str, covering_date: datetime | None = None) -> tuple[Segment, ...]:
        self._owners.rate_card(rate_card_id)
        return self._read(f"rate_card#{rate_card_id}", name, {}, covering_date)

    def update_rate_card_schedule(
        self, rate_card_id: str, name: str, starting_at: datetime, ending_before: datetime | None, value: Any
    ) -> None:
        self._owners.rate_card(rate_card_id)
        self._update(f"rate_card#{rate_card_id}", name, {}, starting_at, ending_before, value)

    # -- contracts ---------------------------------------------------------------------------
    def contract_schedule(
        self,
        customer_id: str,
        contract_id: str,
        name: str,
        properties: Mapping[str, str] | None = None,
        covering_date: datetime | None = None,
    ) -> tuple[Segment, ...]:
        self._owners.contract(customer_id, contract_id)
        return self._read(f"contract#{contract_id}", name, properties or {}, covering_date)

    def update_contract_schedule(
        self,
        customer_id: str,
        contract_id: str,
        name: str,
        starting_at: datetime,
        ending_before: datetime | None,
        value: Any,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self._owners.contract(customer_id, contract_id)
        self._update(f"contract#{contract_id}", name, properties or {}, starting_at, ending_before, value)

    def contract_schedules(
        self,
        customer_id: str,
        contract_id: str | None = None,
        name: str | None = None,
        properties: Mapping[str, str] | None = None,
        covering_date: datetime | None = None,
    ) -> list[ScheduleListing]:
        """The customer's contract schedules (one contract's, given its id), by contract then name
        then properties. `properties` keeps the schedules holding at least those pairs; with
        `covering_date` each shows at most the segment covering it."""
        if contract_id is not None:
            self._owners.contract(customer_id, contract_id)
            contract_ids = [contract_id]
        else:
            contract_ids = self._owners.contract_ids(customer_id)
        wanted = dict(properties or {})
        found = []
        for contract in sorted(contract_ids):
            for schedule in self._store.of_owner(f"contract#{contract}"):
                if name is not None and schedule.name != name:
                    continue
                if any(schedule.properties.get(k) != v for k, v in wanted.items()):
                    continue
                found.append(
                    ScheduleListing(contract, schedule.name, dict(schedule.properties), covering(schedule.segments, covering_date))
                )
        return sorted(found, key=lambda s: (s.contract_id, s.name, sorted(s.properties.items())))

    # -- customers ---------------------------------------------------------------------------
    def customer_schedule(self, customer_id: str, name: str, covering_date: datetime | None = None) -> tuple[Segment, ...]:
        self._owners.customer(customer_id)
        return self._read(f"customer#{customer_id}", name, {}, covering_date)

    def update_customer_schedule(
        self, customer_id: str, name: str, starting_at: datetime, ending_before: datetime | None, value: Any
    ) -> None:
        self._owners.customer(customer_id)
        self._update(f"customer#{customer_id}", name, {}, starting_at, ending_before, value)

    # -- shared ------------------------------------------------------------------------------
    def _read(
        self, owner: str, name: str, properties: Mapping[str, str], covering_date: datetime | None
    ) -> tuple[Segment, ...]:
        """A schedule never set has no segments (an empty answer, as for a date nothing covers)."""
        stored = self._store.get(owner, name, properties)
        return covering(stored.segments if stored else (), covering_date)

    def _update(
        self,
        owner: str,
        name: str,
        properties: Mapping[str, str],
        starting_at: datetime,
        ending_before: datetime | None,
        value: Any,
    ) -> None:
        if not name.strip():
            raise InvalidInput("schedule_name", "must not be blank")
        for attempt in range(ATTEMPTS):
            stored = self._store.get(owner, name, properties) or StoredSchedule(owner, name, dict(properties))
            segments = set_value(stored.segments, starting_at, ending_before, value)
            size = len(exact_json.dumps(_segments_document(segments)).encode("utf-8"))
            if size > MAX_NAMED_SCHEDULE_BYTES:
                raise InvalidInput(
                    "value", f"the schedule would take {size:,} bytes as JSON; at most {MAX_NAMED_SCHEDULE_BYTES:,} are kept"
                )
            try:
                self._store.put(StoredSchedule(owner, name, dict(properties), segments, stored.version))
                return
            except Conflict:
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


def _segments_document(segments: tuple[Segment, ...]) -> list[dict]:
    return [segment_document(s) for s in segments]


def segment_document(segment: Segment) -> dict:
    """A segment as stored and as the API shows it (`ending_before` only when it has one)."""
    document: dict[str, Any] = {"starting_at": format_rfc3339(segment.starting_at), "value": segment.value}
    if segment.ending_before is not None:
        document["ending_before"] = format_rfc3339(segment.ending_before)
    return document


class ServiceOwners:
    """OwnerDirectory over the catalog, contract and customer services."""

    def __init__(self, catalog, contracts) -> None:
        self._catalog = catalog
        self._contracts = contracts

    def rate_card(self, rate_card_id: str) -> None:
        self._catalog.rate_card_record(rate_card_id)  # NotFound when unknown

    def contract(self, customer_id: str, contract_id: str) -> None:
        self._contracts.get(customer_id, contract_id)  # NotFound for an unknown customer or contract

    def contract_ids(self, customer_id: str) -> list[str]:
        return [d["id"] for d in self._contracts.list(customer_id, include_archived=True)]

    def customer(self, customer_id: str) -> None:
        self._contracts.customer(customer_id)
