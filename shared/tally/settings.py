"""Runtime settings from the environment: read lazily, validated once, cached."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Settings(BaseModel):
    events_table: str | None = Field(default=None)
    counters_table: str | None = Field(default=None)
    billing_table: str | None = Field(default=None)

    def require(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise RuntimeError(f"environment variable {name.upper()} is not set for this function")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(
        events_table=os.environ.get("EVENTS_TABLE"),
        counters_table=os.environ.get("COUNTERS_TABLE"),
        billing_table=os.environ.get("BILLING_TABLE"),
    )
