"""Findings of issue 14 that one bad input turned into a 500 or a stopped pipeline, pinned at the
layer where the bound now lives."""

import gzip
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tally.api.models import read_body
from tally.api.pagination import offset_cursor, page_limit
from tally.billing.errors import InvalidInput
from tally.billing.limits import first_unstorable, storable_number
from tally.billing.metrics import numeric_value
from tally.billing.time import parse_rfc3339


def body(data: bytes, headers: dict | None = None):
    import base64

    return SimpleNamespace(body=base64.b64encode(data).decode(), is_base64_encoded=True, headers=headers or {})


@pytest.mark.parametrize("text", ["9999-12-31T23:00:00Z", "0001-01-01T00:00:00Z", "2200-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
def test_an_instant_outside_the_calendar_window_is_refused(text):
    with pytest.raises(ValueError, match="must lie between 1970-01-01 and 2200-01-01"):
        parse_rfc3339(text)


def test_the_last_hour_before_2200_is_accepted():
    assert parse_rfc3339("2199-12-31T23:00:00Z").year == 2199


@pytest.mark.parametrize("raw", ["²", "1²", "0", "101", "-1", "1e2"])
def test_a_page_limit_that_is_not_plain_digits_in_range_is_a_400(raw):
    with pytest.raises(InvalidInput) as caught:
        page_limit({"limit": raw})
    assert caught.value.field == "limit"


@pytest.mark.parametrize("cursor", ["²", "12x", "9" * 40])
def test_a_tampered_offset_cursor_is_a_400(cursor):
    with pytest.raises(InvalidInput) as caught:
        offset_cursor(cursor, "next_page")
    assert caught.value.field == "next_page"


@pytest.mark.parametrize("text", ["1e400", "NaN", "Infinity", "-Infinity", "1" * 39, "1e-200"])
def test_a_numeric_string_no_counter_can_hold_is_not_a_number(text):
    assert numeric_value(text) is None


@pytest.mark.parametrize("text,value", [("12.5", Decimal("12.5")), ("1e125", Decimal("1e125")), ("0", Decimal(0))])
def test_a_storable_numeric_string_still_counts(text, value):
    assert numeric_value(text) == value


def test_json_nested_ten_thousand_deep_is_a_400_naming_the_body():
    with pytest.raises(InvalidInput) as caught:
        read_body(body(b"[" * 10_000 + b"]" * 10_000))
    assert caught.value.field.startswith("body")


def test_json_nested_past_the_bound_names_the_depth():
    with pytest.raises(InvalidInput, match="nest more than 32"):
        read_body(body(b"[" * 40 + b"]" * 40))


def test_a_gzip_header_with_a_corrupt_deflate_stream_is_a_400():
    data = bytearray(gzip.compress(b'[{"a": 1}]' * 50))
    data[12:20] = b"\xff" * 8
    with pytest.raises(InvalidInput, match="gzip"):
        read_body(body(bytes(data), {"content-encoding": "gzip"}))


def test_a_price_no_store_can_hold_is_a_400_naming_the_field():
    with pytest.raises(InvalidInput) as caught:
        read_body(body(b'{"price": 1e400, "rate_type": "FLAT"}'))
    assert caught.value.field == "body.price"
    assert "38 significant digits" in caught.value.rule


def test_invalid_utf8_is_a_400():
    with pytest.raises(InvalidInput):
        read_body(body(b'{"name": "\xff\xfe"}'))


def test_storable_numbers_match_dynamodb_bounds():
    assert storable_number(Decimal("9.9e125")) and not storable_number(Decimal("1e126"))
    assert storable_number(Decimal("1e-130")) and not storable_number(Decimal("1e-131"))
    assert storable_number(int("9" * 38)) and not storable_number(int("9" * 39))
    assert first_unstorable({"a": [1, {"b": Decimal("2.5")}]}) is None


@pytest.mark.parametrize("customer_id,rule", [("   ", "blank"), ("acme\x00", "control"), ("ac\nme", "control")])
def test_a_blank_or_control_character_customer_id_is_refused_at_ingest(customer_id, rule):
    from datetime import datetime, timezone

    from tally.billing.events import parse_usage_batch

    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    event = {"transaction_id": "t", "customer_id": customer_id, "event_type": "call", "timestamp": "2026-12-01T00:00:00Z"}
    with pytest.raises(InvalidInput, match=rule) as caught:
        parse_usage_batch([event], now)
    assert caught.value.field == "usage[0].customer_id"


def test_usage_for_more_customers_than_one_request_may_name_is_a_400():
    from pydantic import ValidationError

    from tally.api.models import UsageList
    from tally.billing.limits import MAX_IDS_PER_REQUEST

    ids = ["c"] * (MAX_IDS_PER_REQUEST + 1)
    with pytest.raises(ValidationError, match="customer_ids"):
        UsageList(starting_on="2026-12-01T00:00:00Z", ending_before="2026-12-02T00:00:00Z", window_size="DAY", customer_ids=ids)


def test_a_decimal_field_sent_as_a_string_no_store_can_hold_is_refused():
    from pydantic import ValidationError

    from tally.api.models import Request

    class Rate(Request):
        price: Decimal

    assert Rate(price="12.5").price == Decimal("12.5")
    with pytest.raises(InvalidInput) as caught:  # pydantic takes it; DynamoDB could not hold it
        Rate(price="1e400")
    assert caught.value.field == "price"
    for text in ("NaN", "Infinity"):  # pydantic refuses these itself
        with pytest.raises(ValidationError, match="price"):
            Rate(price=text)


# -- definitions and events bounded by what one DynamoDB item and key can hold ----------------------
def test_a_metric_grouping_by_more_properties_than_a_counter_key_holds_is_a_400():
    from pydantic import ValidationError

    from tally.api.errors import validation_rule
    from tally.api.models import MetricCreate

    with pytest.raises(ValidationError) as caught:
        MetricCreate(name="m", group_keys=[[f"p{i}"] for i in range(500)])
    error = caught.value.errors(include_url=False)[0]
    assert error["loc"] == ("group_keys",)
    assert "at most 16 distinct properties, got 500" in validation_rule(error)


@pytest.mark.parametrize(
    "fields,where,size",
    [
        ({"k": "v" * 201}, ("custom_fields", "k"), "got 201"),  # Metronome: values of 200 characters at most
        ({"k" * 101: "v"}, ("custom_fields", "k" * 101, "[key]"), "got 101"),  # keys of 100
    ],
    ids=["a long value", "a long key"],
)
def test_a_custom_field_past_its_bound_is_a_400_with_its_size(fields, where, size):
    from pydantic import ValidationError

    from tally.api.errors import validation_rule
    from tally.api.models import CustomerCreate

    with pytest.raises(ValidationError) as caught:
        CustomerCreate(name="c", custom_fields=fields)
    error = caught.value.errors(include_url=False)[0]
    assert error["loc"] == where
    assert validation_rule(error).endswith(size)


def test_a_filter_with_more_values_than_an_item_holds_is_a_400():
    from pydantic import ValidationError

    from tally.api.models import MetricCreate

    with pytest.raises(ValidationError) as caught:
        MetricCreate(name="m", property_filters=[{"name": "region", "in_values": [str(i) for i in range(101)]}])
    assert caught.value.errors(include_url=False)[0]["loc"] == ("property_filters", 0, "in_values")


def test_more_ingest_aliases_than_one_transaction_replaces_is_a_400():
    from tally.billing.customers import validate_aliases

    with pytest.raises(InvalidInput, match="at most 40 aliases, got 41") as caught:
        validate_aliases("ingest_aliases", [f"a{i}" for i in range(41)])
    assert caught.value.field == "ingest_aliases"


@pytest.mark.parametrize("alias", [" ", "a\x00b"])
def test_an_alias_is_held_to_the_rules_of_an_ingest_key(alias):
    from tally.billing.customers import validate_aliases

    with pytest.raises(InvalidInput) as caught:
        validate_aliases("ingest_aliases", ["ok", alias])
    assert caught.value.field == "ingest_aliases[1]"


@pytest.mark.parametrize("body_bytes", [None, 500_000], ids=["size unknown", "a large body"])
def test_an_event_larger_than_an_item_should_hold_is_a_400_naming_it(body_bytes):
    from tally.billing.events import parse_usage_batch

    now = parse_rfc3339("2026-11-15T12:00:00Z")
    small = {"transaction_id": "t1", "customer_id": "c", "event_type": "e", "timestamp": "2026-11-15T11:00:00Z"}
    big = small | {"transaction_id": "t2", "properties": {"blob": "x" * 400_000}}
    with pytest.raises(InvalidInput, match="as JSON must be at most 65,536 bytes, got 400,") as caught:
        parse_usage_batch([small, big], now, body_bytes)
    assert caught.value.field == "usage[1]"


def test_dynamodb_refusing_an_item_for_its_size_is_a_400_not_a_500():
    from botocore.exceptions import ClientError

    from tally.adapters.dynamo.client import translate
    from tally.services.ports import StoreRefused

    exc = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}}, "PutItem"
    )
    refused = translate(exc)
    assert isinstance(refused, StoreRefused) and refused.status == 400 and refused.field == "body"


@pytest.mark.parametrize(
    "raw,field",
    [
        (rb'[{"customer_id": "a\ud800"}]', "body[0].customer_id"),
        (rb'{"name": "x", "custom_fields": {"k": "\udc00 low half"}}', "body.custom_fields.k"),
        (rb'{"properties": {"\uDBFF": 1}}', "body.properties.'\\udbff'"),
    ],
    ids=["a high half in a value", "a low half in a value", "a lone half as a key"],
)
def test_a_lone_utf16_surrogate_is_a_400_naming_the_field(raw, field):
    with pytest.raises(InvalidInput) as caught:
        read_body(body(raw))
    assert (caught.value.field, caught.value.rule) == (field, "must be Unicode text (a lone UTF-16 surrogate such as \\ud800 is not)")


def test_a_surrogate_pair_is_one_character_and_an_escaped_backslash_is_no_surrogate():
    assert read_body(body(rb'{"name": "\ud83d\ude00", "path": "C:\\ud800"}')) == {"name": "\U0001F600", "path": "C:\\ud800"}
