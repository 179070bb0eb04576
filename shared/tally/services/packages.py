"""Packages (/v1/packages/*): create, read, list, archive, and the contract a package makes.

A package is stored once and never edited (Metronome: "Packages cannot be edited once created"),
except for its archive instant. Its terms are checked when it is created by resolving them against
a start and validating the contract they make, exactly as a contract create would; a contract
created from it later is an ordinary contract document that remembers its `package_id`, and the
store links it to the package in the contract's own create transaction (listContractsOnPackage
reads those links a page at a time, never the contracts of every customer).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Callable, Protocol

from tally.billing import exact_json
from tally.billing.errors import InvalidInput, NotFound
from tally.billing.limits import DYNAMO_ITEM_BYTES, MAX_ALIAS_ENTRIES
from tally.billing.packages import assigned, contract_body, package_at
from tally.billing.time import format_rfc3339, parse_rfc3339


class PackageStore(Protocol):
    def create(self, package: dict, aliases: dict[str, tuple[list[dict], int | None]], uniqueness_key: str | None) -> None:
        """Write a new package with its aliases' new schedules (each conditional on the version it
        was read at, None: not there yet) and its uniqueness claim, all or nothing; Conflict if any
        condition fails."""

    def get(self, package_id: str) -> dict | None:
        """The package, with `_version`."""

    def replace(self, package: dict) -> None:
        """Write a changed package, conditional on its `_version`; Conflict otherwise."""

    def page(self, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        """Up to `limit` packages in creation order after the cursor, and the cursor of the next page."""

    def alias_schedules(self, names: list[str]) -> dict[str, tuple[list[dict], int]]:
        """Each named alias's schedule and its version (absent: never assigned)."""

    def part_owner(self, part_id: str) -> str | None:
        """The id of the package a commit, credit, subscription or scheduled charge was created in."""


class PackageContracts(Protocol):
    def contracts_on_package(
        self, package_id: str, earliest: datetime | None, latest: datetime | None, after: str | None, limit: int
    ) -> tuple[list[dict], str | None]:
        """A page of the contracts created from the package with earliest <= starting_at <= latest,
        in starting_at order (their current documents), and the cursor of the next page."""


class ContractTerms(Protocol):
    def check_terms(self, request: dict) -> None:
        """InvalidInput if the normalized contract create `request` would be refused."""


def _new_id() -> str:
    return str(uuid.uuid4())


def _with_ids(package: dict) -> dict:
    """Every part of the package and every schedule item given an id, as Metronome shows them."""
    made = dict(package)
    for kind in ("commits", "credits"):
        made[kind] = [
            g | {"id": _new_id(),
                 "access_schedule": g["access_schedule"]
                 | {"schedule_items": [i | {"id": _new_id()} for i in g["access_schedule"]["schedule_items"]]}}
            | ({"invoice_schedule": g["invoice_schedule"]
                | {"schedule_items": [i | {"id": _new_id()} for i in g["invoice_schedule"]["schedule_items"]]}}
               if g.get("invoice_schedule") else {})
            for g in package.get(kind) or ()
        ]
    made["scheduled_charges"] = [
        c | {"id": _new_id(), "schedule": c["schedule"] | {"schedule_items": [i | {"id": _new_id()} for i in c["schedule"]["schedule_items"]]}}
        for c in package.get("scheduled_charges") or ()
    ]
    for kind in ("overrides", "subscriptions", "recurring_commits", "recurring_credits"):
        made[kind] = [p | {"id": _new_id()} for p in package.get(kind) or ()]
    return made


