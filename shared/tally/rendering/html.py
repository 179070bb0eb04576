"""HTML for Tally's public pages (the hosted invoice, the embeddable dashboards): escaping, one base
layout, one palette whose every text/background pair passes WCAG AA, and the headers a page is
served with. Pure: strings in, strings out.

Everything a page needs is inline: no CDN, no web font, no image, no script. The one inline
`<style>` is allowed by its SHA-256 hash in the Content-Security-Policy (`default-src 'none'`),
never by 'unsafe-inline'; inline SVG needs no source at all.

Escaping is by construction: `el()` escapes every text child and attribute value; only `Markup`
(what `el()` and `page()` return) passes unescaped. Never wrap text from a request or a customer in
`Markup` yourself.

    body = el("main", {}, el("h1", {}, customer_name), table(...))   # customer_name is escaped
    document = page("Invoice INV-1", body)                            # a Page: .html and .headers
    Response(200, document.content_type, document.html, headers=document.headers)
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = [
    "Markup", "Page", "PALETTE", "TEXT_PAIRS", "AA_NORMAL_TEXT", "BASE_CSS",
    "escape", "el", "join", "page", "error_page", "contrast_ratio", "relative_luminance", "style_hash",
]


class Markup(str):
    """HTML already escaped or built by el(): inserted as is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """`value` as HTML text: &, <, >, " and ' escaped; None is empty."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


_NAME = re.compile(r"[a-z][a-z0-9-]*")
_VOID = {"meta", "br", "hr", "link", "col", "img", "input"}


def el(tag: str, attrs: Mapping[str, object | None] | None = None, *children: object) -> Markup:
    """`<tag attrs>children</tag>`. Attribute values and non-Markup children are escaped; an
    attribute whose value is None or False is left out, True writes it bare; a child that is
    None is skipped, a list or tuple is flattened."""
    if not _NAME.fullmatch(tag):
        raise ValueError(f"not a tag name: {tag!r}")
    parts = [f"<{tag}"]
    for name, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        if not _NAME.fullmatch(name):
            raise ValueError(f"not an attribute name: {name!r}")
        parts.append(f" {name}" if value is True else f' {name}="{escape(value)}"')
    parts.append(">")
    if tag in _VOID:
        return Markup("".join(parts))
    parts.append(join(children))
    parts.append(f"</{tag}>")
    return Markup("".join(parts))


def join(children: Iterable[object]) -> Markup:
    out: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, (list, tuple)):
            out.append(join(child))
        else:
            out.append(escape(child))
    return Markup("".join(out))


# -- palette and contrast -----------------------------------------------------------------------------
PALETTE: dict[str, str] = {
    "ink": "#1a1f36",          # body text
    "muted": "#4a5267",        # secondary text, captions, labels
    "paper": "#ffffff",        # page background
    "surface": "#f4f6f9",      # cards, table header and footer rows
    "rule": "#c9d1dc",         # borders (decoration: no text on it)
    "link": "#0a58c2",         # links
    "draft_ink": "#6b4300", "draft_bg": "#fff1cc",
    "final_ink": "#0b5133", "final_bg": "#d4ede0",
    "void_ink": "#8a1c24", "void_bg": "#f9dadd",
    "error_ink": "#8a1c24",
}
# Every (text, background) pair a page paints, for the WCAG test (tests/unit/test_html_rendering.py).
TEXT_PAIRS: tuple[tuple[str, str], ...] = (
    ("ink", "paper"), ("ink", "surface"), ("muted", "paper"), ("muted", "surface"),
    ("link", "paper"), ("link", "surface"),
    ("draft_ink", "draft_bg"), ("final_ink", "final_bg"), ("void_ink", "void_bg"),
    ("error_ink", "paper"),
)
AA_NORMAL_TEXT = 4.5  # WCAG 2.x success criterion 1.4.3, text under 18pt (14pt bold)


def relative_luminance(color: str) -> float:
    """WCAG 2.x relative luminance of a `#rrggbb` color."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        raise ValueError(f"not a #rrggbb color: {color!r}")
    channels = []
    for i in (1, 3, 5):
        c = int(color[i:i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.x contrast ratio, from 1 (same luminance) to 21 (black on white)."""
    a, b = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def _css_variables(palette: Mapping[str, str]) -> str:
    return ":root{" + "".join(f"--{name.replace('_', '-')}:{value};" for name, value in palette.items()) + "}"


BASE_CSS = _css_variables(PALETTE) + """
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;font-size:16px;line-height:1.5;color:var(--ink);background:var(--paper)}
body{margin:0}
main{max-width:64rem;margin:0 auto;padding:2rem 1.25rem}
h1{font-size:1.6rem;margin:0 0 .25rem}
h2{font-size:1.15rem;margin:2rem 0 .5rem}
a{color:var(--link)}
a:focus-visible{outline:3px solid var(--link);outline-offset:2px}
.muted{color:var(--muted)}
.card{background:var(--surface);border:1px solid var(--rule);border-radius:6px;padding:1rem 1.25rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1.25rem;margin:0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
caption{text-align:left;font-weight:600;padding:.5rem 0;color:var(--ink)}
th,td{border-bottom:1px solid var(--rule);padding:.45rem .6rem;text-align:left;vertical-align:top}
thead th{background:var(--surface);font-weight:600}
tfoot th,tfoot td{background:var(--surface);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;border-radius:4px;padding:0 .5rem;font-weight:600;font-size:.9rem}
.badge-draft{color:var(--draft-ink);background:var(--draft-bg)}
.badge-finalized{color:var(--final-ink);background:var(--final-bg)}
.badge-void{color:var(--void-ink);background:var(--void-bg)}
.error{color:var(--error-ink)}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media print{main{padding:0}a{color:var(--ink)}.no-print{display:none}}
"""


def style_hash(css: str) -> str:
    """The CSP source that allows exactly this `<style>` text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii") + "'"


@dataclass(frozen=True)
class Page:
    html: str
    headers: dict[str, str]
    content_type: str = "text/html; charset=utf-8"


def page(title: str, body: Markup, *, css: str = BASE_CSS, lang: str = "en", embeddable: bool = False) -> Page:
    """A whole document: `title` (escaped), `body` (Markup), one inline `<style>` of `css`.
    `embeddable`: may be framed by any site (the dashboards); otherwise by none."""
    if not isinstance(body, Markup):
        raise TypeError("page body must be Markup (built with el())")
    document = (
        "<!DOCTYPE html>"
        + el("html", {"lang": lang},
             el("head", {},
                el("meta", {"charset": "utf-8"}),
                el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
                el("meta", {"name": "referrer", "content": "no-referrer"}),
                el("meta", {"name": "robots", "content": "noindex, nofollow"}),
                el("title", {}, title),
                Markup(f"<style>{css}</style>")),
             el("body", {}, body))
    )
    return Page(document, security_headers(css, embeddable=embeddable))


def security_headers(css: str, *, embeddable: bool = False) -> dict[str, str]:
    ancestors = "*" if embeddable else "'none'"
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style_hash(css)}; base-uri 'none'; form-action 'none'; "
            f"frame-ancestors {ancestors}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-store",  # the link is the credential: no shared or lasting copy
    }
    if not embeddable:
        headers["X-Frame-Options"] = "DENY"
    return headers


def error_page(status: int, title: str, message: str, *, embeddable: bool = False) -> Page:
    """A page that says what went wrong and nothing else (no data, no detail)."""
    body = el("main", {},
              el("h1", {"class": "error"}, title),
              el("p", {}, message),
              el("p", {"class": "muted"}, f"HTTP {status}"))
    return page(title, body, embeddable=embeddable)
