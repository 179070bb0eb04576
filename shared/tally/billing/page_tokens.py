"""Signed, expiring page tokens: what a public page URL (`/pages/...`) carries instead of an API key.

A token says who may see what, until when: its kind (the hosted invoice page, the invoice's PDF, or
an embeddable dashboard), the customer, the scope (the invoice id; or the dashboard's name, options
and color overrides), when it was issued and when it expires, and the id of the key that signed it.

Shape: `<key id>.<claims>.<signature>`, each part base64url without padding.
- `claims` is the canonical JSON of the claims (sorted keys, no spaces, ASCII only), so one set
  of claims has exactly one encoding;
- `signature` is HMAC-SHA256, under the key `key id` names, of `DOMAIN + "<key id>.<claims>"`;
- every base64 part must be in its canonical form (a different spelling of the same bytes is
  refused), so no change to a token's text verifies.

Keys rotate by id: a `KeyRing` holds the current key (which signs) and the previous one (whose
tokens still verify until they expire). A key's id is derived from the key itself.

Every way a token can fail (forged, expired, truncated, signed by an unknown key, or used for
another kind, customer or scope) raises the one `PageTokenInvalid`, which the API maps to 403.
Its message never says which check failed; `reason` does, for the log.

Pure: no clock (callers pass `now`), no I/O, no environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from tally.billing.errors import InvalidInput, TallyError
from tally.billing.limits import MAX_PAGE_LINK_LIFETIME_DAYS, MAX_PAGE_TOKEN_CHARS

DOMAIN = b"tally.page-token.v1\n"  # what a signature is for: never a valid HMAC of anything else Tally signs
_KEY_ID_LABEL = b"tally.page-key-id.v1"
KEY_ID_CHARS = 8
MIN_KEY_BYTES = 32  # HMAC-SHA256's own block of strength; the stack generates 64 characters
# Lambdas' clocks differ by well under this; a token "issued" further in the future is refused.
ISSUE_SKEW = timedelta(minutes=5)
MAX_LIFETIME = timedelta(days=MAX_PAGE_LINK_LIFETIME_DAYS)
_B64 = r"[A-Za-z0-9_-]+"
_SHAPE = re.compile(rf"({_B64})\.({_B64})\.({_B64})")
_SIGNATURE_CHARS = 43  # 32 bytes, base64url without padding
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class PageKind(StrEnum):
    INVOICE_PAGE = "invoice_page"
    INVOICE_PDF = "invoice_pdf"
    DASHBOARD = "dashboard"


class PageTokenInvalid(TallyError):
    """A page token that does not grant what was asked: 403, with one message whatever the cause."""

    status = 403
    kind = "forbidden"

    def __init__(self, reason: str) -> None:
        super().__init__("this link is invalid or has expired")
        self.reason = reason  # for the log only: a client learns nothing about which check failed


@dataclass(frozen=True, slots=True)
class InvoiceScope:
    invoice_id: str

    def canonical(self) -> dict[str, Any]:
        return {"invoice_id": self.invoice_id}


@dataclass(frozen=True, slots=True)
class DashboardScope:
    """A dashboard (`invoices`, `usage`, `credits`) with its options and color overrides, each a
    tuple of (key, value) pairs in the order given (the order is part of the scope)."""

    dashboard: str
    options: tuple[tuple[str, str], ...] = ()
    color_overrides: tuple[tuple[str, str], ...] = ()
    # bm_group_key_overrides: (group key, display name or "", ((value, display name), ...)) each
    group_keys: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = ()

    def canonical(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dashboard": self.dashboard,
            "options": [list(pair) for pair in self.options],
            "colors": [list(pair) for pair in self.color_overrides],
        }
        if self.group_keys:  # absent when there are none: a token without them reads the same
            body["groups"] = [[name, display, [list(pair) for pair in values]] for name, display, values in self.group_keys]
        return body


Scope = InvoiceScope | DashboardScope
_SCOPE_OF_KIND: dict[PageKind, type] = {
    PageKind.INVOICE_PAGE: InvoiceScope, PageKind.INVOICE_PDF: InvoiceScope, PageKind.DASHBOARD: DashboardScope,
}


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    secret: bytes = field(repr=False)  # never in a repr, a log line or an error

    @classmethod
    def from_secret(cls, secret: str | bytes) -> "SigningKey":
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(f"a page signing key needs at least {MIN_KEY_BYTES} bytes")
        digest = hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).digest()
        return cls(_b64encode(digest)[:KEY_ID_CHARS], raw)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The key that signs (`current`) and the one before it (`previous`), whose tokens still verify."""

    current: SigningKey
    previous: SigningKey | None = None

    def find(self, key_id: str) -> SigningKey | None:
        for key in (self.current, self.previous):
            if key is not None and hmac.compare_digest(key.key_id, key_id):
                return key
        return None


@dataclass(frozen=True, slots=True)
class PageClaims:
    kind: PageKind
    customer_id: str
    scope: Scope
    issued_at: datetime
    expires_at: datetime
    key_id: str


