from __future__ import annotations

from datetime import datetime, timezone


def system_clock() -> datetime:
    return datetime.now(timezone.utc)
