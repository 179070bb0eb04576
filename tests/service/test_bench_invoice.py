"""The invoice figure of `tally bench` measures a correct invoice: the draft it times, priced by
the API function's own services from counters written straight to DynamoDB, is the invoice a
billing engineer computes by hand, and the one the bench's independent pricing computes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from infra.bench.invoice import (
    PERIOD_START,
    PRICE_CHANGE,
    SETUP_AT,
    Clock,
    InvoiceWorld,
    Shape,
    Usage,
    check_invoice,
    measure_round_trips,
    reference_invoice,
    run_invoice_figure,
    simulate_usage,
    wired,
)

# Input tokens and output tokens, each at the standard service level (FLAT) and the priority one
# (TIERED, then FLAT from the price change); models 000-002 are flagships with their own FLAT token rates.
SHAPE = Shape(families=2, levels=2, models=4)
INPUT_STANDARD, INPUT_PRIORITY = 0, 1
FLAGSHIP, FLAGSHIP_0, PLAIN = 1, 0, 3  # model indexes
CHANGE_HOUR = int((PRICE_CHANGE - PERIOD_START) / timedelta(hours=1))


@pytest.fixture()
def world(dynamo):
    clock = Clock(SETUP_AT)
    tables = {kind: dynamo[kind] for kind in ("billing", "events", "counters")}
    with wired(tables, clock):
        world = InvoiceWorld(SHAPE, clock, tables)
        world.set_up_catalog()
        yield world


def test_the_bench_draft_is_the_hand_computed_invoice(world):
    usage = Usage(events=7, hourly={
        (INPUT_STANDARD, FLAGSHIP, 5): 1_000_000,  # flagship FLAT 2 × 0.00025 = 0.0005: 500.00
        (INPUT_STANDARD, PLAIN, 0): 400_000,  # FLAT 0.00025, first and last hour of the month:
        (INPUT_STANDARD, PLAIN, 719): 600_000,  # one line, 1,000,000 × 0.00025 = 250.00
        # Priority is 1.5 × list: TIERED 0.000375 for 1M, 0.0003 for the next 10M. Before the change,
        # 1M × 0.000375 + 0.5M × 0.0003 = 525.00; after it, FLAT 0.9 × 0.000375 = 0.0003375:
        # 2M × 0.0003375 = 675.00.
        (INPUT_PRIORITY, PLAIN, CHANGE_HOUR - 1): 1_500_000,
        (INPUT_PRIORITY, PLAIN, CHANGE_HOUR): 2_000_000,
        # The flagship rate does not change, so the price change does not split its line:
        # 30,000 × 2 × 0.000375 = 22.50.
        (INPUT_PRIORITY, FLAGSHIP_0, 100): 10_000,
        (INPUT_PRIORITY, FLAGSHIP_0, 600): 20_000,
    })
    account = world.open_account(usage, "bench-hand")
    assert world.feed(account) == 6 + 4  # a day counter per (product, model, day), a month counter per (product, model)

    invoice = world.draft(account)

    lines = sorted((line.total, line.starting_at) for line in invoice.line_items if line.quantity)
    assert lines == sorted([
        (Decimal("500.00"), PERIOD_START), (Decimal("250.00"), PERIOD_START), (Decimal("525.00"), PERIOD_START),
        (Decimal("675.00"), PRICE_CHANGE), (Decimal("22.50"), PERIOD_START),
    ])
    assert invoice.total == Decimal("1972.50")
    assert reference_invoice(usage, SHAPE).total == Decimal("1972.50")


def test_the_bench_draft_after_a_skewed_month_matches_the_independent_pricing(world):
    usage = simulate_usage(3_000, SHAPE)
    account = world.open_account(usage, "bench-month")
    world.feed(account)

    invoice = world.draft(account)

    expected = check_invoice(invoice, usage, SHAPE)  # raises unless totals and line counts agree
    assert invoice.total == expected.total > 0
    assert {line.starting_at for line in invoice.line_items} == {PERIOD_START, PRICE_CHANGE}


def test_the_figure_reads_are_bounded_by_the_contract_not_the_events():
    few, many = run_invoice_figure((100, 1_000), SHAPE, repeats=1)

    # Per ingest key (the customer id and its alias): each product's month of day buckets, and the
    # hours of the 15th on either side of the price change for the priority products.
    bound = 2 * (SHAPE.products + 2 * SHAPE.families)
    assert few.counter_requests <= many.counter_requests == bound
    assert few.billing_requests == many.billing_requests
    assert many.counter_items > few.counter_items and many.counter_items_read > few.counter_items_read
    assert min(few.cpu_ms, many.cpu_ms, few.rating_cpu_ms, many.rating_cpu_ms) > 0


def test_a_draft_reads_its_counters_together_in_a_few_round_trips(world):
    # 8 products × 4 models, per ingest key (the customer id and its alias): each product's month,
    # and the days and hours around the price change for the 2 priority products: 24 counter
    # ranges, read by one round of the pool once the contract, rate card and metrics are known.
    account = world.open_account(simulate_usage(500, SHAPE), "bench-together")
    world.feed(account)

    (trips, requests), (sequential_trips, sequential_requests) = measure_round_trips(world, account)  # drafts equal

    assert requests == sequential_requests == sequential_trips
    assert sequential_trips > 2 * (SHAPE.products + 2 * SHAPE.families)
    # the invoice, then the customer and everything its id names, then what its contract names
    # (rate card, grants, metrics), then the counters
    assert trips == 4
