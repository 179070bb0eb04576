"""Customers and the ingest keys their usage arrives under."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_ID_LENGTH, MAX_INGEST_ALIASES as MAX_ALIASES, identifier_problem, size_problem
from tally.billing.time import is_hour_aligned, truncate_to_hour


@dataclass(frozen=True, slots=True)
class KeyWindow:
    """An ingest key and the event times [since, until) of its usage that are this customer's.

    Counters are keyed by the ingest key as sent and split at UTC hours, so an alias released at T
    is its former owner's up to the hour boundary at or after T, and a later owner's from there on:
    the two windows meet and never overlap, so no usage counts for both."""

    key: str
    since: datetime | None = None
    until: datetime | None = None

    def clip(self, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
        """The part of [start, end) this window covers (None: none of it)."""
        low = start if self.since is None else max(start, self.since)
        high = end if self.until is None else min(end, self.until)
        return (low, high) if low < high else None


@dataclass(frozen=True, slots=True)
class KeyHandover:
    """What ingest does with events sent under one ingest key, by event time.

    - `ignored_from`: the key is an archived customer's own id; events from then on count for
      no one (its contracts ended there).
    - `released` [from, until): the key is an alias released at `from`. Its former owner reads it up
      to `until` (the next UTC hour, where counters can split it), so events timed in that window
      count for no one, unless a customer `owner` claimed the alias at `claimed_at` and the event is
      timed at or after the claim: then it is that customer's, stored under its own id (the alias's
      counters in that hour are the former owner's)."""

    ignored_from: datetime | None = None
    released: tuple[datetime, datetime] | None = None
    owner: str | None = None
    claimed_at: datetime | None = None

    def route(self, timestamp: datetime, key: str) -> str | None:
        """The ingest key an event timed `timestamp` sent under `key` is stored under (None: not stored)."""
        if self.ignored_from is not None and timestamp >= self.ignored_from:
            return None
        if self.released is not None and self.released[0] <= timestamp < self.released[1]:
            if self.owner is not None and self.claimed_at is not None and timestamp >= self.claimed_at:
                return self.owner
            return None
        return key


def release_edge(instant: datetime) -> datetime:
    """Where a key released at `instant` changes hands: the first UTC hour boundary at or after it."""
    return instant if is_hour_aligned(instant) else truncate_to_hour(instant) + timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    external_id: str | None
    ingest_aliases: tuple[str, ...]
    custom_fields: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived_at: datetime | None = None
    salesforce_account_id: str | None = None
    # Aliases claimed after another customer released them: read from that release's edge.
    alias_since: dict[str, datetime] = field(default_factory=dict)
    # Aliases this customer released (by an alias change or its archive), read up to the release edge.
    former_keys: tuple[KeyWindow, ...] = ()

    @property
    def key_windows(self) -> tuple[KeyWindow, ...]:
        """Every ingest key whose usage is this customer's, with the event times it is so: the keys
        it holds now (an alias taken over from another customer from the handover on), and the
        aliases it released, up to their release (an archived customer's draft keeps them)."""
        current = [KeyWindow(key, self.alias_since.get(key)) for key in self.ingest_keys]
        return (*current, *self.former_keys)

    def released(self, aliases: tuple[str, ...] | list[str], at: datetime) -> tuple[KeyWindow, ...]:
        """former_keys after releasing `aliases` at `at`."""
        edge = release_edge(at)
        added = tuple(
            KeyWindow(alias, self.alias_since.get(alias), edge)
            for alias in aliases
            if self.alias_since.get(alias) is None or self.alias_since[alias] < edge
        )
        return self.former_keys + added

    @property
    def ingest_keys(self) -> tuple[str, ...]:
        """Every customer_id value under which this customer's events may have been sent.
        An archived customer has released its aliases (another customer may own them now)."""
        if self.archived_at is not None:
            return (self.id,)
        keys = [self.id, *self.ingest_aliases]
        if self.external_id:
            keys.append(self.external_id)
        return tuple(dict.fromkeys(keys))

    @property
    def claimed_aliases(self) -> tuple[str, ...]:
        """Aliases that must be unique across customers (external_id is a deprecated alias).
        An archived customer claims none: archiving releases them for other customers."""
        if self.archived_at is not None:
            return ()
        return tuple(key for key in self.ingest_keys if key != self.id)


def validate_aliases(field_name: str, aliases: list[str]) -> tuple[str, ...]:
    if len(aliases) > MAX_ALIASES:
        raise InvalidInput(field_name, f"must hold at most {MAX_ALIASES} aliases, got {len(aliases):,}")
    for index, alias in enumerate(aliases):
        if not isinstance(alias, str):
            raise InvalidInput(f"{field_name}[{index}]", "must be a string")
        problem = identifier_problem(alias) or size_problem(alias, MAX_ID_LENGTH)
        if problem:  # an alias is an ingest key, held to an event's customer_id rules
            raise InvalidInput(f"{field_name}[{index}]", problem)
    return tuple(dict.fromkeys(aliases))