class PackageService:
    def __init__(
        self,
        store: PackageStore,
        contracts: PackageContracts,
        terms: ContractTerms,
        validate_request: Callable[[dict], dict],
        clock: Callable[[], datetime],
    ) -> None:
        # validate_request: a contract create body -> its normalized request (the API's
        # ContractCreate), so a package is checked by the same rules as the contracts it makes.
        self._store = store
        self._contracts = contracts
        self._terms = terms
        self._validate_request = validate_request
        self._clock = clock

    def create(self, terms: dict, uniqueness_key: str | None = None, created_by: str | None = None) -> dict:
        now = self._clock()
        aliases = terms.get("aliases") or []
        package = _with_ids({k: v for k, v in terms.items()}) | {
            "id": _new_id(), "created_at": format_rfc3339(now), "aliases": aliases,
        }
        if created_by:
            package["created_by"] = created_by
        if uniqueness_key is not None:
            package["uniqueness_key"] = uniqueness_key
        if len(exact_json.dumps(package).encode()) > DYNAMO_ITEM_BYTES * 3 // 4:
            raise InvalidInput("body", "makes a package too large to store (DynamoDB's 400 KB item)")
        # The terms as a contract starting at the top of this hour would have them.
        reference = now.replace(minute=0, second=0, microsecond=0)
        self._terms.check_terms(self._validate_request(contract_body(package, "package-check", reference)))
        schedules = self._store.alias_schedules([a["name"] for a in aliases])
        updated: dict[str, tuple[list[dict], int | None]] = {}
        for index, alias in enumerate(aliases):
            entries, version = schedules.get(alias["name"], ([], None))
            entries = assigned(entries, package["id"], alias["starting_at"], alias["ending_before"])
            if len(entries) > MAX_ALIAS_ENTRIES:
                raise InvalidInput(f"aliases[{index}].name", f"has been reassigned too often (over {MAX_ALIAS_ENTRIES} windows)")
            updated[alias["name"]] = (entries, version)
        self._store.create(package, updated, uniqueness_key)
        return package

    def get(self, package_id: str) -> dict:
        package = self._store.get(package_id)
        if package is None:
            raise NotFound(f"package {package_id} not found")
        return package

    def list(self, archive_filter: str, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        found, cursor = self._store.page(after, limit)
        wanted = {"ALL": (True, False), "ARCHIVED": (True,), "NOT_ARCHIVED": (False,)}[archive_filter]
        return [p for p in found if bool(p.get("archived_at")) in wanted], cursor

    def alias_windows(self, packages: list[dict]) -> dict[str, list[dict]]:
        """Each package's alias windows as its aliases' schedules have them now: a later package
        given the same alias took the part of the window it covers."""
        names = sorted({a["name"] for p in packages for a in p.get("aliases") or ()})
        schedules = self._store.alias_schedules(names) if names else {}
        windows: dict[str, list[dict]] = {p["id"]: [] for p in packages}
        for name in names:
            for entry in schedules.get(name, ([], 0))[0]:
                if entry["package_id"] in windows:
                    windows[entry["package_id"]].append(
                        {"name": name, "starting_at": entry.get("starting_at"), "ending_before": entry.get("ending_before")}
                    )
        return windows

    def archive(self, package_id: str) -> dict:
        package = self.get(package_id)
        if package.get("archived_at"):
            return package  # archiving twice changes nothing
        changed = dict(package, archived_at=format_rfc3339(self._clock()))
        self._store.replace(changed)
        return changed

    # -- contracts from packages -------------------------------------------------------------------
    def resolve(self, package_id: str | None, package_alias: str | None, starting_at: datetime) -> dict:
        """The package a contract create names, by id or by the alias as of the contract's start."""
        if package_id is not None and package_alias is not None:
            raise InvalidInput("package_alias", "cannot be combined with package_id")
        if package_id is None:
            assert package_alias is not None
            entries = self._store.alias_schedules([package_alias]).get(package_alias, ([], 0))[0]
            package_id = package_at(entries, starting_at)
            if package_id is None:
                raise InvalidInput("package_alias", "names no package at the contract's starting_at")
            field = "package_alias"
        else:
            field = "package_id"
        package = self._store.get(package_id)
        if package is None:
            raise InvalidInput(field, f"names no package ({package_id})")
        if package.get("archived_at"):
            raise InvalidInput(field, "names an archived package; archived packages cannot be used to create contracts")
        return package

    def contract_create_body(self, request: dict) -> dict:
        """The contract create body for a request naming a package: the package's terms resolved
        against the request's starting_at, with the fields a package create allows layered on top
        (custom_fields, uniqueness_key, transition)."""
        starting_at = parse_rfc3339(request["starting_at"])
        package = self.resolve(request.get("package_id"), request.get("package_alias"), starting_at)
        body = contract_body(package, request["customer_id"], starting_at)
        for name in ("custom_fields", "uniqueness_key", "transition"):
            if request.get(name) is not None:
                body[name] = request[name]
        return body

    def contracts_on(
        self, package_id: str, covering_date: datetime | None, starting_at: datetime | None, include_archived: bool,
        after: str | None, limit: int,
    ) -> tuple[list[dict], str | None]:
        if covering_date is not None and starting_at is not None:
            raise InvalidInput("covering_date", "cannot be combined with starting_at")
        self.get(package_id)
        found, cursor = self._contracts.contracts_on_package(package_id, starting_at, covering_date, after, limit)
        kept = []
        for contract in found:
            if contract.get("archived_at") and not include_archived:
                continue
            end = contract.get("ending_before")
            if covering_date is not None and end is not None and parse_rfc3339(end) <= covering_date:
                continue
            kept.append(contract)
        return kept, cursor


def cursor_problem(cursor: str | None) -> None:
    """A list cursor is a stored sort key this API returned: `<sortable instant>#<id>`."""
    if cursor is None:
        return
    instant, _, rest = cursor.partition("#")
    try:
        parse_rfc3339(instant)
        ok = 0 < len(rest) <= 128 and cursor.isascii() and cursor.isprintable()
    except (InvalidInput, ValueError):
        ok = False
    if not ok:
        raise InvalidInput("next_page", "is not a cursor this API returned")

