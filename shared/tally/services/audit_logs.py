"""The audit log: the entry of the API request being served, and GET /v1/auditLogs.

The API's middleware opens an `audit_scope` for every authenticated request that may change
something; while it is open, every DynamoDB write the request makes carries the request's entry in
the same transaction (adapters/dynamo/audit.py). The entry's id and time are fixed when the request
starts, so a request that writes three times stores one entry three times, identically: the entry
exists exactly when at least one of its writes does.

Not audited, by decision: ingest (usage events are data, not changes of configuration, and come
thousands a second), and what the system does on its own (aggregation, alerts, cycle close, deliveries).
Those run outside any request, so no scope is open; each is keyed by its own ids and replayable.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Iterator, Protocol

from tally.billing.audit import AuditEntry, AuditQuery, RequestNames, Resource, Sort
from tally.billing.errors import InvalidInput


@dataclass(slots=True)
class AuditScope:
    """The entry of the request being served. Its resource is learnt from what the request names
    and writes (a created customer's id is known only at its write), and once final never changes."""

    entry: AuditEntry
    # What the path and body name (billing.audit.names_of_request); asked at the first write, when
    # the body has been validated.
    names: Callable[[], RequestNames] = RequestNames
    final: bool = False
    stored: AuditEntry | None = None  # the entry as the last committed write stored it

    def entry_for(self, written: list[Resource]) -> tuple[AuditEntry, bool]:
        """The entry a write stores, and whether its resource is final."""
        if self.final or (not written and self.entry.resource is not None):
            return self.entry, self.final
        resource, final = self.names().choose(written)
        return replace(self.entry, resource=resource), final

    def written(self, entry: AuditEntry, final: bool) -> None:
        """`entry` was committed: later writes of the request start from it."""
        self.entry, self.final, self.stored = entry, final, entry


_scope: ContextVar[AuditScope | None] = ContextVar("tally_audit_scope", default=None)


def current_scope() -> AuditScope | None:
    return _scope.get()


@contextmanager
def audit_scope(scope: AuditScope) -> Iterator[AuditScope]:
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


class AuditLogStore(Protocol):
    def page(self, query: AuditQuery) -> tuple[list[tuple[str, AuditEntry]], bool]:
        """Up to `query.limit` (position, entry) pairs in order, and whether more follow."""
        ...


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_page: str | None


class AuditLogService:
    def __init__(self, store: AuditLogStore) -> None:
        self._store = store

    def list(
        self, *, limit: int, next_page: str | None = None, sort: Sort | None = None,
        starting_on: datetime | None = None, ending_before: datetime | None = None,
        resource_type: str | None = None, resource_id: str | None = None,
    ) -> AuditPage:
        if (resource_type is None) != (resource_id is None):
            field_name = "resource_id" if resource_id is None else "resource_type"
            raise InvalidInput(field_name, "resource_type and resource_id must be given together")
        if next_page:
            for name, value in (("starting_on", starting_on), ("ending_before", ending_before)):
                if value is not None:
                    raise InvalidInput(name, "cannot be used with next_page (the cursor holds the window)")
            query = AuditQuery.from_cursor(next_page, limit)
            if sort is not None and sort != query.sort:
                raise InvalidInput("sort", "must be the sort of the next_page cursor, or omitted")
            if resource_type is not None and query.resource != Resource(resource_type, resource_id or ""):
                raise InvalidInput("resource_type", "must be the resource of the next_page cursor, or omitted")
        else:
            if starting_on is not None and ending_before is not None and ending_before <= starting_on:
                raise InvalidInput("ending_before", "must be after starting_on")
            resource = None if resource_type is None else Resource(resource_type, resource_id or "")
            query = AuditQuery(sort=sort or "date_asc", limit=limit, starting_on=starting_on,
                               ending_before=ending_before, resource=resource)
        found, more = self._store.page(query)
        entries = [entry for _, entry in found]
        if more:
            return AuditPage(entries, query.cursor(found[-1][0]))
        if query.sort == "date_asc" and query.ending_before is None:
            # Metronome's continuous retrieval: the last page still names where the next entries
            # will start, and an empty page means "nothing new yet; ask again with this cursor".
            position = found[-1][0] if found else query.after
            return AuditPage(entries, query.cursor(position) if position is not None else None)
        return AuditPage(entries, None)
