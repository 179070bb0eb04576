"""Lifecycle notifications (Metronome's /v2/notifications): pure rules.

An *occurrence* is one lifecycle event of one object at one instant: a contract's start or end, a
commit's or credit's access segment starting or ending, an invoice finalized. An *offset
notification* configuration names a lifecycle event type and an ISO-8601 offset; it is due for an
occurrence of that type at `occurrence.instant + offset` ("-P3D": three days before).

Delivery walks a window per configuration: the occurrences whose due instant lies in
(`evaluated_until`, `as_of`] are those whose own instant lies in (`evaluated_until - offset`,
`as_of - offset`], which is what the index of occurrences (kept by event instant) can answer.

An occurrence written when it is already due (`late_for`) falls behind that walk; it is delivered
late, once, at the next run, if it was written at most LATE_BOUND after its event instant.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_NOTIFICATION_OFFSET_DAYS
from tally.billing.messages import envelope
from tally.billing.time import format_rfc3339, parse_rfc3339

CONTRACT_START = "contract.start"
CONTRACT_END = "contract.end"
COMMIT_SEGMENT_START = "commit.segment.start"
COMMIT_SEGMENT_END = "commit.segment.end"
CREDIT_SEGMENT_START = "credit.segment.start"
CREDIT_SEGMENT_END = "credit.segment.end"
INVOICE_FINALIZED = "invoice.finalized"

# Metronome's lifecycle event names (its system notification types) that Tally has data for.
LIFECYCLE_TYPES = (
    CONTRACT_START,
    CONTRACT_END,
    COMMIT_SEGMENT_START,
    COMMIT_SEGMENT_END,
    CREDIT_SEGMENT_START,
    CREDIT_SEGMENT_END,
    INVOICE_FINALIZED,
)
OFFSET_TYPE = "OFFSET"  # the `type` of a user-created configuration (LifecycleEventOffsetNotificationConfig)
SYSTEM_TYPE = "SYSTEM"

# A late occurrence (written when already due for a configuration) is still sent if it was written
# at most this long after its own event instant: a contract created today that ends in 3 days gets
# its "7 days before the end" notice, one created starting a few minutes ago gets its
# contract.start, and a contract backdated by a week announces nothing about the past. One day is
# one daily cycle's worth: longer than the hour between close runs, shorter than anything a
# customer would read as news.
LATE_BOUND = timedelta(days=1)
# How far ahead of the clock a close run's `as_of` (its scheduled time) may be. An occurrence due
# within this of its write may be behind a run already under way, so it is treated as late too
# (the claims keep it single if the walk also delivers it).
RUN_SKEW = timedelta(hours=1)

_NAMESPACE = uuid.UUID("6f0c5a5e-7d1e-4f8e-9a40-0d3c1b2a9e11")
# Days, hours, minutes, seconds (and weeks). Months and years have no fixed length, so an instant
# plus "P1M" would depend on the calendar; Metronome's examples use days and hours.
_OFFSET = re.compile(
    r"^(?P<sign>[+-])?P(?!$)(?:(?P<w>\d{1,4})W)?(?:(?P<d>\d{1,6})D)?"
    r"(?:T(?=\d)(?:(?P<h>\d{1,7})H)?(?:(?P<m>\d{1,9})M)?(?:(?P<s>\d{1,11})S)?)?$"
)


def parse_offset(text: str, field_name: str = "policy.offset") -> timedelta:
    """An ISO-8601 duration with an optional sign: "-P3D", "P1D", "PT0S", "-PT2H", "P1DT12H"."""
    match = _OFFSET.match(text or "")
    if match is None:
        rule = "must be an ISO-8601 duration such as -P3D, P1D, -PT2H or PT0S"
        if re.match(r"^[+-]?P(\d+Y|\d+M)", text or ""):
            rule = "months and years have no fixed length; give the offset in days (P30D), hours or minutes"
        raise InvalidInput(field_name, rule)
    parts = {name: int(match.group(name) or 0) for name in ("w", "d", "h", "m", "s")}
    try:
        offset = timedelta(weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError as exc:
        raise InvalidInput(field_name, f"must be at most {MAX_NOTIFICATION_OFFSET_DAYS} days before or after") from exc
    if offset > timedelta(days=MAX_NOTIFICATION_OFFSET_DAYS):
        raise InvalidInput(field_name, f"must be at most {MAX_NOTIFICATION_OFFSET_DAYS} days before or after")
    return -offset if match.group("sign") == "-" else offset


def check_type(lifecycle_type: str, field_name: str = "policy.type") -> str:
    if lifecycle_type not in LIFECYCLE_TYPES:
        raise InvalidInput(field_name, f"must be a supported lifecycle event type, one of {', '.join(LIFECYCLE_TYPES)}")
    return lifecycle_type


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One lifecycle event. `subject` tells apart events of the same type and contract (a grant's
    segment, an invoice); `key` identifies the occurrence, instant included: an edit that moves a
    contract's end makes a new occurrence, and the old one is no longer the contract's."""

    type: str
    instant: datetime
    customer_id: str
    contract_id: str | None
    subject: str
    properties: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.type}|{self.contract_id or ''}|{self.subject}|{format_rfc3339(self.instant)}"


