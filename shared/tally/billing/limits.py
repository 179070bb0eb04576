"""Bounds Tally enforces on input, each derived from what the store (DynamoDB) and AWS can hold.

A value that validation lets through but a later stage cannot store becomes a poison pill for
every customer (DESIGN.md, hard part 8), so the edge checks against these before anything is
written, and the aggregator quarantines what a counter could not hold (services/quarantine.py).
`LIMITS` lists them for the README's table, which a test keeps equal to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

# -- what DynamoDB and AWS allow ----------------------------------------------------------------
DYNAMO_PARTITION_KEY_BYTES = 2_048
DYNAMO_SORT_KEY_BYTES = 1_024
DYNAMO_ITEM_BYTES = 400 * 1_024
DYNAMO_TRANSACTION_ITEMS = 100
API_GATEWAY_PAYLOAD_BYTES = 10 * 1_024 * 1_024
LAMBDA_RESPONSE_BYTES = 6 * 1_024 * 1_024  # a synchronous invocation's response payload

# -- counters' per-shard high-water marks --------------------------------------------------------
# DynamoDB Streams keeps a record 24 hours, and the aggregator's event source mapping gives up on a
# record older than that (MaximumRecordAge, infra/constructs/streams.py). A mark whose newest
# record was created more than the retention plus a margin before the newest record the aggregator
# has seen guards only records that can never be delivered again, so it is removed
# (tally.billing.counters.stale_marks). The margin covers ApproximateCreationDateTime's rounding
# and the trimming's and clocks' slack; it only delays pruning, never makes it unsafe.
STREAM_RECORD_RETENTION_S = 24 * 3_600
MARK_PRUNE_MARGIN_S = 2 * 3_600
# Stale marks one follow-up UpdateItem removes (REMOVE plus a condition per mark, about 25
# characters each, within DynamoDB's 4 KB expression); more wait for the counter's next write.
MAX_MARKS_PRUNED_PER_WRITE = 100
# Stale marks are removed together once the oldest is this far past the window: a counter then takes
# about one removal write an hour rather than one per shard crossing the window (about 25 an hour
# at 100 shards renewed every 4 h); the marks kept grow by about this long's worth.
MARK_PRUNE_EVERY_S = 3_600
# An additive counter (COUNT, SUM) is written as COUNTER_SUB_ITEMS sub-items, each stream shard
# always to the same one (tally.billing.counters.counter_sub_item): a sub-item holds the marks of
# its shards only, and takes the writes of its shards only, so its size and its writes both fall
# about S-fold and its write units per second about S²-fold. Reads sum the sub-items.
# Derived from `tally bench` figure 8 (one customer at 10,000 events/s over 100 stream shards):
# unsharded, a counter takes W = 114 writes/s and, after a day of shard rotation, holds ~670 marks
# (~61 KB), so W × 61 WRU ≈ 7,000 WRU/s against DynamoDB's 1,000 per partition. A sub-item takes a
# share f of both, ≈ 7,000 f² WRU/s, with f the busiest sub-item's share of the shards, some 1.4/S
# at 100 shards hashed (S = 4: f ≈ 0.3, ≈ 650 WRU/s, too near the limit for bursts; S = 8:
# f ≈ 0.18, ≈ 230 WRU/s, 4× under it). At most 9: a read adds the unsuffixed item of before and S
# sub-items, each within ±COUNTER_RANGE (1E19, 18 places), and under 1E20 that sum has 38 digits,
# so it stays exact. More sub-items would cost reads: a range read returns each sub-item.
COUNTER_SUB_ITEMS = 8
# Unsuffixed counter items were written by the aggregator before sub-items; a record it applied
# there may come again (a retry) to this version, so the first write of a shard to a sub-item
# honours the shard's mark on the unsuffixed item, unless every record of the batch was created
# after this long past the function's process start: a process of this version starts after the
# code update, and the earlier version's last invocation ends within its timeout of that (60 s
# deployed; 15 minutes is Lambda's maximum), with 5 minutes for the rollout and the clocks' slack.
# Until then a shard's first write to a counter costs a refused write and a read or two more.
LEGACY_COUNTER_WRITES_GRACE_S = 20 * 60

# -- audit log ----------------------------------------------------------------------------------
# A write made for an API request carries its audit record in the same transaction: the record by
# time, the record by resource, and (when a later write corrects the resource) the removal of the
# earlier guess's record (adapters/dynamo/audit.py). A transaction may hold this many of its own.
AUDIT_ITEMS_PER_TRANSACTION = 3
MAX_TRANSACTION_ITEMS = DYNAMO_TRANSACTION_ITEMS - AUDIT_ITEMS_PER_TRANSACTION
# Partitions the by-time records spread over (a shard suffix): each takes some 1,000 writes/s, a
# record by time costs 2 write units (transactional), so 8 hold some 4,000 audited changes a second;
# a page of the audit log reads each shard once.
AUDIT_LOG_SHARDS = 8

# DynamoDB numbers: 38 significant digits, magnitude between 1E-130 and 1E+126.
MAX_SIGNIFICANT_DIGITS = 38
MAX_ADJUSTED_EXPONENT = 125
MIN_ADJUSTED_EXPONENT = -130
_EXACT = Context(prec=MAX_SIGNIFICANT_DIGITS)

# -- backfill scans (tally.billing.backfill, services/backfill.py) --------------------------------
# What one run of the backfill function may do, and so how many metrics one scan may carry. A run
# must end within the function's timeout with half of it to spare (a run killed mid-page is redone
# from its claim: correct, but paid for twice, and 5 killed receives park the message in the DLQ).
# Applying one event to one metric costs its CPU (matching, pre-aggregating, deciding the writes:
# `tally bench` figure 13f measures it, about 1.0 s per 10,000 events on a shared 2-core machine,
# the in-memory store's writes included; 0.15 ms here) plus its counter writes: an event adds to a
# day and a month counter, and a scan page is a sample of the table in hash order, so across many
# customers its events rarely share a counter: about 2 conditional UpdateItems per event, one after
# another, some 5 ms apiece on AWS. So a run applies at most 150 s / 10.15 ms = 14,778 events x
# metrics: one page of 10,000 events for one metric; a scan of k metrics reads pages k times
# smaller (a claimed page's end key lets the size vary from run to run), so a run costs the same
# whatever k. Pages below 1,000 events would spend more on their own claim and checkpoint writes
# and Scan calls than pre-aggregation saves, hence at most 14 metrics a scan (and forming it is one
# transaction of one write per metric, well within DynamoDB's 100 items).
BACKFILL_RUN_SECONDS = 300  # the backfill function's timeout (infra/constructs/backfill.py)
BACKFILL_COUNTER_WRITE_MS = 5
BACKFILL_WRITES_PER_EVENT = 2
BACKFILL_EVENT_CPU_US = 150
BACKFILL_RUN_EVENT_METRICS = BACKFILL_RUN_SECONDS * 1_000_000 // 2 // (
    BACKFILL_WRITES_PER_EVENT * BACKFILL_COUNTER_WRITE_MS * 1_000 + BACKFILL_EVENT_CPU_US)
MIN_BACKFILL_PAGE_EVENTS = 1_000
MAX_BACKFILL_SCAN_METRICS = min(DYNAMO_TRANSACTION_ITEMS, BACKFILL_RUN_EVENT_METRICS // MIN_BACKFILL_PAGE_EVENTS)

# -- the close-billing-periods workflow (infra/constructs/cycle_close.py) -------------------------
# A STANDARD Step Functions execution ends, failed, at 25,000 history events (and this one after an
# hour), so a run hands its cursor to a new execution of the same state machine after a bounded
# number of pages ("continue as new", services/cycle_close_tasks.py) instead of failing part-way.
SFN_EXECUTION_HISTORY_EVENTS = 25_000
# A FindDuePeriods page ends at this many due periods or more, with whole customers, and holds at
# most twice as many.
CLOSE_PAGE_PERIODS = 100
CLOSE_PAGE_PERIODS_MAX = 2 * CLOSE_PAGE_PERIODS
# A closed period costs 14 events in its Map iteration: MapIterationStarted and MapIterationSucceeded,
# FinalizePeriod and PublishInvoices at 5 each (TaskStateEntered, TaskScheduled, TaskStarted,
# TaskSucceeded, TaskStateExited) and PeriodClosed's StateEntered and StateExited.
CLOSE_EVENTS_PER_PERIOD = 14
# Around the iterations a page costs about 20: FindDuePeriods (5), DeadLetterContracts' Map with no
# contract skipped (4), AnyPeriodsDue (2), ClosePeriods' MapStateEntered, MapStateStarted,
# MapStateSucceeded and MapStateExited (4), and slack; a full page so about 2,830.
CLOSE_EVENTS_PER_PAGE = CLOSE_PAGE_PERIODS_MAX * CLOSE_EVENTS_PER_PERIOD + 30
# Pages one execution closes before it continues as new: half the history budget over a full page's
# events, 12,500 // 2,830 = 4. The other half absorbs what varies: a retried task attempt adds 3
# events (TaskFailed, TaskScheduled, TaskStarted), a dead-lettered period some 10 more, a skipped
# contract about 8, and the final execution's notification pages. At 4 pages of 100 to 200 periods
# an execution also ends well within its hour (a page takes under a minute at 5 in parallel).
CLOSE_PAGES_PER_EXECUTION = (SFN_EXECUTION_HISTORY_EVENTS // 2) // CLOSE_EVENTS_PER_PAGE

# -- request shape ------------------------------------------------------------------------------
# JSON request bodies: deeper nesting than this is refused (Python's parser would otherwise recurse
# until it fails with a RecursionError, a 500).
MAX_NESTING_DEPTH = 32
# Ids named in one request (`customer_ids` of /v1/usage): each costs reads, and API Gateway gives up
# after 30 s; 3,000 once took 70 s.
MAX_IDS_PER_REQUEST = 100
# Windows of one usage series or invoice breakdown (100 days of hours); group values one usage
# window lists.
MAX_WINDOWS = 24 * 100
# Days of one customer costs list (/v1/customers/{id}/costs): the range is priced with a cut at
# every midnight, once per page, within API Gateway's 30 s (a quarter of days, like Metronome's
# breakdowns).
MAX_COST_DAYS = 100
MAX_USAGE_GROUP_VALUES = 200
# Values one /v1/usage answer may hold (a window's value, and each value of its groups): some 250
# bytes each as JSON, so an answer stays far below Lambda's 6 MB response limit. 25 customers × 80
# metrics × 24 hours once answered 12 MB, which API Gateway turns into a 502.
MAX_USAGE_VALUES = 10_000
# (customer, metric) series one /v1/usage answer may read, each at least one DynamoDB query per
# ingest key, within API Gateway's 30 s: 25 customers × 85 metrics took 9 s on moto in-process.
MAX_USAGE_SERIES = 500
# A request body, unpacked: well under API Gateway's payload limit, and a bound on what one
# request can make the API function parse.
MAX_BODY_BYTES = 1_000_000
# Keys. Every DynamoDB key holding input is fixed text (at most some 25 bytes), ids Tally makes
# (uuids) and strings bounded here in characters, each at most 4 bytes in UTF-8. So an id,
# transaction id, ingest key, alias or uniqueness key (MAX_ID_LENGTH) takes at most 512 bytes, and the
# longest keys are: partition, `cfval#<entity>#<custom field key>#<value>` 1,232 bytes and
# `contract_uniq#<customer id>#<uniqueness key>` 1,039 of DynamoDB's 2,048; sort, a counter item's
# (usage counters, below) 1,024 and the quarantine's `<transaction id>` 512 of 1,024. Names
# (MAX_NAME_LENGTH) are in no key but a package alias's partition key (1,034 bytes).
# tests/unit/test_key_sizes.py builds each key from input at these bounds.
MAX_ID_LENGTH = 128  # characters of an id, transaction id, event type or ingest key
MAX_NAME_LENGTH = 255
# Seat ids a SEAT_BASED subscription starts with: they live in the contract's item (DynamoDB's
# 400 KB), some 130 bytes each.
MAX_INITIAL_SEAT_IDS = 1_000
# Items one recurring schedule of a scheduled charge makes (a century of months): they live in the
# contract's item too.
MAX_SCHEDULE_ITEMS = 1_200

# Invoice PDFs (GET .../invoices/{id}/pdf). The PDF travels base64-encoded in the Lambda response
# (4 bytes per 3), so it may take three quarters of it, less room for the response's own fields.
MAX_INVOICE_PDF_BYTES = LAMBDA_RESPONSE_BYTES * 3 // 4 - 64 * 1_024
# Line items one PDF lays out, within API Gateway's 30 s: 5,000 lines take 0.6-0.7 s of CPU here
# (infra/bench/pdf.py), so 20,000 some 5 s on the API function's 1,024 MB (0.58 vCPU), after the
# invoice itself is priced.
MAX_INVOICE_PDF_LINES = 20_000

# -- usage events -------------------------------------------------------------------------------
MAX_EVENTS_PER_REQUEST = 100
# One event as JSON: its stored item (the event, its receipt attributes) stays far below
# DynamoDB's 400 KB, and a full stream batch stays under Lambda's 6 MB invocation payload.
MAX_EVENT_BYTES = 64 * 1_024

# -- usage counters -----------------------------------------------------------------------------
# UNIQUE counters store a value longer than this as its 128-bit digest (22 characters), so one
# item holds about 17,000 distinct long values (6,000 of 64 characters) within 400 KB.
MAX_UNIQUE_MEMBER_CHARS = 64
# Items a UNIQUE counter spills into when its own item is full, each member always to the same one
# (by its hash): with the counter's item, some 1,000,000 distinct long values in one hour or day.
UNIQUE_SPILL_ITEMS = 64
# A counter item's sort key is its bucket (at most 11 characters, 'h2026111507') + '#' + its group
# values as JSON + the item's suffix: none, a UNIQUE counter's spill item `~<n>` (n <=
# UNIQUE_SPILL_ITEMS: 3 characters, on 'h' and 'd' buckets) or an additive counter's sub-item
# `~<n>` (n <= COUNTER_SUB_ITEMS: 2). The group JSON may take what DynamoDB's 1,024-byte sort key
# leaves after the longest bucket and the longest suffix: 1,024 - 11 - 1 - 3 = 1,009. (The suffix
# was once left out: a UNIQUE counter with more group JSON refused its spill items.) A (record,
# metric) pair whose group values are longer is quarantined before any counter is written
# (tally.billing.quarantine.group_problem). The partition key, `m#<metric id>#k#<ingest key>`,
# holds a uuid and an ingest key (MAX_ID_LENGTH characters).
LONGEST_BUCKET = 11
LONGEST_COUNTER_SUFFIX = len(f"~{max(UNIQUE_SPILL_ITEMS, COUNTER_SUB_ITEMS)}")
MAX_GROUP_JSON_BYTES = DYNAMO_SORT_KEY_BYTES - LONGEST_BUCKET - len("#") - LONGEST_COUNTER_SUFFIX
# Properties one metric may group by: 16 values of about 60 bytes each fit the sort key.
MAX_GROUP_PROPERTIES = 16
# SUM counters are exact on the grid of SQL's DECIMAL(38,18): every value a multiple of 1E-18, every
# counter item's total within +-1E19 (and a counter's at most 9 items sum to under 1E20), so every
# sum needs at most 38 digits and is never rounded. A value off the grid, or a sum that would leave
# the range, is quarantined with its reason.
SUM_DECIMAL_PLACES = 18
COUNTER_RANGE = Decimal(10) ** (MAX_SIGNIFICANT_DIGITS - SUM_DECIMAL_PLACES - 1)

# -- definitions (metrics, customers, products, rate cards, contracts) ---------------------------
MAX_CUSTOM_FIELDS = 50
# Metronome documents custom field keys of at most 100 characters and values of at most 200
# (/v1/customFields/setValues); 50 fields of 100 + 200 characters stay far under an item.
MAX_CUSTOM_FIELD_KEY_LENGTH = 100
MAX_CUSTOM_FIELD_VALUE_LENGTH = 200
MAX_FILTERS_PER_METRIC = 32
MAX_FILTER_VALUES = 100  # in_values / not_in_values of one filter
MAX_FILTER_VALUE_LENGTH = 1_024
MAX_PROPERTY_NAME_LENGTH = 128
# Replacing a customer's aliases releases the old ones and claims the new ones in one transaction
# (100 items at most), with the customer's own item.
MAX_INGEST_ALIASES = 40  # (MAX_TRANSACTION_ITEMS - 2) // 2 = 47 would just fit

# A package is one item (its terms as JSON): parts of each kind, schedule items of each part, and its
# aliases, each alias written in the package's create transaction (100 items at most).
MAX_PACKAGE_PARTS = 100
MAX_PACKAGE_SCHEDULE_ITEMS = 120
MAX_PACKAGE_ALIASES = 10
# Windows one alias's schedule keeps (one item): each later assignment adds at most two.
MAX_ALIAS_ENTRIES = 200
# Offsets from a contract's start: a century, so every resolved date stays below year 9999.
MAX_PACKAGE_OFFSET = {"DAYS": 36_525, "WEEKS": 5_218, "MONTHS": 1_200, "YEARS": 100}
# Packages, or contracts on a package, one page lists (one query page, then one BatchGetItem).
MAX_PACKAGES_PAGE = 100

# A named schedule is one item: its segments as JSON, with room left for its keys and name.
MAX_NAMED_SCHEDULE_BYTES = 300 * 1_024
# Product ids in a rate card's product order: kept in the card's own item, 2,000 x ~40 bytes
# leaves most of DynamoDB's 400 KB for the card's names, aliases and custom fields.
MAX_RATE_CARD_PRODUCT_ORDER = 2_000

# Offset notifications (/v2/notifications/*). Every close-workflow run reads every live
# configuration and queries one index partition per (configuration, UTC day its window spans), so
# their number is bounded (Metronome lists at most 400 a page: one page holds them all). The offset
# is bounded so that a window shifted by it stays inside the instants tally.billing.time allows and
# spans few day partitions.
MAX_NOTIFICATION_CONFIGS = 400
MAX_NOTIFICATION_OFFSET_DAYS = 366
# Occurrences one DeliverNotifications task publishes before handing over to the next iteration
# (each is a claim, a read, a publish and a mark: ~4 calls, well inside the task's timeout).
MAX_NOTIFICATIONS_PER_TASK = 200

# Public page links (tally.billing.page_tokens). A token rides in a URL path: browsers, proxies and
# log pipelines cut URLs somewhere past 2,000 characters, and API Gateway's request line takes
# 10 KB. A link lives at most a quarter of days; a leaked link then stops working on its own.
MAX_PAGE_TOKEN_CHARS = 2_000
MAX_PAGE_LINK_LIFETIME_DAYS = 90

# The invoices dashboard lists the newest invoices only: each listed period of a draft is priced in
# the page's one API call (API Gateway's 30 s). The usage dashboard charts this many metrics of a
# contract's rate card, each a day series read from the counters in that same call.
MAX_DASHBOARD_INVOICES = 100
MAX_DASHBOARD_METRICS = 50


@dataclass(frozen=True, slots=True)
class Limit:
    what: str
    value: str
    protects: str


def _n(number: int) -> str:
    return f"{number:,}"


LIMITS = (
    Limit("significant digits of any number", str(MAX_SIGNIFICANT_DIGITS), "DynamoDB numbers (also magnitude 1E-130 to 1E+126)"),
    Limit("JSON nesting depth of a body", str(MAX_NESTING_DEPTH), "the API function (deep nesting once gave a 500)"),
    Limit("bytes of a request body, unpacked", _n(MAX_BODY_BYTES), "the API function; API Gateway takes 10 MB"),
    Limit("ids named in one `/v1/usage` request", str(MAX_IDS_PER_REQUEST), "API Gateway's 30 s timeout"),
    Limit("windows of one usage series or invoice breakdown", _n(MAX_WINDOWS), "the API function's answer"),
    Limit("days of one customer costs list", str(MAX_COST_DAYS), "API Gateway's 30 s timeout (priced per page)"),
    Limit("values in one `/v1/usage` answer", _n(MAX_USAGE_VALUES), "Lambda's 6 MB response (12 MB once gave a 502)"),
    Limit("series (customers × metrics) in one `/v1/usage` answer", str(MAX_USAGE_SERIES), "API Gateway's 30 s timeout"),
    Limit("line items of an invoice PDF / bytes of the PDF", f"{_n(MAX_INVOICE_PDF_LINES)} / {_n(MAX_INVOICE_PDF_BYTES)}", "API Gateway's 30 s timeout; Lambda's 6 MB response, base64"),
    Limit("characters of an id, transaction id, event type or alias", str(MAX_ID_LENGTH), "keys (DynamoDB: 2,048-byte partition key)"),
    Limit("events in one ingest or previewEvents request", str(MAX_EVENTS_PER_REQUEST), "the ingest function (Metronome's own limit)"),
    Limit("bytes of one event as JSON", _n(MAX_EVENT_BYTES), "DynamoDB's 400 KB item; Lambda's 6 MB stream batch"),
    Limit("bytes of a counter's group values as JSON", _n(MAX_GROUP_JSON_BYTES), "DynamoDB's 1,024-byte sort key (longer: quarantined)"),
    Limit("properties a metric groups by", str(MAX_GROUP_PROPERTIES), "the counter sort key"),
    Limit("decimal places of a summed value", str(SUM_DECIMAL_PLACES), "exact SUM counters (more: quarantined)"),
    Limit("magnitude of a SUM counter's item", "1E19", "exact SUM counters: its 9 items add up exactly (beyond: quarantined)"),
    Limit("characters of a UNIQUE value kept as is", str(MAX_UNIQUE_MEMBER_CHARS), "DynamoDB's 400 KB item (longer: kept as a digest)"),
    Limit("sub-items of a COUNT or SUM counter", str(COUNTER_SUB_ITEMS), "DynamoDB's 1,000 write units/s per partition (10k events/s from one customer)"),
    Limit("items a UNIQUE counter spills into", str(UNIQUE_SPILL_ITEMS), "DynamoDB's 400 KB item (~1M distinct values a day; beyond: quarantined)"),
    Limit("custom fields of an object", str(MAX_CUSTOM_FIELDS), "DynamoDB's 400 KB item"),
    Limit("characters of a custom field key / value", f"{MAX_CUSTOM_FIELD_KEY_LENGTH} / {_n(MAX_CUSTOM_FIELD_VALUE_LENGTH)}", "Metronome's documented bounds"),
    Limit("products in a rate card's product order", _n(MAX_RATE_CARD_PRODUCT_ORDER), "DynamoDB's 400 KB item (the card's)"),
    Limit("property filters of a metric", str(MAX_FILTERS_PER_METRIC), "DynamoDB's 400 KB item"),
    Limit("values in one filter / characters of each", f"{MAX_FILTER_VALUES} / {_n(MAX_FILTER_VALUE_LENGTH)}", "DynamoDB's 400 KB item"),
    Limit("characters of a property name", str(MAX_PROPERTY_NAME_LENGTH), "DynamoDB's 400 KB item"),
    Limit("ingest aliases of a customer", str(MAX_INGEST_ALIASES), "one 100-item transaction replaces them all"),
    Limit("bytes of one named schedule as JSON (all its segments)", _n(MAX_NAMED_SCHEDULE_BYTES), "DynamoDB's 400 KB item"),
    Limit("parts of each kind of a package / schedule items of a part / aliases", f"{MAX_PACKAGE_PARTS} / {MAX_PACKAGE_SCHEDULE_ITEMS} / {MAX_PACKAGE_ALIASES}", "DynamoDB's 400 KB item; the 100-item create transaction"),
    Limit("packages or contracts on a package in one page", str(MAX_PACKAGES_PAGE), "one query page and one BatchGetItem"),
    Limit("offset notification configurations (archived included)", str(MAX_NOTIFICATION_CONFIGS), "the close workflow reads them all every run"),
    Limit("days of a notification's offset, before or after", str(MAX_NOTIFICATION_OFFSET_DAYS), "day partitions a delivery window spans"),
    Limit("characters of a page link's token / days it is valid", f"{_n(MAX_PAGE_TOKEN_CHARS)} / {MAX_PAGE_LINK_LIFETIME_DAYS}", "URLs browsers and proxies keep whole; a leaked link expires"),
    Limit("invoices an invoices dashboard lists (the newest) / metrics a usage dashboard charts", f"{MAX_DASHBOARD_INVOICES} / {MAX_DASHBOARD_METRICS}", "API Gateway's 30 s timeout (one call prices or reads them all)"),
    Limit("items of one API write's transaction", str(MAX_TRANSACTION_ITEMS), "DynamoDB's 100-item transaction (3 go to the audit record)"),
    Limit("metrics one backfill scan carries (more wait for the next)", str(MAX_BACKFILL_SCAN_METRICS), "the backfill function's 300 s timeout (a run's events x metrics) over 1,000-event pages"),
)


def limits_table(instants: str) -> str:
    """The README's Limits table (`instants`: the range tally.billing.time allows, as text)."""
    rows = [*LIMITS, Limit("instants (dates of contracts, schedules, queries)", instants, "period arithmetic (year 9999 stopped cycle close)")]
    lines = ["| limit | value | protects |", "|---|---|---|"]
    lines += [f"| {row.what} | {row.value} | {row.protects} |" for row in rows]
    return "\n".join(lines)


