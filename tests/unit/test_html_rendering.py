"""Shared page HTML: escaping by construction, a palette that passes WCAG AA, strict headers."""

import base64
import hashlib
import re

import pytest

from tally.rendering import html as h


@pytest.mark.parametrize("foreground, background", h.TEXT_PAIRS, ids=[f"{f} on {b}" for f, b in h.TEXT_PAIRS])
def test_every_text_color_of_the_palette_passes_wcag_aa_on_its_background(foreground, background):
    assert h.contrast_ratio(h.PALETTE[foreground], h.PALETTE[background]) >= h.AA_NORMAL_TEXT


def test_every_text_color_the_css_paints_is_in_a_checked_pair():
    painted = set(re.findall(r"(?<![-\w])color:var\(--([\w-]+)\)", h.BASE_CSS))
    assert painted <= {f.replace("_", "-") for f, _ in h.TEXT_PAIRS}


@pytest.mark.parametrize("a, b, ratio", [("#000000", "#ffffff", 21.0), ("#ffffff", "#ffffff", 1.0), ("#777777", "#ffffff", 4.48)],
                         ids=["black on white is 21", "same color is 1", "#777 on white just fails AA"])
def test_contrast_ratio_matches_wcag_reference_values(a, b, ratio):
    assert h.contrast_ratio(a, b) == pytest.approx(ratio, abs=0.01)


def test_text_and_attributes_are_escaped_markup_is_not():
    name = '<script>alert("x")</script> & \'co\''
    out = h.el("td", {"title": name, "hidden": True, "lang": None}, name, h.el("b", {}, "ok"))
    assert out == ('<td title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;co&#x27;" hidden>'
                   "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;co&#x27;<b>ok</b></td>")
    with pytest.raises(ValueError):
        h.el("td onclick=x", {})
    with pytest.raises(ValueError):
        h.el("td", {"onclick=alert(1) x": "y"})


def test_a_page_allows_exactly_its_own_style_by_hash_and_nothing_else():
    document = h.page("T <i>", h.el("main", {}, "hi"))
    style = re.search(r"<style>(.*)</style>", document.html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = document.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; ") and f"style-src 'sha256-{digest}'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp and document.headers["X-Frame-Options"] == "DENY"
    assert document.headers["X-Content-Type-Options"] == "nosniff"
    assert document.headers["Referrer-Policy"] == "no-referrer"
    assert document.headers["Cache-Control"].startswith("private")
    assert '<html lang="en">' in document.html and "<title>T &lt;i&gt;</title>" in document.html
    assert not re.search(r"<script|<link|<img|@import|url\(|https?://", document.html)


def test_an_embeddable_page_may_be_framed():
    document = h.page("T", h.el("main", {}), embeddable=True)
    assert "frame-ancestors *" in document.headers["Content-Security-Policy"] and "X-Frame-Options" not in document.headers


def test_a_page_body_must_be_markup():
    with pytest.raises(TypeError):
        h.page("T", "<b>raw</b>")
