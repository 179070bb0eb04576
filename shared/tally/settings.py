"""Runtime settings from the environment: read lazily, validated once, cached."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field

from tally.billing.limits import CLOSE_PAGES_PER_EXECUTION


class Settings(BaseModel):
    events_table: str | None = Field(default=None)
    counters_table: str | None = Field(default=None)
    billing_table: str | None = Field(default=None)
    # SNS topic ARNs, set by infra.constructs.topics on each function that publishes.
    invoices_topic_arn: str | None = Field(default=None)
    alerts_topic_arn: str | None = Field(default=None)
    # The alerts function, invoked asynchronously to evaluate a new all-customer alert.
    alerts_function_name: str | None = Field(default=None)
    # Cycle close: a period is finalized once its end plus this grace has passed (per deployment).
    grace_period_hours: int = Field(default=24, ge=0)
    # Cycle close: pages one execution reads before it continues as new (tally.billing.limits).
    close_pages_per_execution: int = Field(default=CLOSE_PAGES_PER_EXECUTION, ge=1)
    # Billing provider secrets live in Secrets Manager under this name prefix (infra/constructs/invoice_delivery.py).
    billing_provider_secrets_prefix: str = Field(default="tally/billing-providers")
    # Stripe's API base: unset for Stripe itself; localstripe's URL on the local stack.
    stripe_api_base: str | None = Field(default=None)
    # Deliveries of an invoice before its message is parked in the DLQ (the queue's maxReceiveCount).
    delivery_max_receives: int = Field(default=5, ge=1)
    # The public API's base URL (the HTTP API's stage URL, set by infra.stack; the local stack's
    # own URL locally) and region: what GET /v1/services tells customers to allow-list.
    api_url: str | None = Field(default=None)
    region: str | None = Field(default=None)
    # Fixed addresses outbound calls leave from (a NAT's Elastic IPs), when the deployment has them.
    egress_ips: tuple[str, ...] = Field(default=())
    # Who bills: the name invoice PDFs and pages are issued under (billing/invoice_document.py).
    issuer_name: str = Field(default="Tally", min_length=1)
    # The generated secret that signs public page links (infra.constructs.page_signing).
    page_signing_secret_arn: str | None = Field(default=None)

    # Backfill jobs (services/backfill.py): their queue, and the settle time before a job reads the
    # events table, longer than any ingest between its stamp and its write (infra/constructs/backfill.py).
    backfill_queue_url: str | None = Field(default=None)
    backfill_settle_seconds: int = Field(default=30, ge=0, le=900)
    backfill_segments: int = Field(default=8, ge=1, le=64)
    # How long a job may wait for a scan before the sweep starts it: longer than a create request
    # can run plus the settle time (infra/constructs/backfill.py). None: the service's default.
    backfill_stuck_after_seconds: int | None = Field(default=None, ge=0, le=86_400)

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
        invoices_topic_arn=os.environ.get("INVOICES_TOPIC_ARN"),
        alerts_topic_arn=os.environ.get("ALERTS_TOPIC_ARN"),
        alerts_function_name=os.environ.get("ALERTS_FUNCTION_NAME"),
        grace_period_hours=os.environ.get("TALLY_GRACE_PERIOD_HOURS") or 24,
        close_pages_per_execution=os.environ.get("TALLY_CLOSE_PAGES_PER_EXECUTION") or CLOSE_PAGES_PER_EXECUTION,
        billing_provider_secrets_prefix=os.environ.get("BILLING_PROVIDER_SECRETS_PREFIX") or "tally/billing-providers",
        stripe_api_base=os.environ.get("STRIPE_API_BASE") or None,
        delivery_max_receives=os.environ.get("DELIVERY_MAX_RECEIVES") or 5,
        api_url=os.environ.get("TALLY_API_URL") or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        page_signing_secret_arn=os.environ.get("PAGE_SIGNING_SECRET_ARN") or None,
        backfill_queue_url=os.environ.get("BACKFILL_QUEUE_URL") or None,
        backfill_settle_seconds=os.environ.get("BACKFILL_SETTLE_SECONDS") or 30,
        backfill_segments=os.environ.get("BACKFILL_SEGMENTS") or 8,
        backfill_stuck_after_seconds=os.environ.get("BACKFILL_STUCK_AFTER_SECONDS") or None,
        egress_ips=tuple(ip.strip() for ip in (os.environ.get("TALLY_EGRESS_IPS") or "").split(",") if ip.strip()),
        issuer_name=(os.environ.get("TALLY_ISSUER_NAME") or "").strip() or "Tally",
    )
