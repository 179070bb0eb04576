from decimal import Decimal

import pytest

from tally.billing import exact_json


@pytest.mark.parametrize(
    "value,text",
    [
        ({"a": Decimal("0.3")}, '{"a":0.3}'),
        ([Decimal("1E+2"), 1, "x"], "[100,1,\"x\"]"),
        ({"s": "\u0000 not a number"}, '{"s":"\\u0000 not a number"}'),
        ({"big": Decimal("12345678901234567890.123456789")}, '{"big":12345678901234567890.123456789}'),
    ],
    ids=["decimal stays exact", "exponent written in full", "strings are never unquoted", "many digits"],
)
def test_dumps_writes_decimals_as_exact_numbers(value, text):
    assert exact_json.dumps(value) == text


def test_loads_gives_decimals_and_rejects_nan():
    assert exact_json.loads('{"a": 0.1}') == {"a": Decimal("0.1")}
    with pytest.raises(ValueError):
        exact_json.loads('{"a": NaN}')


def test_a_string_shaped_like_an_internal_marker_stays_a_string():
    assert exact_json.dumps({"s": "\x001\x00", "n": Decimal("2.5")}) == '{"s":"\\u00001\\u0000","n":2.5}'


def test_strings_shaped_like_the_marks_without_the_process_nonce_stay_strings():
    guess = "0" * len(exact_json._NONCE)  # a client cannot know the nonce: it is never written out
    value = {"s": f"#{guess}<1.5>{guess}#", "t": f"x>{guess}#", "n": Decimal("-0.00")}
    assert exact_json.loads(exact_json.dumps(value)) == value


from hypothesis import given, strategies as st  # noqa: E402


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_any_finite_decimal_is_written_in_fixed_point_when_short_and_reads_back_equal(value):
    text = exact_json.dumps([value])
    assert exact_json.loads(text) == [value]
    expected = f"{value:f}" if abs(value.adjusted()) < 30 else str(value)  # the documented form
    assert text == f"[{expected}]"


def test_raw_json_is_spliced_as_it_is_next_to_exact_numbers():
    value = {"n": Decimal("1.50"), "raw": exact_json.RawJSON('[{"a":1.50,"s":"x\\"y"}]'), "list": [exact_json.RawJSON("2.0")]}
    assert exact_json.dumps(value) == '{"n":1.50,"raw":[{"a":1.50,"s":"x\\"y"}],"list":[2.0]}'


def test_a_string_shaped_like_a_raw_mark_without_the_nonce_stays_a_string():
    guess = "0" * len(exact_json._NONCE)
    value = {"s": f"#{guess}[0]{guess}#", "raw": exact_json.RawJSON("1")}
    assert exact_json.loads(exact_json.dumps(value)) == {"s": f"#{guess}[0]{guess}#", "raw": 1}