def mint(keys: KeyRing, kind: PageKind, customer_id: str, scope: Scope, issued_at: datetime,
         lifetime: timedelta) -> str:
    """A token for `customer_id` and `scope`, signed with the current key, valid for `lifetime`
    (whole seconds, at most MAX_PAGE_LINK_LIFETIME_DAYS) from `issued_at`."""
    kind = PageKind(kind)
    if not isinstance(scope, _SCOPE_OF_KIND[kind]):
        raise TypeError(f"a {kind} token takes a {_SCOPE_OF_KIND[kind].__name__}, not {type(scope).__name__}")
    if not timedelta(seconds=1) <= lifetime <= MAX_LIFETIME:
        raise InvalidInput("expires_in", f"must be between 1 second and {MAX_PAGE_LINK_LIFETIME_DAYS} days")
    issued = _seconds(issued_at)
    key = keys.current
    claims = {"v": 1, "k": kind.value, "c": customer_id, "s": scope.canonical(), "iat": issued,
              "exp": issued + int(lifetime.total_seconds()), "kid": key.key_id}
    body = f"{key.key_id}.{_b64encode(_canonical(claims))}"
    token = f"{body}.{_b64encode(_sign(key, body))}"
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise InvalidInput("scope", f"makes a link of {len(token):,} characters; at most {MAX_PAGE_TOKEN_CHARS:,} fit in a URL")
    return token


def verify(keys: KeyRing, token: str, now: datetime, kind: PageKind, *, customer_id: str | None = None,
           scope: Scope | None = None) -> PageClaims:
    """The claims of `token` if it is well-formed, signed by a key of `keys`, of `kind`, unexpired
    at `now`, and (when given) for `customer_id` and `scope`; else PageTokenInvalid."""
    if not isinstance(token, str) or len(token) > MAX_PAGE_TOKEN_CHARS or not token.isascii():
        raise PageTokenInvalid("not a token of a bounded length")
    shape = _SHAPE.fullmatch(token)
    if shape is None:
        raise PageTokenInvalid("not three base64url parts")
    key_id, encoded_claims, encoded_signature = shape.groups()
    key = keys.find(key_id)
    if key is None:
        raise PageTokenInvalid("signed by an unknown key")
    if len(encoded_signature) != _SIGNATURE_CHARS:
        raise PageTokenInvalid("signature of the wrong length")
    signature = _b64decode(encoded_signature)
    if not hmac.compare_digest(signature, _sign(key, f"{key_id}.{encoded_claims}")):
        raise PageTokenInvalid("bad signature")
    claims = _parse_claims(_b64decode(encoded_claims), key_id)  # signed by us: a failure here is a bug or a key leak
    if claims.kind != PageKind(kind):
        raise PageTokenInvalid(f"a {claims.kind} token used for a {kind}")
    moment = _seconds(now)
    if moment >= _seconds(claims.expires_at):
        raise PageTokenInvalid("expired")
    if _seconds(claims.issued_at) > moment + ISSUE_SKEW.total_seconds():
        raise PageTokenInvalid("issued in the future")
    if claims.expires_at - claims.issued_at > MAX_LIFETIME:
        raise PageTokenInvalid("lifetime beyond the maximum")
    if customer_id is not None and claims.customer_id != customer_id:
        raise PageTokenInvalid("for another customer")
    if scope is not None and claims.scope != scope:
        raise PageTokenInvalid("for another scope")
    return claims


def _parse_claims(raw: bytes, key_id: str) -> PageClaims:
    try:
        data = json.loads(raw.decode("ascii"))
        if _canonical(data) != raw or data.get("v") != 1 or data.get("kid") != key_id:
            raise ValueError("not canonical claims of version 1 under this key")
        kind = PageKind(data["k"])
        scope_data = data["s"]
        if kind is PageKind.DASHBOARD:
            scope: Scope = DashboardScope(
                _text(scope_data["dashboard"]),
                tuple((_text(k), _text(v)) for k, v in scope_data["options"]),
                tuple((_text(k), _text(v)) for k, v in scope_data["colors"]),
                tuple((_text(name), _text(display), tuple((_text(k), _text(v)) for k, v in values))
                      for name, display, values in scope_data.get("groups", ())),
            )
        else:
            scope = InvoiceScope(_text(scope_data["invoice_id"]))
        if scope.canonical() != scope_data:
            raise ValueError("scope with extra fields")
        issued, expires = data["iat"], data["exp"]
        if not all(type(t) is int and 0 <= t < 2**40 for t in (issued, expires)) or expires <= issued:
            raise ValueError("bad times")
        return PageClaims(kind, _text(data["c"]), scope, _instant(issued), _instant(expires), key_id)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError) as exc:
        raise PageTokenInvalid(f"malformed claims ({type(exc).__name__})") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _canonical(claims: dict[str, Any]) -> bytes:
    return json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _sign(key: SigningKey, body: str) -> bytes:
    return hmac.new(key.secret, DOMAIN + body.encode("ascii"), hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """The bytes of canonical unpadded base64url `text` (unused trailing bits zero), else PageTokenInvalid."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PageTokenInvalid("not base64url") from None
    if _b64encode(raw) != text:
        raise PageTokenInvalid("not canonical base64url")
    return raw


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("page token times are timezone-aware")
    return int((moment - _EPOCH).total_seconds())


def _instant(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)
