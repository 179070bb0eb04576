"""The envelope of every message Tally publishes (SNS invoices and alerts topics).

`{"id", "type", "properties"}`: `id` is stable per logical message (a redelivery or a republish
carries the same id), so consumers deduplicate on it. `type` names the message, e.g.
`invoice.finalized` or `alerts.usage_threshold_reached`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def envelope(id: str, type: str, properties: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    if not id:
        raise ValueError("a message needs a stable id")
    if not type:
        raise ValueError("a message needs a type")
    return {"id": id, "type": type, "properties": dict(properties)}
