"""Metering through Metronome's official SDK, unchanged, against the local stack.

Every figure below is worked out by hand from the events each test sends. The SDK parses usage
values as floats, so the figures are small integers (exact in binary); exact decimals are checked
on the raw JSON in test_http_contract.py.
"""

from __future__ import annotations

import pytest

from tests.system.usage_events import DAY, HOUR, current_hour, unique, usage_event, usage_value

pytestmark = pytest.mark.system


def _ids(pages) -> list[str]:
    return [item.id for page in pages for item in page.data]


def _one_item_pages(first_page) -> list:
    pages = list(first_page.iter_pages())
    assert all(len(page.data) <= 1 for page in pages), "limit=1 must give pages of at most one item"
    return pages


# -- customers ---------------------------------------------------------------------------------
def test_customers_are_created_read_listed_page_by_page_and_re_aliased(sdk):
    tag = unique("customer")
    created = []
    for n in range(3):
        customer = sdk.v1.customers.create(
            name=f"{tag} #{n}",
            ingest_aliases=[f"{tag}-alias-{n}", f"{tag}-{n}@example.com"],
            external_id=f"{tag}-ext-{n}",
            custom_fields={"plan": f"plan-{n}"},
        ).data
        assert (customer.name, customer.ingest_aliases, customer.external_id, customer.custom_fields) == (
            f"{tag} #{n}",
            [f"{tag}-alias-{n}", f"{tag}-{n}@example.com"],
            f"{tag}-ext-{n}",
            {"plan": f"plan-{n}"},
        )
        created.append(customer)

    for n, customer in enumerate(created):
        detail = sdk.v1.customers.retrieve(customer_id=customer.id).data
        assert detail.id == customer.id
        assert detail.name == f"{tag} #{n}"
        assert detail.ingest_aliases == [f"{tag}-alias-{n}", f"{tag}-{n}@example.com"]
        assert detail.external_id == f"{tag}-ext-{n}"
        assert detail.custom_fields == {"plan": f"plan-{n}"}
        assert detail.archived_at is None
        assert detail.created_at <= detail.updated_at

    # limit=1 walks every customer of the session one page at a time; each appears exactly once.
    listed = _ids(_one_item_pages(sdk.v1.customers.list(limit=1)))
    assert len(listed) == len(set(listed))
    assert {c.id for c in created} <= set(listed)

    by_ids = sdk.v1.customers.list(customer_ids=[c.id for c in created])
    assert sorted(c.id for c in by_ids.data) == sorted(c.id for c in created)
    assert [c.id for c in sdk.v1.customers.list(ingest_alias=f"{tag}-alias-1").data] == [created[1].id]

    # Re-aliasing replaces the aliases: the old one is free again, the new ones find the customer.
    sdk.v1.customers.set_ingest_aliases(customer_id=created[0].id, ingest_aliases=[f"{tag}-new-a", f"{tag}-new-b"])
    assert sdk.v1.customers.retrieve(customer_id=created[0].id).data.ingest_aliases == [f"{tag}-new-a", f"{tag}-new-b"]
    assert sdk.v1.customers.list(ingest_alias=f"{tag}-alias-0").data == []
    assert [c.id for c in sdk.v1.customers.list(ingest_alias=f"{tag}-new-b").data] == [created[0].id]
    newcomer = sdk.v1.customers.create(name=f"{tag} newcomer", ingest_aliases=[f"{tag}-alias-0"]).data
    assert [c.id for c in sdk.v1.customers.list(ingest_alias=f"{tag}-alias-0").data] == [newcomer.id]


def test_only_archived_customers_are_listed_when_asked(sdk):
    active = sdk.v1.customers.create(name=unique("active")).data.id
    assert active not in [c.id for c in sdk.v1.customers.list(only_archived=True)]


