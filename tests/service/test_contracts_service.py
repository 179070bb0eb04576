"""Contracts and draft invoices as use cases: moto DynamoDB, a fake catalog, a fake usage source.

Requests go through the API's request models (`ContractCreate.to_document`), so the mapping from
Metronome's create body to the engine's contract is covered here too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally.adapters.dynamo.billing import DynamoBillingStore
from tally.adapters.dynamo.documents import DynamoContractStore
from tally.api.contract_models import ContractCreate, contract_json
from tally.api.invoice_models import invoice_json
from tally.billing import exact_json
from tally.billing.errors import Conflict, InvalidInput, NotFound
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.pricing import Period, Product, ProductType, ProductVersion, Rate, RateCard, RateType, Tier
from tally.billing.pricing.periods import Frequency
from tally.services.contracts import ContractService
from tally.services.customers import CustomerService
from tally.services.invoices import InvoiceService, invoice_id

UTC = timezone.utc
JAN = datetime(2026, 1, 1, tzinfo=UTC)
SEP, OCT, NOV, DEC = (datetime(2026, m, 1, tzinfo=UTC) for m in (9, 10, 11, 12))
PRICE_CHANGE = datetime(2026, 11, 15, tzinfo=UTC)


class FakeCatalog:
    """The catalog as contracts read it (CatalogReader)."""

    def __init__(self) -> None:
        self._products = {
            "p-calls": Product("p-calls", ProductType.USAGE, (ProductVersion(JAN, "API calls", billable_metric_id="m-calls"),)),
            "p-seats": Product("p-seats", ProductType.SUBSCRIPTION, (ProductVersion(JAN, "Seats"),)),
            "p-setup": Product("p-setup", ProductType.FIXED, (ProductVersion(JAN, "Onboarding"),)),
            "p-other": Product("p-other", ProductType.USAGE, (ProductVersion(JAN, "Other", billable_metric_id="m-x"),)),
        }
        self.cards = {
            "rc-std": RateCard(
                "rc-std",
                "Standard",
                (
                    Rate("p-calls", JAN, RateType.FLAT, price=Decimal(2), ending_before=PRICE_CHANGE),
                    Rate("p-calls", PRICE_CHANGE, RateType.TIERED, tiers=(Tier(Decimal(1), Decimal(100)), Tier(Decimal("0.5")))),
                    Rate("p-seats", JAN, RateType.SUBSCRIPTION, price=Decimal(1000), billing_frequency=Frequency.MONTHLY),
                ),
            ),
            "rc-old": RateCard("rc-old", "Old", ()),
        }
        self.archived = {"rc-old"}
        self.aliases = {"standard": "rc-std"}

    def product(self, product_id: str) -> Product:
        if product_id not in self._products:
            raise NotFound(f"product {product_id} not found")
        return self._products[product_id]

    def products(self) -> dict[str, Product]:
        return dict(self._products)

    def rate_card(self, rate_card_id: str) -> RateCard:
        if rate_card_id not in self.cards:
            raise NotFound(f"rate card {rate_card_id} not found")
        return self.cards[rate_card_id]

    def is_archived(self, rate_card_id: str) -> bool:
        self.rate_card(rate_card_id)
        return rate_card_id in self.archived

    def rate_card_id_for_alias(self, alias: str, at: datetime) -> str | None:
        return self.aliases.get(alias)

    def metric(self, metric_id: str) -> BillableMetric | None:
        return {
            "m-calls": BillableMetric("m-calls", "calls", Aggregation.COUNT, None, None, (), (("region",),)),
            "m-x": BillableMetric("m-x", "x", Aggregation.MAX, "x", None, (), (("region",),)),
        }.get(metric_id)


class FakeUsage:
    """API calls at given instants (no group keys)."""

    def __init__(self, calls: list[tuple[datetime, int]]) -> None:
        self.calls = calls

    def quantity(self, metric_id, group_values, start, end) -> Decimal:
        return Decimal(sum(n for at, n in self.calls if start <= at < end)) if metric_id == "m-calls" else Decimal(0)

    def group_values(self, metric_id, group_keys, start, end):
        return []


@pytest.fixture()
def world(dynamo, clock):
    clock.now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    billing = DynamoBillingStore(dynamo["billing"], dynamo["client"])
    store = DynamoContractStore(dynamo["billing"], dynamo["client"])
    catalog = FakeCatalog()
    customer = CustomerService(billing, clock).create("Acme", ["acme"], None, {})
    usage = FakeUsage([])
    contracts = ContractService(store, billing, catalog, clock)
    invoices = InvoiceService(contracts, lambda c: usage, clock)
    return {"contracts": contracts, "invoices": invoices, "customer": customer, "usage": usage, "store": store,
            "catalog": catalog, "dynamo": dynamo}


def _commit(**changes) -> dict:
    body = {
        "product_id": "p-setup",
        "type": "PREPAID",
        "access_schedule": {"schedule_items": [
            {"amount": 100, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2026-11-01T00:00:00Z"}]},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _request(customer_id: str, **changes) -> dict:
    body = {
        "customer_id": customer_id,
        "rate_card_id": "rc-std",
        "starting_at": "2026-10-01T00:00:00Z",
        "name": "Acme 2026",
        "overrides": [
            {"starting_at": "2026-11-20T00:00:00Z", "product_id": "p-calls", "type": "MULTIPLIER", "multiplier": 0.5}
        ],
        "subscriptions": [
            {
                "collection_schedule": "ADVANCE",
                "proration": {"is_prorated": True, "invoice_behavior": "BILL_IMMEDIATELY"},
                "subscription_rate": {"product_id": "p-seats", "billing_frequency": "MONTHLY"},
                "initial_quantity": 3,
            }
        ],
        "scheduled_charges": [
            {"product_id": "p-setup", "schedule": {"schedule_items": [{"timestamp": "2026-10-01T00:00:00Z", "amount": 5000}]}}
        ],
        "usage_statement_schedule": {"frequency": "MONTHLY", "day": "FIRST_OF_MONTH"},
    }
    body.update(changes)
    # As the API reads it: numbers exact.
    return ContractCreate.model_validate(exact_json.loads(exact_json.dumps(body))).to_document()


def _contract_count(dynamo) -> int:
    items = dynamo["client"].scan(TableName=dynamo["billing"])["Items"]
    return sum(1 for item in items if item["pk"]["S"].startswith("contract"))


def test_a_created_contract_reads_back_with_ids_and_maps_to_the_engine(world):
    contracts, customer = world["contracts"], world["customer"]
    created = contracts.create(_request(customer.id))

    stored = contracts.get(customer.id, created["id"])
    contract = contracts.contract(stored)
    assert contract.rate_card.id == "rc-std"
    assert contract.starting_at == OCT and contract.ending_before is None
    (override,) = contract.overrides
    assert (override.product_id, override.multiplier, override.id) == ("p-calls", Decimal("0.5"), stored["overrides"][0]["id"])
    (subscription,) = contract.subscriptions
    assert (subscription.initial_quantity, subscription.starting_at) == (Decimal(3), OCT)  # defaults to the contract start
    (charge,) = contract.scheduled_charges
    assert [(i.unit_price, i.quantity) for i in charge.schedule_items] == [(Decimal(5000), Decimal(1))]

    body = contract_json(stored, contract, world["catalog"].products())
    assert body["current"]["overrides"][0]["product"] == {"id": "p-calls", "name": "API calls"}
    assert body["current"]["usage_statement_schedule"] == {"frequency": "MONTHLY", "billing_anchor_date": "2026-10-01T00:00:00Z"}
    assert body["subscriptions"][0]["subscription_rate"]["product"] == {"id": "p-seats", "name": "Seats"}


def test_a_contract_can_name_its_rate_card_by_alias(world):
    created = world["contracts"].create(_request(world["customer"].id, rate_card_id=None, rate_card_alias="standard"))
    assert created["rate_card_id"] == "rc-std"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"rate_card_id": "rc-missing"}, "rate_card_id"),
        ({"rate_card_id": "rc-old"}, "rate_card_id"),
        ({"rate_card_id": None, "rate_card_alias": "nope"}, "rate_card_alias"),
        (
            {"overrides": [{"starting_at": "2026-10-01T00:00:00Z", "product_id": "p-other", "type": "MULTIPLIER", "multiplier": 2}]},
            "overrides[0].product_id",
        ),
        ({"starting_at": "2026-10-01T00:30:00Z"}, "starting_at"),
        ({"ending_before": "2026-09-01T00:00:00Z"}, "ending_before"),
        ({"scheduled_charges": [{"product_id": "p-calls", "schedule": {"schedule_items": [{"timestamp": "2026-10-02T00:00:00Z", "amount": 1}]}}]},
         "scheduled_charges[0].product_id"),
        ({"commits": [_commit(product_id="p-calls")]}, "commits[0].product_id"),
        ({"commits": [_commit(access_schedule={"schedule_items": [
            {"amount": 100, "starting_at": "2026-10-01T00:30:00Z", "ending_before": "2026-11-01T00:00:00Z"}]})]},
         "commits[0].access_schedule.schedule_items[0].starting_at"),
        ({"commits": [_commit(access_schedule={"schedule_items": [
            {"amount": 100, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2026-11-01T00:00:00Z"},
            {"amount": 100, "starting_at": "2026-10-15T00:00:00Z", "ending_before": "2026-12-01T00:00:00Z"}]})]},
         "commits[0].access_schedule.schedule_items[1].starting_at"),
        ({"commits": [_commit(type="POSTPAID", invoice_schedule={"schedule_items": [
            {"timestamp": "2026-12-01T00:00:00Z", "amount": 90}]})]}, "commits[0].invoice_schedule.schedule_items[0].amount"),
        ({"commits": [_commit(rollover_fraction=Decimal("1.5"))]}, "commits[0].rollover_fraction"),
        ({"credits": [_commit(type=None, access_schedule={"schedule_items": [
            {"amount": -5, "starting_at": "2026-10-01T00:00:00Z", "ending_before": "2026-11-01T00:00:00Z"}]})]},
         "credits[0].access_schedule.schedule_items[0].amount"),
        ({"commits": [_commit(applicable_product_ids=["p-nope"])]}, "commits[0].applicable_product_ids[0]"),
    ],
    ids=[
        "unknown rate card", "archived rate card", "unknown rate card alias", "override on a product not on the card",
        "start off the hour", "end before start", "scheduled charge on a usage product", "a commit under a usage product",
        "an access segment off the hour", "overlapping access segments", "a postpaid invoice unlike its access amount",
        "a rollover fraction above one", "a negative credit", "a commit naming an unknown product",
    ],
)
def test_bad_contracts_are_refused_naming_the_field_and_nothing_is_stored(world, changes, field):
    with pytest.raises(InvalidInput) as raised:
        world["contracts"].create(_request(world["customer"].id, **changes))
    assert raised.value.field == field
    assert _contract_count(world["dynamo"]) == 0


def test_a_negative_subscription_quantity_is_refused(world):
    request = _request(world["customer"].id)
    request["subscriptions"][0]["initial_quantity"] = Decimal(-1)
    with pytest.raises(InvalidInput) as raised:
        world["contracts"].create(request)
    assert raised.value.field == "subscriptions[0].initial_quantity"


def test_an_unknown_customer_is_not_found_and_nothing_is_stored(world):
    with pytest.raises(NotFound):
        world["contracts"].create(_request("no-such-customer"))
    assert _contract_count(world["dynamo"]) == 0


def test_a_uniqueness_key_makes_a_repeated_create_a_conflict(world):
    request = _request(world["customer"].id)
    world["contracts"].create(request, "deal-42")
    with pytest.raises(Conflict):
        world["contracts"].create(request, "deal-42")
    assert len(world["contracts"].list(world["customer"].id)) == 1


def test_contracts_are_listed_by_date_and_filtered_and_archived_ones_hidden(world, clock):
    contracts, cid = world["contracts"], world["customer"].id
    old = contracts.create(_request(cid, starting_at="2026-09-01T00:00:00Z", ending_before="2026-10-01T00:00:00Z",
                                    overrides=[], subscriptions=[], scheduled_charges=[]))
    new = contracts.create(_request(cid))
    assert [d["id"] for d in contracts.list(cid)] == [old["id"], new["id"]]
    assert [d["id"] for d in contracts.list(cid, covering_date=datetime(2026, 9, 15, tzinfo=UTC))] == [old["id"]]
    assert [d["id"] for d in contracts.list(cid, starting_at=OCT)] == [new["id"]]

    contracts.archive(cid, old["id"])
    assert [d["id"] for d in contracts.list(cid)] == [new["id"]]
    assert [d["id"] for d in contracts.list(cid, include_archived=True)] == [old["id"], new["id"]]
    with pytest.raises(NotFound):
        contracts.get("someone-else", new["id"])


def test_subscription_quantity_history_starts_at_the_initial_quantity(world):
    contracts, cid = world["contracts"], world["customer"].id
    created = contracts.create(_request(cid))
    sub_id = created["subscriptions"][0]["id"]
    history = contracts.subscription_quantity_history(cid, created["id"], sub_id)
    assert history["history"] == [{"starting_at": OCT, "quantity": Decimal(3), "unit_price": Decimal(1000)}]


def test_every_period_up_to_now_has_a_draft_invoice_priced_from_usage(world, clock):
    contracts, invoices, cid = world["contracts"], world["invoices"], world["customer"].id
    created = contracts.create(_request(cid))
    world["usage"].calls += [
        (datetime(2026, 10, 10, tzinfo=UTC), 10),  # October, flat 2
        (datetime(2026, 11, 10, tzinfo=UTC), 50),  # November before the price change: flat 2
        (datetime(2026, 11, 16, tzinfo=UTC), 80),  # after the change: tiered 1 up to 100, then 0.5
        (datetime(2026, 11, 21, tzinfo=UTC), 40),  # tiered, and the 0.5 multiplier override applies
    ]

    drafts, next_offset = invoices.list(cid)
    assert next_offset is None
    # Each period: its USAGE invoice, then a SCHEDULED one per issue instant (in-advance seats and
    # the onboarding charge are both issued on the 1st, so they share one).
    assert [(d.invoice.type.value, d.invoice.starting_at, d.invoice.ending_before) for d in drafts] == [
        ("USAGE", OCT, NOV), ("SCHEDULED", OCT, OCT), ("USAGE", NOV, DEC), ("SCHEDULED", NOV, NOV)
    ]
    october, october_scheduled, november, november_scheduled = drafts
    # October: 10 calls × 2 = 20 on usage; 3 seats × 1000 in advance = 3000 and onboarding 5000 scheduled.
    assert october.invoice.total == Decimal("20.00")
    assert october_scheduled.invoice.total == Decimal("8000.00")
    # November: before the change 50 × 2 = 100. Tiers count over the whole period, so the 80 calls
    # after the change start at position 50: 50 at 1 (up to 100) + 30 at 0.5 = 65. From Nov 20 the
    # 0.5 multiplier halves the tiers; the 40 calls sit past 100: 40 × 0.25 = 10.
    # Usage total 100 + 65 + 10 = 175; seats 3 × 1000 in advance on the scheduled invoice.
    assert [(line.product_id, line.quantity, line.total) for line in november.invoice.line_items] == [
        ("p-calls", Decimal(50), Decimal("100.00")),
        ("p-calls", Decimal(80), Decimal("65.00")),
        ("p-calls", Decimal(40), Decimal("10.00")),
    ]
    assert november.invoice.total == Decimal("175.00")
    assert [(line.product_id, line.total) for line in november_scheduled.invoice.line_items] == [
        ("p-seats", Decimal("3000.00"))
    ]

    assert november.id == invoice_id(created["id"], NOV, november.invoice.credit_type)
    assert invoices.get(cid, november.id).invoice.total == Decimal("175.00")
    assert invoices.get(cid, november_scheduled.id).invoice.total == Decimal("3000.00")
    assert invoices.list(cid)[0][2].id == november.id  # the same id on every read

    body = exact_json.loads(exact_json.dumps(invoice_json(november, world["catalog"].products())))
    assert (body["status"], body["type"], body["contract_id"], body["start_timestamp"]) == (
        "DRAFT", "USAGE", created["id"], "2026-11-01T00:00:00Z")
    assert body["line_items"][1]["sub_line_items"][0]["tiers"][0]["quantity"] == Decimal(50)

    assert [d.invoice.starting_at for d in invoices.list(cid, starting_on=NOV)[0]] == [NOV, NOV]
    assert [d.invoice.starting_at for d in invoices.list(cid, ending_before=NOV)[0]] == [OCT, OCT]
    assert invoices.list(cid, status="FINALIZED")[0] == []
    page, after = invoices.list(cid, limit=1)
    assert ([d.invoice.type.value for d in page], after) == (["USAGE", "SCHEDULED"], 1)  # a page counts periods

    contracts.archive(cid, created["id"])
    assert invoices.list(cid)[0] == []
    with pytest.raises(NotFound):
        invoices.get(cid, november.id)


def test_a_contract_starting_in_the_future_has_no_draft_yet(world, clock):
    world["contracts"].create(_request(world["customer"].id, starting_at="2027-01-01T00:00:00Z", overrides=[],
                                       scheduled_charges=[], subscriptions=[]))
    assert world["invoices"].list(world["customer"].id)[0] == []
    clock.now = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(hours=1)
    assert len(world["invoices"].list(world["customer"].id)[0]) == 1



def test_concurrent_contracts_split_usage_by_filter_and_refuse_overlap(world):
    contracts, cid = world["contracts"], world["customer"].id
    bare = dict(overrides=[], subscriptions=[], scheduled_charges=[])
    eu = contracts.create(_request(cid, usage_filter={"group_key": "region", "group_values": ["eu"]}, **bare))
    assert contracts.contract(eu).usage_filter.group_values == ("eu",)
    body = contract_json(eu, contracts.contract(eu), world["catalog"].products())
    assert body["current"]["usage_filter"]["current"] == {"group_key": "region", "group_values": ["eu"],
                                                          "starting_at": eu["starting_at"]}
    contracts.create(_request(cid, usage_filter={"group_key": "region", "group_values": ["us"]}, **bare))
    refusals = [
        ({}, "usage_filter"),  # an unfiltered contract over filtered ones would bill their usage again
        ({"usage_filter": {"group_key": "region", "group_values": ["us", "apac"]}}, "usage_filter.group_values"),
        ({"usage_filter": {"group_key": "plan", "group_values": ["x"]}}, "usage_filter.group_key"),
    ]
    for change, field in refusals:
        with pytest.raises(InvalidInput) as raised:
            contracts.create(_request(cid, **bare, **change))
        assert raised.value.field == field
    assert len(contracts.list(cid)) == 2  # nothing refused was stored


def test_a_usage_filter_must_be_readable_from_every_metric_on_the_card(world):
    contracts, cid = world["contracts"], world["customer"].id
    world["catalog"].cards["rc-std"] = RateCard("rc-std", "Standard", world["catalog"].cards["rc-std"].rates + (
        Rate("p-other", JAN, RateType.FLAT, price=Decimal(1)),))
    with pytest.raises(InvalidInput) as raised:
        contracts.create(_request(cid, usage_filter={"group_key": "region", "group_values": ["eu"]},
                                  overrides=[], subscriptions=[], scheduled_charges=[]))
    assert (raised.value.field, "MAX" in raised.value.rule) == ("usage_filter", True)
