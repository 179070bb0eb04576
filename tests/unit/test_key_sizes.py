"""Every DynamoDB key built from input fits DynamoDB's key limits (partition key 2,048 bytes, sort
key 1,024) when each input is as long as tally.billing.limits admits, in 1- to 4-byte UTF-8
characters: a key too long is refused by DynamoDB, and a stream record whose counter key is refused
would be lost to quarantine (DESIGN.md, hard part 8).

Keys are built by the adapters' own code: their key functions, or a store writing to a client
that records each request. Ids Tally generates itself (metric, contract, alert, package and
notification ids) are uuids."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from hypothesis import given, settings, strategies as st

from tally.adapters.dynamo import counters as dynamo_counters
from tally.adapters.dynamo.alerts import DynamoAlertStore, _state_key
from tally.adapters.dynamo.audit import resource_partition
from tally.adapters.dynamo.billing import _alias_put
from tally.adapters.dynamo.custom_fields import _key_pk, _value_pk
from tally.adapters.dynamo.documents import DynamoDocumentStore
from tally.adapters.dynamo.events import ORIGINAL, event_item
from tally.adapters.dynamo.notifications import DynamoNotificationStore, _delivery_pk, _index_key
from tally.adapters.dynamo.packages import DynamoPackageStore
from tally.billing import limits
from tally.billing.alerts import Alert, AlertType
from tally.billing.audit import Resource
from tally.billing.counters import CounterKey
from tally.billing.events import UsageEvent
from tally.billing.notifications import Occurrence
from tally.billing.metrics import Aggregation, BillableMetric
from tally.billing.quarantine import QuarantinedPair, group_json, group_problem
from tally.billing.time import format_sortable
from tally.services.custom_fields import ENTITIES

AT = datetime(2026, 11, 15, 7, 30, tzinfo=timezone.utc)
PARTITION_KEYS = ("pk", "gsi1pk", "gsi2pk")
SORT_KEYS = ("sk", "gsi1sk", "gsi2sk")
# The longest character of each UTF-8 width, and those JSON escapes longest: '"' (2 bytes) and a
# control character ('\u0001', 6 bytes for 1 character).
WIDE = ("a", "é", "€", "😀")
GROUP_CHARACTERS = st.sampled_from([*WIDE, '"', "\\", "\x01"])


def bounded_text(length: int) -> st.SearchStrategy[str]:
    """Text of exactly `length` characters: mostly of one width, a few of any."""
    filler = st.sampled_from(WIDE)
    return st.tuples(filler, st.text(st.sampled_from(WIDE), max_size=8)).map(
        lambda pair: (pair[1] + pair[0] * length)[:length]
    )


ID = bounded_text(limits.MAX_ID_LENGTH)  # ids, transaction ids, ingest keys and aliases, uniqueness keys


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def assert_fits(item: dict) -> None:
    """`item` (a Key or an Item) holds keys within DynamoDB's limits."""
    for name in PARTITION_KEYS:
        if name in item:
            assert size(item[name]["S"]) <= limits.DYNAMO_PARTITION_KEY_BYTES, (name, size(item[name]["S"]))
    for name in SORT_KEYS:
        if name in item:
            assert size(item[name]["S"]) <= limits.DYNAMO_SORT_KEY_BYTES, (name, size(item[name]["S"]))


class RecordingClient:
    """A DynamoDB client that answers every call with nothing and keeps each key it was sent."""

    def __init__(self) -> None:
        self.keys: list[dict] = []

    def _keep(self, request: dict) -> None:
        for name in ("Key", "Item"):
            if name in request:
                self.keys.append(request[name])
        for action in request.get("TransactItems", ()):
            for body in action.values():
                self._keep(body)
        for writes in request.get("RequestItems", {}).values():
            for write in writes:
                for body in write.values():
                    self._keep(body)

    def __getattr__(self, operation: str):
        def call(**request):
            self._keep(request)
            return {}

        return call


