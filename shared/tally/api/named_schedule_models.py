"""Named schedules on the API. Shapes: metronome-sdk's types/v1/contracts/named_schedule_*
(rate cards), types/v1/contracts/rate_cards/named_schedule_* (contracts, and their list) and
types/v1/customers/named_schedule_*."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from tally.api.models import MAX_NAME_LENGTH, CustomFields, Request, parse_instant
from tally.billing.named_schedules import Segment
from tally.services.named_schedules import ScheduleListing, segment_document

ScheduleName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class _Get(Request):
    schedule_name: ScheduleName
    covering_date: str | None = None

    def covering(self) -> datetime | None:
        return parse_instant("covering_date", self.covering_date)


class _Update(Request):
    schedule_name: ScheduleName
    starting_at: str
    ending_before: str | None = None
    value: Any  # any JSON, null included; bounded by the body's limits and the schedule's size

    def window(self) -> tuple[datetime, datetime | None]:
        starting_at = parse_instant("starting_at", self.starting_at)
        assert starting_at is not None
        return starting_at, parse_instant("ending_before", self.ending_before)


class RateCardScheduleGet(_Get):
    rate_card_id: str = Field(min_length=1)


class RateCardScheduleUpdate(_Update):
    rate_card_id: str = Field(min_length=1)


class ContractScheduleGet(_Get):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    properties: CustomFields | None = None


class ContractScheduleUpdate(_Update):
    contract_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    properties: CustomFields | None = None


class ContractSchedulesList(Request):
    customer_id: str = Field(min_length=1)
    contract_id: str | None = Field(default=None, min_length=1)
    covering_date: str | None = None
    limit: int | None = Field(default=None, ge=1, le=100)
    next_page: str | None = None
    properties: CustomFields | None = None
    schedule_name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)

    def covering(self) -> datetime | None:
        return parse_instant("covering_date", self.covering_date)


class CustomerScheduleGet(_Get):
    customer_id: str = Field(min_length=1)


class CustomerScheduleUpdate(_Update):
    customer_id: str = Field(min_length=1)


def segments_json(segments: tuple[Segment, ...]) -> dict:
    return {"data": [segment_document(s) for s in segments]}


def listing_json(listing: ScheduleListing) -> dict:
    body: dict[str, Any] = {
        "contract_id": listing.contract_id,
        "schedule_name": listing.name,
        "segments": [segment_document(s) for s in listing.segments],
    }
    if listing.properties:
        body["properties"] = dict(listing.properties)
    return body
