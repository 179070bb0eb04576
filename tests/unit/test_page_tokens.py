"""Page tokens: a minted token verifies for exactly what it was minted for, until it expires; no
change to its text, and no other key, kind, customer or scope, verifies."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.billing import page_tokens as pt
from tally.billing.errors import InvalidInput
from tally.billing.limits import MAX_PAGE_TOKEN_CHARS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
KEY = pt.SigningKey.from_secret("k" * 40 + "current-key-material")
OLD = pt.SigningKey.from_secret("o" * 40 + "previous-key-material")
RING = pt.KeyRing(KEY, OLD)
INVOICE = pt.InvoiceScope("inv-1")
DAY = timedelta(days=1)


def token(kind=pt.PageKind.INVOICE_PAGE, customer="cust-a", scope=INVOICE, keys=RING, issued=NOW, lifetime=DAY):
    return pt.mint(keys, kind, customer, scope, issued, lifetime)


def test_a_minted_token_verifies_with_its_claims():
    claims = pt.verify(RING, token(), NOW + timedelta(hours=23), pt.PageKind.INVOICE_PAGE)
    assert (claims.kind, claims.customer_id, claims.scope) == (pt.PageKind.INVOICE_PAGE, "cust-a", INVOICE)
    assert (claims.issued_at, claims.expires_at, claims.key_id) == (NOW, NOW + DAY, KEY.key_id)


def test_a_dashboard_token_keeps_its_options_and_colors_in_order():
    scope = pt.DashboardScope("usage", (("show_zero_usage_line_items", "false"),), (("Gray_dark", "#111111"), ("Blue", "#0000ff")))
    claims = pt.verify(RING, token(pt.PageKind.DASHBOARD, scope=scope), NOW, pt.PageKind.DASHBOARD, customer_id="cust-a", scope=scope)
    assert claims.scope == scope


@pytest.mark.parametrize(
    "when, kind, expect",
    [
        pytest.param(NOW + DAY, pt.PageKind.INVOICE_PAGE, {}, id="expired at its expiry instant"),
        pytest.param(NOW - timedelta(minutes=6), pt.PageKind.INVOICE_PAGE, {}, id="used before it was issued (beyond skew)"),
        pytest.param(NOW, pt.PageKind.INVOICE_PDF, {}, id="an invoice page token used for the PDF"),
        pytest.param(NOW, pt.PageKind.DASHBOARD, {}, id="an invoice page token used for a dashboard"),
        pytest.param(NOW, pt.PageKind.INVOICE_PAGE, {"customer_id": "cust-b"}, id="used for another customer"),
        pytest.param(NOW, pt.PageKind.INVOICE_PAGE, {"scope": pt.InvoiceScope("inv-2")}, id="used for another invoice"),
    ],
)
def test_a_token_used_outside_its_grant_is_refused(when, kind, expect):
    with pytest.raises(pt.PageTokenInvalid) as refused:
        pt.verify(RING, token(), when, kind, **expect)
    assert refused.value.status == 403 and refused.value.message == "this link is invalid or has expired"


def test_keys_rotate_by_id_previous_verifies_older_does_not():
    by_old = token(keys=pt.KeyRing(OLD))
    assert pt.verify(RING, by_old, NOW, pt.PageKind.INVOICE_PAGE).key_id == OLD.key_id
    newer = pt.KeyRing(pt.SigningKey.from_secret("n" * 48), KEY)  # rotated again: OLD is gone
    with pytest.raises(pt.PageTokenInvalid, match="invalid"):
        pt.verify(newer, by_old, NOW, pt.PageKind.INVOICE_PAGE)
    assert pt.verify(newer, token(), NOW, pt.PageKind.INVOICE_PAGE).key_id == KEY.key_id


def test_a_forged_token_with_a_known_key_id_but_another_secret_is_refused():
    forger = pt.SigningKey(KEY.key_id, b"f" * 48)  # knows the id, not the secret
    with pytest.raises(pt.PageTokenInvalid):
        pt.verify(RING, token(keys=pt.KeyRing(forger)), NOW, pt.PageKind.INVOICE_PAGE)


def test_bounds_lifetime_and_length():
    with pytest.raises(InvalidInput, match="90 days"):
        token(lifetime=timedelta(days=91))
    huge = pt.DashboardScope("usage", tuple((f"k{i}", "v" * 50) for i in range(40)))
    with pytest.raises(InvalidInput, match="characters"):
        token(pt.PageKind.DASHBOARD, scope=huge)
    with pytest.raises(pt.PageTokenInvalid):
        pt.verify(RING, "a" * (MAX_PAGE_TOKEN_CHARS + 1), NOW, pt.PageKind.INVOICE_PAGE)


def test_the_key_never_shows_in_a_repr():
    assert "current-key-material" not in repr(KEY) and "current-key-material" not in repr(RING)


# -- no mutation verifies ---------------------------------------------------------------------------
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %\u00e9"
customers = st.text(min_size=1, max_size=40)
BASE = token()


def _refused(text: str) -> bool:
    try:
        pt.verify(RING, text, NOW, pt.PageKind.INVOICE_PAGE)
    except pt.PageTokenInvalid:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(BASE) - 1), replacement=st.sampled_from(ALPHABET))
def test_no_single_character_substitution_verifies(position, replacement):
    mutated = BASE[:position] + replacement + BASE[position + 1:]
    assert mutated == BASE or _refused(mutated)


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, len(BASE)), length=st.integers(1, 20), insert=st.text(ALPHABET, max_size=5))
def test_no_cut_or_insertion_verifies(start, length, insert):
    mutated = BASE[:start] + insert + BASE[start + length:]
    assert mutated == BASE or _refused(mutated)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, len(BASE) - 1))
def test_no_truncation_verifies(cut):
    assert _refused(BASE[:cut])


@settings(max_examples=100, deadline=None)
@given(customer=customers, invoice=st.text(min_size=1, max_size=40), other=customers)
def test_any_customer_and_invoice_round_trip_and_bind(customer, invoice, other):
    minted = token(customer=customer, scope=pt.InvoiceScope(invoice))
    claims = pt.verify(RING, minted, NOW, pt.PageKind.INVOICE_PAGE, customer_id=customer, scope=pt.InvoiceScope(invoice))
    assert (claims.customer_id, claims.scope.invoice_id) == (customer, invoice)
    if other != customer:
        with pytest.raises(pt.PageTokenInvalid):
            pt.verify(RING, minted, NOW, pt.PageKind.INVOICE_PAGE, customer_id=other)


@settings(max_examples=100, deadline=None)
@given(garbage=st.text(max_size=200))
def test_arbitrary_text_never_verifies_and_never_raises_anything_else(garbage):
    assert _refused(garbage)
