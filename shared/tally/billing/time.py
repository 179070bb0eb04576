"""Instants, RFC 3339 and the hour grain counters are kept in."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Every instant Tally accepts lies in this window. A year-9999 contract start once made period
# arithmetic overflow (year 10000) and stopped cycle close for everyone; year 1 was written back as
# '1-01-01', which is not RFC 3339.
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=timezone.utc)

# RFC 3339 date-time: a 'T' (or space) separator and an explicit offset are mandatory.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; ValueError if it is not one."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError("must be an RFC 3339 timestamp with a timezone, e.g. 2024-01-01T00:00:00Z")
    normalized = text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T").replace(" ", "T")
    frac = re.search(r"\.(\d+)", normalized)
    if frac and len(frac.group(1)) > 6:  # Python keeps microseconds; drop the rest
        normalized = normalized.replace(frac.group(0), "." + frac.group(1)[:6])
    instant = datetime.fromisoformat(normalized).astimezone(UTC)
    if not EARLIEST_INSTANT <= instant < LATEST_INSTANT:
        raise ValueError(
            f"must lie between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d} (exclusive), "
            "so that period arithmetic never leaves the calendar"
        )
    return instant


def format_rfc3339(instant: datetime) -> str:
    """Canonical UTC form, with microseconds only when they are non-zero."""
    instant = instant.astimezone(UTC)
    if instant.microsecond:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_bucket(instant: datetime) -> str:
    """Counter bucket of the UTC hour holding an instant: 'h' + YYYYMMDDHH (sorts as time)."""
    return "h" + instant.astimezone(UTC).strftime("%Y%m%d%H")


def day_bucket(instant: datetime) -> str:
    """Counter bucket of the UTC day holding an instant: 'd' + YYYYMMDD."""
    return "d" + instant.astimezone(UTC).strftime("%Y%m%d")


def month_bucket(instant: datetime) -> str:
    """Counter bucket of the UTC month holding an instant: 'm' + YYYYMM."""
    return "m" + instant.astimezone(UTC).strftime("%Y%m")


def bucket_start(bucket: str) -> datetime:
    """Start of the hour ('h'), day ('d') or month ('m') a counter row covers."""
    pattern = {"h": "%Y%m%d%H", "d": "%Y%m%d", "m": "%Y%m"}[bucket[0]]
    return datetime.strptime(bucket[1:], pattern).replace(tzinfo=UTC)


def month_start(instant: datetime) -> datetime:
    """Start of the UTC month holding an instant."""
    return instant.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(instant: datetime) -> datetime:
    """Start of the UTC month after the one holding an instant."""
    first = month_start(instant)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def is_day_aligned(instant: datetime) -> bool:
    return is_hour_aligned(instant) and instant.astimezone(UTC).hour == 0


def midnight_on_or_after(instant: datetime) -> datetime:
    midnight = instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight >= instant else midnight + DAY


def midnight_on_or_before(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def is_hour_aligned(instant: datetime) -> bool:
    return instant.minute == 0 and instant.second == 0 and instant.microsecond == 0


def truncate_to_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def format_sortable(instant: datetime) -> str:
    """Fixed-width UTC form: string order equals time order (used in stored keys and filters)."""
    if instant.tzinfo is not UTC:
        instant = instant.astimezone(UTC)
    return instant.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