def test_a_customers_billable_metrics_are_listed_page_by_page(sdk):
    tag = unique("customer-metrics")
    customer = sdk.v1.customers.create(name=tag).data
    active = sdk.v1.billable_metrics.create(
        name=f"{tag} active", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    archived = sdk.v1.billable_metrics.create(
        name=f"{tag} archived", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    sdk.v1.billable_metrics.archive(id=archived)

    listed = _ids(_one_item_pages(sdk.v1.customers.list_billable_metrics(customer_id=customer.id, limit=1)))
    assert active in listed
    assert archived not in listed
    with_archived = _ids(
        _one_item_pages(
            sdk.v1.customers.list_billable_metrics(customer_id=customer.id, limit=1, include_archived=True)
        )
    )
    assert {active, archived} <= set(with_archived)


# -- billable metrics --------------------------------------------------------------------------
def _definitions(tag: str) -> dict[str, dict]:
    """One metric per aggregation, each with an event-type filter, property filters of every kind
    and compound group keys."""
    return {
        "COUNT": dict(
            event_type_filter={"in_values": [f"{tag}-gen", f"{tag}-chat"]},
            property_filters=[
                {"name": "user", "exists": True},
                {"name": "tier", "not_in_values": ["free", "trial"]},
                {"name": "debug", "exists": False},
            ],
            group_keys=[["region"], ["region", "model"]],
        ),
        "SUM": dict(
            aggregation_key="tokens",
            event_type_filter={"not_in_values": [f"{tag}-ping"]},
            property_filters=[{"name": "tokens", "exists": True}, {"name": "region", "in_values": ["eu", "us"]}],
            group_keys=[["region", "model"]],
        ),
        "MAX": dict(
            aggregation_key="latency_ms",
            event_type_filter={"in_values": [f"{tag}-gen"]},
            property_filters=[{"name": "latency_ms", "exists": True}],
            group_keys=[["model"]],
        ),
        "UNIQUE": dict(
            aggregation_key="user",
            event_type_filter={"in_values": [f"{tag}-gen"], "not_in_values": [f"{tag}-ping"]},
            property_filters=[{"name": "user", "exists": True}, {"name": "tier", "in_values": ["pro"]}],
            group_keys=[["region"], ["model", "region", "tier"]],
        ),
        "LATEST": dict(
            aggregation_key="seats",
            event_type_filter={"in_values": [f"{tag}-seats"]},
            property_filters=[{"name": "seats", "exists": True}, {"name": "plan", "not_in_values": ["legacy"]}],
            group_keys=[["region", "model"]],
        ),
    }


def test_billable_metrics_of_every_aggregation_round_trip_list_and_archive(sdk):
    tag = unique("metric")
    definitions = _definitions(tag)
    ids = {}
    for aggregation, definition in definitions.items():
        ids[aggregation] = sdk.v1.billable_metrics.create(
            name=f"{tag} {aggregation}",
            aggregation_type=aggregation,
            custom_fields={"owner": "system-tests"},
            **definition,
        ).data.id

    for aggregation, definition in definitions.items():
        metric = sdk.v1.billable_metrics.retrieve(billable_metric_id=ids[aggregation]).data
        assert metric.id == ids[aggregation]
        assert metric.name == f"{tag} {aggregation}"
        assert metric.aggregation_type == aggregation
        assert metric.aggregation_key == definition.get("aggregation_key")
        assert metric.event_type_filter.to_dict() == definition["event_type_filter"]
        assert [f.to_dict() for f in metric.property_filters] == definition["property_filters"]
        assert (metric.group_keys or []) == definition["group_keys"]
        assert metric.custom_fields == {"owner": "system-tests"}
        assert metric.archived_at is None

    listed = _ids(_one_item_pages(sdk.v1.billable_metrics.list(limit=1)))
    assert len(listed) == len(set(listed))
    assert set(ids.values()) <= set(listed)

    archived = sdk.v1.billable_metrics.archive(id=ids["SUM"])
    assert archived.data.id == ids["SUM"]
    archived_at = sdk.v1.billable_metrics.retrieve(billable_metric_id=ids["SUM"]).data.archived_at
    assert archived_at is not None
    assert sdk.v1.billable_metrics.archive(id=ids["SUM"]).data.id == ids["SUM"]  # archiving again is a no-op
    assert sdk.v1.billable_metrics.retrieve(billable_metric_id=ids["SUM"]).data.archived_at == archived_at

    active = _ids(_one_item_pages(sdk.v1.billable_metrics.list(limit=1)))
    assert ids["SUM"] not in active
    assert {ids[a] for a in ("COUNT", "MAX", "UNIQUE", "LATEST")} <= set(active)
    every = _ids(_one_item_pages(sdk.v1.billable_metrics.list(limit=1, include_archived=True)))
    assert set(ids.values()) <= set(every)


# -- aggregations ------------------------------------------------------------------------------
def test_each_aggregation_equals_the_hand_worked_figure(sdk, settle):
    """Given six events of which each metric's filters keep a known subset, every aggregation,
    grouping, window size and event search result is the figure worked out below."""
    tag, hour = unique("agg"), current_hour()
    gen, ping = f"{tag}-gen", f"{tag}-ping"
    customer = sdk.v1.customers.create(name=tag).data.id

    def create(aggregation: str, **definition) -> str:
        created = sdk.v1.billable_metrics.create(name=f"{tag} {aggregation}", aggregation_type=aggregation, **definition)
        return created.data.id

    tokens_sum = create(
        "SUM",
        aggregation_key="tokens",
        event_type_filter={"in_values": [gen]},
        property_filters=[{"name": "tokens", "exists": True}, {"name": "region", "in_values": ["eu", "us"]}],
        group_keys=[["region"], ["region", "model"]],
    )
    tokens_max = create(
        "MAX", aggregation_key="tokens", event_type_filter={"in_values": [gen]},
        property_filters=[{"name": "tokens", "exists": True}],
    )
    distinct_users = create(
        "UNIQUE", aggregation_key="user", event_type_filter={"in_values": [gen]},
        property_filters=[{"name": "user", "exists": True}],
    )
    latest_tokens = create(
        "LATEST", aggregation_key="tokens", event_type_filter={"in_values": [gen]},
        property_filters=[{"name": "tokens", "exists": True}],
    )
    paid_calls = create(
        "COUNT",
        event_type_filter={"not_in_values": [ping]},
        property_filters=[
            {"name": "tier", "not_in_values": ["free"]},
            {"name": "user", "exists": True},
            {"name": "region", "in_values": ["eu", "us"]},
        ],
    )
    mine = {tokens_sum, tokens_max, distinct_users, latest_tokens, paid_calls}

    def at(minute: int):
        return hour + minute * HOUR / 60

    e1 = usage_event(f"{tag}-1", customer, gen, at(10), tokens=3, region="eu", model="a", user="u1", tier="pro")
    e2 = usage_event(f"{tag}-2", customer, gen, at(20), tokens=4, region="us", model="b", user="u2", tier="free")
    e3 = usage_event(f"{tag}-3", customer, gen, at(5), tokens=5, region="eu", model="b", user="u1")
    e4 = usage_event(f"{tag}-4", customer, ping, at(30), tokens=100, region="eu", model="a", user="u9", tier="pro")
    e5 = usage_event(f"{tag}-5", customer, gen, at(40), region="eu", user="u3", tier="pro")
    e6 = usage_event(f"{tag}-6", customer, gen, at(50), tokens=2, region="ap", model="a", user="u2")
    # The latest event (e6, minute 50) is ingested first: LATEST follows event time, not arrival.
    sdk.v1.usage.ingest(usage=[e6, e4, e5])
    sdk.v1.usage.ingest(usage=[e1, e2, e3])
    settle()

    # SUM: gen events with tokens in eu/us: e1 3 + e2 4 + e3 5 = 12 (e4 is a ping, e5 has no
    # tokens, e6 is in ap). MAX over gen events with tokens: max(3, 4, 5, 2) = 5 (e4's 100 is a
    # ping). UNIQUE users of gen events: u1, u2, u1, u3, u2 -> 3. LATEST: e6 (minute 50) -> 2.
    # COUNT: not a ping, tier not free (absent passes), has a user, eu/us: e1, e3, e5 -> 3.
    expected = {tokens_sum: 12, tokens_max: 5, distinct_users: 3, latest_tokens: 2, paid_calls: 3}
    hourly = sdk.v1.usage.list(
        starting_on=hour,
        ending_before=hour + HOUR,
        window_size="HOUR",
        customer_ids=[customer],
        billable_metrics=[{"id": tokens_sum, "group_by": {"key": "region"}}]
        + [{"id": m} for m in (tokens_max, distinct_users, latest_tokens, paid_calls)],
    ).data
    assert {w.billable_metric_id: w.value for w in hourly} == expected
    assert all((w.start_timestamp, w.end_timestamp) == (hour, hour + HOUR) for w in hourly)
    assert {w.billable_metric_id: w.billable_metric_name for w in hourly}[tokens_sum] == f"{tag} SUM"
    (summed,) = [w for w in hourly if w.billable_metric_id == tokens_sum]
    assert summed.groups == {"eu": 8, "us": 4}  # e1 3 + e3 5; e2 4
    only_us = sdk.v1.usage.list(
        starting_on=hour, ending_before=hour + HOUR, window_size="NONE", customer_ids=[customer],
        billable_metrics=[{"id": tokens_sum, "group_by": {"key": "region", "values": ["us", "ap"]}}],
    ).data
    assert only_us[0].groups == {"us": 4, "ap": None}  # ap: no matching usage

    # DAY windows: nothing in the day before this hour; everything in the day from it.
    daily = sdk.v1.usage.list(
        starting_on=hour - DAY, ending_before=hour + DAY, window_size="DAY", customer_ids=[customer],
        billable_metrics=[{"id": m} for m in expected],
    ).data
    by_window = {(w.billable_metric_id, w.start_timestamp): w.value for w in daily}
    assert {m: by_window[(m, hour - DAY)] for m in expected} == {
        tokens_sum: 0, tokens_max: None, distinct_users: 0, latest_tokens: None, paid_calls: 0
    }
    assert {m: by_window[(m, hour)] for m in expected} == expected
    for metric, value in expected.items():
        assert usage_value(sdk, customer, metric, hour - 2 * DAY, hour + HOUR) == value

    compound = sdk.v1.usage.list_with_groups(
        billable_metric_id=tokens_sum, customer_id=customer, window_size="NONE",
        starting_on=hour, ending_before=hour + HOUR, group_key=["region", "model"],
    )
    assert {(r.group["region"], r.group["model"]): r.value for r in compound} == {
        ("eu", "a"): 3, ("eu", "b"): 5, ("us", "b"): 4
    }
    eu_only = list(
        sdk.v1.usage.list_with_groups(
            billable_metric_id=tokens_sum, customer_id=customer, window_size="HOUR",
            starting_on=hour, ending_before=hour + HOUR, group_key=["region"], group_filters={"region": ["eu"]},
        )
    )
    assert [(r.group, r.value, r.starting_on, r.ending_before) for r in eu_only] == [
        ({"region": "eu"}, 8, hour, hour + HOUR)
    ]
    by_region = list(
        sdk.v1.usage.list_with_groups(
            billable_metric_id=tokens_sum, customer_id=customer, window_size="NONE",
            starting_on=hour, ending_before=hour + HOUR, group_by={"key": "region"},
        )
    )
    assert {(r.group_key, r.group_value): r.value for r in by_region} == {("region", "eu"): 8, ("region", "us"): 4}

    # Event search: what each event was matched to (only this test's metrics are considered).
    searched = [e["transaction_id"] for e in (e1, e4, e6)]
    found = {hit.transaction_id: hit for hit in sdk.v1.usage.search(transaction_ids=searched)}
    assert set(found) == set(searched)
    assert all(hit.is_duplicate is False for hit in found.values())
    assert all((hit.matched_customer.id, hit.matched_customer.name) == (customer, tag) for hit in found.values())
    matched = {t: {m.id for m in hit.matched_billable_metrics or []} & mine for t, hit in found.items()}
    assert matched == {
        e1["transaction_id"]: mine,
        e4["transaction_id"]: set(),
        e6["transaction_id"]: {tokens_max, distinct_users, latest_tokens},
    }
    assert found[e1["transaction_id"]].properties == e1["properties"]
    assert found[e1["transaction_id"]].timestamp == at(10)
    assert sdk.v1.usage.search(transaction_ids=[f"{tag}-never-sent"]) == []


def test_usage_is_split_into_hour_and_day_windows_by_event_time(sdk, settle):
    tag, hour = unique("windows"), current_hour()
    customer = sdk.v1.customers.create(name=tag).data.id
    metric = sdk.v1.billable_metrics.create(
        name=tag, aggregation_type="SUM", aggregation_key="tokens", event_type_filter={"in_values": [tag]}
    ).data.id
    sdk.v1.usage.ingest(
        usage=[
            usage_event(f"{tag}-1", customer, tag, hour - 30 * HOUR, tokens=10),  # backdated: yesterday's window
            usage_event(f"{tag}-2", customer, tag, hour - 2 * HOUR + HOUR / 12, tokens=1),
            usage_event(f"{tag}-3", customer, tag, hour + HOUR / 12, tokens=2),
            usage_event(f"{tag}-4", customer, tag, hour + HOUR / 6, tokens=3),
        ]
    )
    settle()

    def values(start, end, window_size):
        windows = sdk.v1.usage.list(
            starting_on=start, ending_before=end, window_size=window_size,
            customer_ids=[customer], billable_metrics=[{"id": metric}],
        ).data
        return [(w.start_timestamp, w.value) for w in windows]

    assert values(hour - 2 * HOUR, hour + HOUR, "HOUR") == [(hour - 2 * HOUR, 1), (hour - HOUR, 0), (hour, 5)]
    assert values(hour - 2 * DAY, hour + DAY, "DAY") == [(hour - 2 * DAY, 10), (hour - DAY, 1), (hour, 5)]
    assert values(hour - 2 * DAY, hour + HOUR, "NONE") == [(hour - 2 * DAY, 16)]

    # Without customer_ids, usage pages through every customer of the deployment (the SDK follows
    # next_page on this POST); each customer appears once, and this one with its 16.
    every = sdk.v1.usage.list(
        starting_on=hour - 2 * DAY, ending_before=hour + HOUR, window_size="NONE", billable_metrics=[{"id": metric}]
    )
    listed = [w.customer_id for w in every]
    assert len(listed) == len(set(listed))
    assert [w.value for w in every if w.customer_id == customer] == [16]


# -- aliases, late metrics, duplicates ---------------------------------------------------------
def test_events_sent_under_an_alias_before_anyone_owns_it_count_once_the_alias_is_set(sdk, settle):
    tag, hour = unique("alias"), current_hour()
    alias, external = f"{tag}@example.com", f"{tag}-crm-42"
    metric = sdk.v1.billable_metrics.create(
        name=tag, aggregation_type="SUM", aggregation_key="tokens", event_type_filter={"in_values": [tag]}
    ).data.id
    sdk.v1.usage.ingest(
        usage=[
            usage_event(f"{tag}-1", alias, tag, hour + HOUR / 6, tokens=3),
            usage_event(f"{tag}-2", alias, tag, hour + HOUR / 3, tokens=4),
            usage_event(f"{tag}-3", external, tag, hour + HOUR / 2, tokens=20),
        ]
    )
    settle()
    (orphan,) = sdk.v1.usage.search(transaction_ids=[f"{tag}-1"])
    assert orphan.matched_customer is None
    assert {m.id for m in orphan.matched_billable_metrics or []} >= {metric}

    # Given a customer without the alias, none of it is theirs; once the alias is set, all of it is.
    customer = sdk.v1.customers.create(name=tag).data.id
    assert usage_value(sdk, customer, metric, hour, hour + HOUR) == 0
    sdk.v1.customers.set_ingest_aliases(customer_id=customer, ingest_aliases=[alias])
    assert usage_value(sdk, customer, metric, hour, hour + HOUR) == 7  # 3 + 4
    (claimed,) = sdk.v1.usage.search(transaction_ids=[f"{tag}-1"])
    assert claimed.matched_customer.id == customer

    sdk.v1.usage.ingest(usage=[usage_event(f"{tag}-4", customer, tag, hour + HOUR / 2, tokens=5)])
    settle()
    assert usage_value(sdk, customer, metric, hour, hour + HOUR) == 12  # by alias 7 + by id 5

    # The deprecated external_id is an alias too: a customer created with it owns the earlier 20.
    crm_customer = sdk.v1.customers.create(name=f"{tag} crm", external_id=external).data.id
    assert usage_value(sdk, crm_customer, metric, hour, hour + HOUR) == 20
    assert usage_value(sdk, customer, metric, hour, hour + HOUR) == 12


def test_a_metric_created_after_its_events_counts_them_once(sdk, settle, backfilled):
    tag, hour = unique("late-metric"), current_hour()
    customer = sdk.v1.customers.create(name=tag).data.id
    sdk.v1.usage.ingest(
        usage=[
            usage_event(f"{tag}-1", customer, tag, hour + HOUR / 6, tokens=3),
            usage_event(f"{tag}-2", customer, tag, hour + HOUR / 3, tokens=4),
        ]
    )
    settle()

    # When the metrics arrive after the events, the backfill counts them.
    tokens = sdk.v1.billable_metrics.create(
        name=f"{tag} tokens", aggregation_type="SUM", aggregation_key="tokens", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    backfilled(tokens, calls)  # the create returned at once; its job counts them meanwhile
    assert usage_value(sdk, customer, tokens, hour, hour + HOUR) == 7
    assert usage_value(sdk, customer, calls, hour, hour + HOUR) == 2
    (early,) = sdk.v1.usage.search(transaction_ids=[f"{tag}-1"])
    assert {tokens, calls} <= {m.id for m in early.matched_billable_metrics or []}

    # Then the live path counts what follows, and nothing is counted twice.
    sdk.v1.usage.ingest(
        usage=[
            usage_event(f"{tag}-3", customer, tag, hour + HOUR / 2, tokens=5),
            usage_event(f"{tag}-1", customer, tag, hour + HOUR / 6, tokens=3),  # a replay of an early event
        ]
    )
    settle()
    settle()
    assert usage_value(sdk, customer, tokens, hour, hour + HOUR) == 12  # 3 + 4 + 5
    assert usage_value(sdk, customer, calls, hour, hour + HOUR) == 3


def test_repeated_transaction_ids_are_accepted_but_never_count_again(sdk, settle):
    tag, hour = unique("dup"), current_hour()
    customer = sdk.v1.customers.create(name=tag).data.id
    tokens = sdk.v1.billable_metrics.create(
        name=f"{tag} tokens", aggregation_type="SUM", aggregation_key="tokens", event_type_filter={"in_values": [tag]}
    ).data.id
    calls = sdk.v1.billable_metrics.create(
        name=f"{tag} calls", aggregation_type="COUNT", event_type_filter={"in_values": [tag]}
    ).data.id
    t1, t2, t3 = f"{tag}-1", f"{tag}-2", f"{tag}-3"
    first = [
        usage_event(t1, customer, tag, hour + HOUR / 6, tokens=3),
        usage_event(t2, customer, tag, hour + HOUR / 3, tokens=4),
        usage_event(t1, customer, tag, hour + HOUR / 2, tokens=50),  # same request, different properties
    ]
    sdk.v1.usage.ingest(usage=first)
    sdk.v1.usage.ingest(
        usage=[
            usage_event(t2, customer, tag, hour + HOUR / 3, tokens=40, region="changed"),  # later request
            usage_event(t3, customer, tag, hour + HOUR / 2, tokens=5),
        ]
    )
    sdk.v1.usage.ingest(usage=first)  # the first request, replayed whole
    settle()

    # First event wins: t1 3 + t2 4 + t3 5.
    assert usage_value(sdk, customer, tokens, hour, hour + HOUR) == 12
    assert usage_value(sdk, customer, calls, hour, hour + HOUR) == 3

    receipts = sdk.v1.usage.search(transaction_ids=[t1, t2, t3])
    originals = {r.transaction_id: r for r in receipts if r.is_duplicate is False}
    duplicates = [r for r in receipts if r.is_duplicate is True]
    assert len(receipts) == len(originals) + len(duplicates)
    assert {t: r.properties for t, r in originals.items()} == {
        t1: {"tokens": 3}, t2: {"tokens": 4}, t3: {"tokens": 5}
    }
    assert all({m.id for m in r.matched_billable_metrics or []} >= {tokens, calls} for r in originals.values())
    # t1: the in-request repeat, the replay and the replay's in-request repeat; t2: two later receipts.
    assert sorted(r.transaction_id for r in duplicates) == [t1, t1, t1, t2, t2]
    assert all(not r.matched_billable_metrics for r in duplicates)
    assert all(r.matched_customer.id == customer for r in receipts)
