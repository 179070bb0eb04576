"""Public page links: URLs under `/pages/` that need no API key because they carry a signed,
expiring token (tally.billing.page_tokens) naming one customer and one scope.

Interface, for a route or service that hands out a link:

    link = wiring.page_links().mint(PageKind.DASHBOARD, customer_id,
                                    DashboardScope("usage", options, colors), lifetime=timedelta(hours=24))
    link.url         # "<api url>/pages/dashboards/<token>"; link.expires_at

    wiring.page_links().mint(PageKind.INVOICE_PAGE, customer_id, InvoiceScope(invoice_id)).url
    # "<api url>/pages/invoices/<token>"  (INVOICE_PDF: "/pages/invoice-pdfs/<token>")

and for a page route (tally.api.app does the verifying before the route runs):

    @router.get("/pages/dashboards/<token>")
    def dashboard_page(token: str) -> Response:
        claims = page_claims(router)   # tally.api.app: the verified PageClaims of this request
        claims.customer_id, claims.scope  # the only customer and scope this request may show

A path under `/pages/` is served only when its token verifies for the kind its path names
(PAGE_PATHS); anything else there gets an HTML 403 page, and every other path still needs the API
key. A new kind of page adds itself to PAGE_PATHS (and PageKind).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from tally.billing.page_tokens import KeyRing, PageClaims, PageKind, PageTokenInvalid, Scope, mint, verify

PUBLIC_PREFIX = "/pages/"
# The path segment after /pages/ names the kind of token the page takes.
PAGE_PATHS: dict[str, PageKind] = {
    "invoices": PageKind.INVOICE_PAGE,
    "invoice-pdfs": PageKind.INVOICE_PDF,
    "dashboards": PageKind.DASHBOARD,
}
_PATH_OF_KIND = {kind: segment for segment, kind in PAGE_PATHS.items()}
DEFAULT_LIFETIME = timedelta(days=30)  # an invoice link is mailed, then opened days later


@dataclass(frozen=True, slots=True)
class PageLink:
    url: str
    token: str
    expires_at: datetime


class PageLinks:
    def __init__(self, keys: Callable[[], KeyRing], clock: Callable[[], datetime],
                 base_url: Callable[[], str | None]) -> None:
        self._keys = keys
        self._clock = clock
        self._base_url = base_url

    def now(self) -> datetime:
        return self._clock()

    def mint(self, kind: PageKind, customer_id: str, scope: Scope, lifetime: timedelta = DEFAULT_LIFETIME) -> PageLink:
        now = self._clock()
        token = mint(self._keys(), kind, customer_id, scope, now, lifetime)
        base = (self._base_url() or "").rstrip("/")
        return PageLink(f"{base}{PUBLIC_PREFIX}{_PATH_OF_KIND[PageKind(kind)]}/{token}", token,
                        verify(self._keys(), token, now, kind).expires_at)

    def verify_path(self, path: str) -> PageClaims:
        """The claims of a `/pages/<kind path>/<token>` path's token, for that kind; else PageTokenInvalid."""
        parts = path.removeprefix(PUBLIC_PREFIX).split("/")
        if len(parts) != 2 or parts[0] not in PAGE_PATHS:
            raise PageTokenInvalid("no page at this path")
        return verify(self._keys(), parts[1], self._clock(), PAGE_PATHS[parts[0]])