# -- usage counters --------------------------------------------------------------------------------
@st.composite
def longest_groups(draw) -> tuple[str | None, ...]:
    """Group values whose JSON is as long as a counter admits (MAX_GROUP_JSON_BYTES) or a character
    short of it: JSON of the drawn values, then one value grown a character at a time."""
    values = draw(st.lists(st.none() | st.text(GROUP_CHARACTERS, max_size=40), min_size=1, max_size=limits.MAX_GROUP_PROPERTIES))
    grown = draw(st.integers(0, len(values) - 1))
    character = draw(GROUP_CHARACTERS)
    values[grown] = values[grown] or ""
    width = size(group_json((character,))) - size(group_json(("",)))  # its bytes in the JSON
    values[grown] += character * max(0, (limits.MAX_GROUP_JSON_BYTES - size(group_json(tuple(values)))) // width - 1)
    while group_problem(GROUPED, tuple(values)) is None:
        values[grown] += character
    values[grown] = values[grown][:-1]  # the longest this character allows
    assert group_problem(GROUPED, tuple(values)) is None
    return tuple(values)


GROUPED = BillableMetric(
    id="grouped", name="grouped", aggregation_type=Aggregation.UNIQUE, aggregation_key="n", event_type_filter=None,
    property_filters=(), group_keys=(tuple(f"p{i}" for i in range(limits.MAX_GROUP_PROPERTIES)),), activated_at=AT,
)
BUCKETS = ("h2026111507", "d20261115", "D20261115", "M202611")  # hour, day (others); day, month (additive)


@settings(max_examples=200, deadline=None)
@given(group=longest_groups(), ingest_key=ID, bucket=st.sampled_from(BUCKETS))
def test_every_item_of_a_counter_with_the_longest_accepted_group_values_has_keys_dynamodb_takes(group, ingest_key, bucket):
    key = CounterKey(str(uuid.uuid4()), ingest_key, bucket, group)
    assert size(group_json(group)) > limits.MAX_GROUP_JSON_BYTES - 6  # at the bound, within one escaped character
    assert_fits(dynamo_counters._key(key))
    if bucket[0] in "DM":  # an additive counter's sub-items
        for sub in range(1, limits.COUNTER_SUB_ITEMS + 1):
            assert_fits(dynamo_counters._key(CounterKey(key.metric_id, ingest_key, bucket, group, sub)))
    else:  # a UNIQUE counter's spill items
        for spill in range(1, limits.UNIQUE_SPILL_ITEMS + 1):
            assert_fits(dynamo_counters.spill_item_key(key, spill))


@settings(max_examples=50, deadline=None)
@given(transaction_id=ID, customer_id=ID)
def test_a_quarantined_pair_and_a_stored_event_have_keys_dynamodb_takes(transaction_id, customer_id):
    event = UsageEvent(transaction_id, customer_id, "call", AT, {})
    pair = QuarantinedPair(str(uuid.uuid4()), event, ("h2026111507",), "a reason")
    assert_fits(dynamo_counters.quarantine_update(pair)["Key"])
    ingested = format_sortable(AT)
    assert_fits(event_item(event, ingested, "1", ORIGINAL))
    assert_fits(event_item(event, ingested, "1", f"dup#{ingested}#{uuid.uuid4().hex}", uuid.uuid4().hex))


# -- customers, custom fields, audit ---------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    alias=ID,
    customer_id=ID,
    entity=st.sampled_from(ENTITIES),
    field_key=bounded_text(limits.MAX_CUSTOM_FIELD_KEY_LENGTH),
    field_value=bounded_text(limits.MAX_CUSTOM_FIELD_VALUE_LENGTH),
    resource_type=ID,
    resource_id=ID,
)
def test_aliases_custom_fields_and_audit_records_have_keys_dynamodb_takes(
    alias, customer_id, entity, field_key, field_value, resource_type, resource_id
):
    assert_fits(_alias_put(alias, customer_id)["Put"]["Item"])
    assert_fits({"pk": {"S": _key_pk(entity, field_key)}, "gsi1sk": {"S": f"{entity}#{field_key}"}})
    assert_fits({"pk": {"S": _value_pk(entity, field_key, field_value)}})
    assert_fits({"pk": {"S": resource_partition(Resource(resource_type, resource_id))}})


# -- uniqueness keys, package aliases, alerts, notifications ---------------------------------------
@settings(max_examples=30, deadline=None)
@given(uniqueness_key=ID, customer_id=ID, package_alias=bounded_text(limits.MAX_NAME_LENGTH))
def test_uniqueness_claims_package_aliases_and_alert_states_have_keys_dynamodb_takes(uniqueness_key, customer_id, package_alias):
    client = RecordingClient()
    created = "2026-11-15T07:00:00Z"
    document = {"id": str(uuid.uuid4()), "customer_id": customer_id, "created_at": created}
    DynamoDocumentStore("billing", "contract", "created_at", client=client).create(document, uniqueness_key)
    package = {"id": str(uuid.uuid4()), "created_at": created}
    DynamoPackageStore("billing", client=client).create(package, {package_alias: ([], None)}, uniqueness_key)
    DynamoNotificationStore("billing", client=client).create({"id": str(uuid.uuid4()), "created_at": created}, uniqueness_key)
    alert = Alert(str(uuid.uuid4()), "n", AlertType.SPEND_THRESHOLD_REACHED, 1, "usd", AT, customer_id, uniqueness_key=uniqueness_key)
    DynamoAlertStore("billing", client=client).create(alert)
    claims = [key["pk"]["S"] for key in client.keys if "_uniq#" in key["pk"]["S"]]
    assert len(claims) == 4 and all(uniqueness_key in claim for claim in claims)
    assert any(key["pk"]["S"].endswith(package_alias) for key in client.keys)
    for key in client.keys:
        assert_fits(key)
    assert_fits(_state_key(alert.id, customer_id))


@settings(max_examples=30, deadline=None)
@given(customer_id=ID)
def test_lifecycle_notification_keys_fit(customer_id):
    contract_id, grant_id = str(uuid.uuid4()), str(uuid.uuid4())
    occurrence = Occurrence("credit.segment.start", AT, customer_id, contract_id, f"{grant_id}/{uuid.uuid4()}")
    assert_fits(_index_key(occurrence))
    assert_fits({"pk": {"S": _delivery_pk(str(uuid.uuid4()), occurrence.key)}})