def _segments(kind: str, grant: dict, contract: dict) -> list[Occurrence]:
    segments = grant.get("access_schedule") or []
    found = []
    for number, segment in enumerate(segments, start=1):
        properties = {
            f"{kind}_id": grant["id"],
            "segment_id": segment.get("id"),
            "segment_number": number,
            "total_segments": len(segments),
            "segment_starting_at": segment["starting_at"],
            "segment_ending_before": segment["ending_before"],
        }
        for edge, at in (("start", segment["starting_at"]), ("end", segment["ending_before"])):
            found.append(
                Occurrence(
                    f"{kind}.segment.{edge}", parse_rfc3339(at), contract["customer_id"], contract["id"],
                    f"{grant['id']}/{segment.get('id') or number}", properties,
                )
            )
    return found


def contract_occurrences(contract: dict) -> list[Occurrence]:
    """Every lifecycle occurrence a stored contract document has (an archived one has none)."""
    if contract.get("archived_at"):
        return []
    customer_id, contract_id = contract["customer_id"], contract["id"]
    found = [Occurrence(CONTRACT_START, parse_rfc3339(contract["starting_at"]), customer_id, contract_id, contract_id)]
    if contract.get("ending_before"):
        found.append(Occurrence(CONTRACT_END, parse_rfc3339(contract["ending_before"]), customer_id, contract_id, contract_id))
    for kind, grants in (("commit", contract.get("commits")), ("credit", contract.get("credits"))):
        for grant in grants or ():
            if not grant.get("archived_at"):
                found += _segments(kind, grant, contract)
    return found


def grant_occurrences(grant: dict) -> list[Occurrence]:
    """The segment starts and ends of a customer-level commit or credit (no contract)."""
    if grant.get("archived_at"):
        return []
    kind = "credit" if grant.get("type") == "CREDIT" else "commit"
    return _segments(kind, grant, {"id": None, "customer_id": grant["customer_id"]})


def grant_id_of(occurrence: Occurrence) -> str:
    """The commit or credit a segment occurrence belongs to (its subject is `<grant>/<segment>`)."""
    return occurrence.subject.split("/", 1)[0]


def invoice_finalized_occurrence(invoice_id: str, customer_id: str, contract_id: str | None, finalized_at: datetime) -> Occurrence:
    return Occurrence(INVOICE_FINALIZED, finalized_at, customer_id, contract_id, invoice_id)


def event_window(evaluated_until: datetime, as_of: datetime, offset: timedelta) -> tuple[datetime, datetime]:
    """The (exclusive, inclusive] bounds of the event instants whose notification falls due after
    `evaluated_until` and at or before `as_of`."""
    return evaluated_until - offset, as_of - offset


def late_for(offset: timedelta, occurrence: Occurrence, written_at: datetime) -> bool:
    """Whether an occurrence written at `written_at` is one a configuration of this offset must
    deliver late: due at or before the write (give or take a run's skew), so a walk may already
    be past it, and its event at most LATE_BOUND before the write."""
    return occurrence.instant + offset <= written_at + RUN_SKEW and written_at - occurrence.instant <= LATE_BOUND


def may_be_late(occurrence: Occurrence, written_at: datetime) -> bool:
    """Whether any offset allowed could make the occurrence late (before reading configurations)."""
    return late_for(-timedelta(days=MAX_NOTIFICATION_OFFSET_DAYS), occurrence, written_at)


def is_live(config: dict) -> bool:
    """A configuration deliveries are made for: not archived, and a system one only while enabled."""
    if config.get("archived_at"):
        return False
    return config.get("type") != SYSTEM_TYPE or bool(config.get("is_enabled"))


def window_days(low: datetime, high: datetime) -> list[date]:
    """The UTC days an (exclusive low, inclusive high] window of instants touches."""
    first, last = low.astimezone(UTC).date(), high.astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def delivery_id(config_id: str, occurrence_key: str) -> str:
    """The message id of one configuration's notification for one occurrence: the same for every
    run, retry or republish, so consumers deduplicate on it."""
    return str(uuid.uuid5(_NAMESPACE, f"{config_id}|{occurrence_key}"))


def notification_message(config: dict, occurrence: Occurrence, offset: timedelta) -> dict:
    """The `{id, type, properties}` envelope, typed by Metronome's lifecycle event name."""
    properties = {
        "notification_id": config["id"],
        "notification_name": config["name"],
        "offset": config["policy"]["offset"],
        "customer_id": occurrence.customer_id,
        "event_timestamp": format_rfc3339(occurrence.instant),
        "timestamp": format_rfc3339(occurrence.instant + offset),
        **occurrence.properties,
    }
    if occurrence.contract_id is not None:
        properties["contract_id"] = occurrence.contract_id
    if occurrence.type == INVOICE_FINALIZED:
        properties["invoice_id"] = occurrence.subject
        properties["invoice_finalized_date"] = format_rfc3339(occurrence.instant)
    return envelope(delivery_id(config["id"], occurrence.key), occurrence.type, properties)