def size_problem(text: str, limit: int, unit: str = "characters") -> str | None:
    """The rule and the value's size when `text` is longer than `limit`, else None."""
    size = len(text.encode("utf-8")) if unit == "bytes" else len(text)
    return None if size <= limit else f"must be at most {limit:,} {unit}, got {size:,}"


def sum_value_problem(value: Decimal) -> str | None:
    """Why `value` cannot be added to a SUM counter exactly (None when it can). `value` is a
    storable number (38 digits at most), so normalizing it is exact."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -SUM_DECIMAL_PLACES and -COUNTER_RANGE <= value <= COUNTER_RANGE:
        return None  # the common case, without normalizing
    if value.normalize(_EXACT).as_tuple().exponent < -SUM_DECIMAL_PLACES:  # type: ignore[operator]
        return f"has more than {SUM_DECIMAL_PLACES} decimal places, so a sum of it could not stay exact"
    if abs(value) > COUNTER_RANGE:
        return "exceeds 1E19 in magnitude, the most a SUM counter holds exactly"
    return None


def identifier_problem(value: str) -> str | None:
    """Why `value` cannot be an id or ingest key (None if it can): blank, or holding a control
    character such as NUL, which would make two keys look alike in logs, keys and pages."""
    if not value.strip():
        return "must not be blank"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "must not contain control characters"
    return None


def storable_number(number: Decimal | int) -> bool:
    """True when a DynamoDB number can hold `number` exactly."""
    number = Decimal(number)
    if not number.is_finite():
        return False
    if not number:
        return True
    significant = "".join(map(str, number.as_tuple().digits)).strip("0")
    return (
        len(significant) <= MAX_SIGNIFICANT_DIGITS
        and MIN_ADJUSTED_EXPONENT <= number.adjusted() <= MAX_ADJUSTED_EXPONENT
    )


NUMBER_RULE = (
    f"must be a number of at most {MAX_SIGNIFICANT_DIGITS} significant digits "
    "with a magnitude between 1E-130 and 1E+126"
)


def first_unstorable(document: Any, path: str = "body", text: bool = False) -> tuple[str, str] | None:
    """(field path, rule) of the first number a store could not hold, of nesting past
    MAX_NESTING_DEPTH, or (`text`: the body escapes a surrogate) of a string that is not Unicode
    text; None when the document is fine. Iterative, so depth never recurses."""
    stack: list[tuple[Any, str, int]] = [(document, path, 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_NESTING_DEPTH:
                return where, f"must not nest more than {MAX_NESTING_DEPTH} levels deep"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, inner in items:
                if text and isinstance(key, str) and not is_text(key):
                    return f"{where}.{key!a}", TEXT_RULE
                stack.append((inner, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}", depth + 1))
        elif isinstance(value, (int, Decimal)) and not isinstance(value, bool) and not storable_number(value):
            return where, NUMBER_RULE
        elif text and isinstance(value, str) and not is_text(value):
            return where, TEXT_RULE
    return None


# JSON can escape half of a UTF-16 pair ("\ud800") where no UTF-8 text can hold it: DynamoDB
# refuses such a string, and it would be refused far from the request that sent it.
TEXT_RULE = "must be Unicode text (a lone UTF-16 surrogate such as \\ud800 is not)"
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
