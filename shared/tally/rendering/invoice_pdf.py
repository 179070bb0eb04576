"""The invoice PDF: an `InvoiceDocument` (tally.billing.invoice_document) laid out on A4 with fpdf2.

    render_invoice_pdf(document) -> bytes

Every figure is the document's own string: this module formats nothing, it only places text. The
layout is drawn with `FPDF.text` at computed positions (not `cell`/`table`): a 5,000-line invoice
then renders in about a second, and page breaks, the header repeated on every page and the
decimal-aligned numeric columns are all decided here.

Fonts are bundled (rendering/fonts, built by infra/build_invoice_fonts.py): DejaVu Sans for Latin,
Greek and Cyrillic, and Noto Sans CJK for Chinese, Japanese and Korean. fpdf2's `text` does not
fall back between fonts, so text is split into runs per font here; the CJK font (6 MB, 0.2 s to
load) is added only when the document has a character DejaVu lacks.
"""

from __future__ import annotations

import math
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterator

with warnings.catch_warnings():
    # fpdf2 warns at import when Pillow is missing: the Lambda ships without it (infra/assets.py),
    # and invoices have no images.
    warnings.filterwarnings("ignore", message="Pillow could not be imported")
    from fpdf import FPDF
    from fpdf.enums import TextMode
from fontTools.pens.basePen import BasePen
from fontTools.ttLib import TTFont

from tally.billing.invoice_document import InvoiceDocument, Row, Section

FONTS = Path(__file__).resolve().parent / "fonts"
SANS, SANS_BOLD = FONTS / "DejaVuSans-subset.ttf", FONTS / "DejaVuSans-Bold-subset.ttf"
CJK = FONTS / "NotoSansCJKsc-Regular-subset.otf"

# A4 in millimetres; columns of the line table (description, quantity, unit price, amount).
PAGE_W, PAGE_H, MARGIN = 210.0, 297.0, 15.0
CONTENT_W = PAGE_W - 2 * MARGIN
COLUMNS = (74.0, 30.0, 38.0, 38.0)
FOOTER_Y = PAGE_H - 10.0
BOTTOM = PAGE_H - 20.0  # rows stop here; the footer goes below
ROW_H, TIER_H, SECTION_H = 5.0, 4.2, 7.0

INK, MUTED, RULE, BAND = (33, 37, 41), (108, 117, 125), (206, 212, 218), (241, 243, 245)
STATUS_COLOURS = {"DRAFT": (176, 96, 0), "FINALIZED": (25, 120, 60), "VOID": (180, 35, 45)}


@lru_cache(maxsize=1)
def _latin_coverage() -> frozenset[int]:
    """Code points the DejaVu subset maps (regular and bold are cut to the same ranges)."""
    return frozenset(TTFont(SANS, lazy=True).getBestCmap())


class _PdfPathPen(BasePen):
    """Glyph outlines as PDF path operators (font units): the watermark is drawn as shapes, not
    text, so it never mixes into the text a reader copies or `pdftotext` extracts."""

    def __init__(self, glyph_set, dx: float) -> None:
        super().__init__(glyph_set)
        self.ops: list[str] = []
        self.dx = dx

    def _moveTo(self, pt):
        self.ops.append(f"{pt[0] + self.dx:.0f} {pt[1]:.0f} m")

    def _lineTo(self, pt):
        self.ops.append(f"{pt[0] + self.dx:.0f} {pt[1]:.0f} l")

    def _curveToOne(self, p1, p2, p3):
        self.ops.append(" ".join(f"{x + self.dx:.0f} {y:.0f}" for x, y in (p1, p2, p3)) + " c")

    def _closePath(self):
        self.ops.append("h")


@lru_cache(maxsize=4)
def _outline(word: str) -> tuple[str, float, float, float]:
    """(path operators, advance width, cap height, units per em) of `word` in DejaVu Sans Bold."""
    font = TTFont(SANS_BOLD)
    glyphs, cmap = font.getGlyphSet(), font.getBestCmap()
    advance = 0.0
    ops: list[str] = []
    for ch in word:
        name = cmap[ord(ch)]
        pen = _PdfPathPen(glyphs, advance)
        glyphs[name].draw(pen)
        ops += pen.ops
        advance += font["hmtx"][name][0]
    cap = getattr(font["OS/2"], "sCapHeight", 0) or font["head"].unitsPerEm * 0.73
    # Font units for drawing (glyph outlines, widths), not amounts: floats are the PDF's own geometry.
    return " ".join(ops), advance, float(cap), float(font["head"].unitsPerEm)


def _texts(document: InvoiceDocument) -> Iterator[str]:
    """Every string that may hold a name (figures are digits, signs and credit type names, which
    appear here too)."""
    h = document.header
    yield from (h.issuer_name, h.customer_name, h.invoice_id, h.title, h.period, h.credit_type, h.customer_id, h.contract_id)
    yield from h.address_lines
    yield from h.status_notes
    for section in document.sections:
        yield section.title
        yield section.credit_type
        for row in section.rows:
            yield row.description
    for applied in document.applied:
        yield applied.name
    for conversion in document.conversions:
        yield conversion.unit


def needs_cjk_font(document: InvoiceDocument) -> bool:
    covered = _latin_coverage()
    return any(ord(ch) not in covered for ch in set("".join(_texts(document))))


# A figure that lines up on its decimal point: (sign, $, integer part) and (the point and decimals).
_ALIGNABLE = re.compile(r"^(-?\$?[0-9][0-9,]*)(\.[0-9]+)?$")
MAX_ALIGNED_PLACES = 6


def _column_places(document: InvoiceDocument) -> tuple[int, int, int]:
    """Per numeric column (quantity, unit price, amount), the most decimals an aligned figure in it
    shows, capped at MAX_ALIGNED_PLACES (a figure with more is right-aligned instead)."""
    places = [0, 0, 0]

    def see(column: int, text: str) -> None:
        match = _ALIGNABLE.match(text)
        if match and match.group(2):
            places[column] = max(places[column], min(len(match.group(2)) - 1, MAX_ALIGNED_PLACES))

    for section in document.sections:
        see(2, section.subtotal)
        for row in section.rows:
            see(0, row.quantity), see(1, row.unit_price), see(2, row.total)
            for tier in row.tiers:
                see(0, tier.quantity), see(1, tier.unit_price), see(2, tier.total)
    for applied in document.applied:
        see(2, applied.total)
    for conversion in document.conversions:
        see(1, conversion.rate), see(2, conversion.total)
    see(2, document.subtotal), see(2, document.total)
    return places[0], places[1], places[2]


class _InvoicePDF(FPDF):
    def __init__(self, document: InvoiceDocument) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.document = document
        self._ink: tuple = INK
        self.set_auto_page_break(False)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_creator("Tally")
        self.set_title(f"{document.header.title} {document.header.invoice_id}")
        self.set_author(document.header.issuer_name)
        self.add_font("sans", "", SANS)
        self.add_font("sans", "B", SANS_BOLD)
        self._cjk = needs_cjk_font(document)
        if self._cjk:
            self.add_font("cjk", "", CJK)
        self._covered = _latin_coverage()
        self._runs_cache: dict[str, tuple[tuple[bool, str], ...]] = {}
        self.y_pos = MARGIN
        self.table_started = False
        self.section_title: str | None = None  # the section a page break falls in
        self.places = _column_places(document)

    # ---- text primitives ---------------------------------------------------------------------
    def set_text_color(self, r, g=-1, b=-1) -> None:  # type: ignore[override]
        self._ink = (r, g, b)
        super().set_text_color(r, g, b)

    def _runs(self, text: str) -> tuple[tuple[bool, str], ...]:
        """(is_cjk, text) runs: DejaVu where it has the glyph, the CJK font elsewhere."""
        runs = self._runs_cache.get(text)
        if runs is None:
            if not self._cjk or all(ord(ch) in self._covered for ch in text):
                runs = ((False, text),)
            else:
                parts: list[tuple[bool, str]] = []
                for ch in text:
                    cjk = ord(ch) not in self._covered
                    if parts and parts[-1][0] == cjk:
                        parts[-1] = (cjk, parts[-1][1] + ch)
                    else:
                        parts.append((cjk, ch))
                runs = tuple(parts)
            self._runs_cache[text] = runs
        return runs

    def _font(self, size: float, bold: bool = False) -> None:
        self._size, self._bold = size, bold
        self.set_font("sans", "B" if bold else "", size)

    def width(self, text: str) -> float:
        """The width of `text` in mm at the current size, from the fonts' glyph widths (fpdf2's
        get_string_width builds text fragments per call: 20 times slower on a 5,000-line invoice)."""
        total = 0.0
        for cjk, run in self._runs(text):
            widths = self.fonts["cjk" if cjk else ("sansB" if self._bold else "sans")].cw
            total += sum([widths[ord(ch)] for ch in run])
        return total * self._size * 0.001 / self.k

    def put(self, x: float, y: float, text: str, align: str = "L", right: float | None = None) -> None:
        """Text on baseline y: from x (L), or ending at `right` (R)."""
        if not text:
            return
        runs = self._runs(text)
        if align == "R":
            x = (right if right is not None else x) - self.width(text)
        if len(runs) == 1 and not runs[0][0]:
            self.text(x, y, text)
            return
        for cjk, run in runs:
            if cjk:
                self.set_font("cjk", "", self._size)
                if self._bold:  # the CJK font has no bold: stroke its outlines in the text colour too
                    self.set_draw_color(*self._ink)
                    self.set_line_width(self._size * 0.012)
                    self.text_mode = TextMode.FILL_STROKE
            self.text(x, y, run)
            x += self.width(run)
            if cjk:
                self.text_mode = TextMode.FILL
                self.set_font("sans", "B" if self._bold else "", self._size)

    def fitted(self, text: str, available: float, size: float, bold: bool = False) -> float:
        """The font size at which `text` fits `available` mm (never below 5 pt): a 38-digit amount
        is shown whole, smaller, rather than cut."""
        self._font(size, bold)
        width = self.width(text)
        if width <= available:
            return size
        fitted = max(5.0, size * available / width)
        self._font(fitted, bold)
        return fitted

    def wrap(self, text: str, available: float) -> list[str]:
        """Lines of `text` no wider than `available` at the current font, split at spaces (a word
        longer than a line is split between characters)."""
        if not text or self.width(text) <= available:
            return [text]
        lines: list[str] = []
        current = ""
        for word in text.split(" "):
            candidate = f"{current} {word}" if current else word
            if self.width(candidate) <= available:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = ""
            for ch in word:
                if self.width(current + ch) > available and current:
                    lines.append(current)
                    current = ""
                current += ch
        if current:
            lines.append(current)
        return lines

    # ---- page furniture ------------------------------------------------------------------------
    def start_page(self) -> None:
        self.add_page()
        header = self.document.header
        self._watermark()
        if self.page > 1:
            self._font(8.5, bold=True)
            self.set_text_color(*INK)
            self.put(MARGIN, MARGIN + 3, header.issuer_name)
            self._font(8.5)
            self.set_text_color(*MUTED)
            self.put(0, MARGIN + 3, f"{header.title} {header.invoice_id} · {header.period}", "R", PAGE_W - MARGIN)
            self.y_pos = MARGIN + 8
            if self.table_started:
                self.column_headings()
                if self.section_title:
                    self._font(8.5, bold=True)
                    self.set_text_color(*MUTED)
                    self.put(MARGIN + 2, self.y_pos + 3, f"{self.section_title} (continued)")
                    self.set_text_color(*INK)
                    self.y_pos += 5

    def _watermark(self) -> None:
        """DRAFT or VOID across the page, in a light tint of the status colour, behind the content."""
        status = self.document.header.status
        if status not in ("DRAFT", "VOID"):
            return
        path, advance, cap, em = _outline(status)
        r, g, b = (1 - (1 - c / 255) / 7 for c in STATUS_COLOURS[status])
        angle = math.radians(35)
        scale = 110 / em  # 110 pt letters
        cx, cy = PAGE_W / 2 * self.k, PAGE_H / 2 * self.k
        cos, sin = math.cos(angle), math.sin(angle)
        self._out(
            f"q {r:.3f} {g:.3f} {b:.3f} rg 1 0 0 1 {cx:.2f} {cy:.2f} cm {cos:.4f} {sin:.4f} {-sin:.4f} {cos:.4f} 0 0 cm "
            f"{scale:.5f} 0 0 {scale:.5f} 0 0 cm 1 0 0 1 {-advance / 2:.0f} {-cap / 2:.0f} cm {path} f Q"
        )

    def footers(self) -> None:
        """Each page's footer, once the number of pages is known (fpdf2's {nb} alias is not
        replaced in text set in an embedded font by `text`)."""
        header = self.document.header
        pages = self.page
        for number in range(1, pages + 1):
            self.page = number
            self.set_font("sans", "B", 7.5)  # a font change, so the page's content selects the font again
            self._font(7.5)
            self.set_fill_color(255, 255, 255)  # differs from the text colour: `text` then sets its colour
            self.set_draw_color(0)  # a change, so this page's content sets the colour whatever it was
            self.set_draw_color(*RULE)
            self.set_line_width(0.1)
            self.set_line_width(0.2)
            self.line(MARGIN, FOOTER_Y - 4, PAGE_W - MARGIN, FOOTER_Y - 4)
            self.set_text_color(*MUTED)
            self.put(MARGIN, FOOTER_Y, f"{header.issuer_name} · {header.title} {header.invoice_id} · {header.status}")
            self.put(0, FOOTER_Y, f"Page {number} of {pages}", "R", PAGE_W - MARGIN)
        self.page = pages

    def column_headings(self) -> None:
        y = self.y_pos
        self.set_fill_color(*BAND)
        self.rect(MARGIN, y, CONTENT_W, 6.5, style="F")
        self._font(8, bold=True)
        self.set_text_color(*MUTED)
        baseline = y + 4.4
        self.put(MARGIN + 2, baseline, "Description")
        right = MARGIN
        for title, width in zip(("", "Quantity", "Unit price", "Amount"), COLUMNS):
            right += width
            if title:
                self.put(0, baseline, title, "R", right - 2)
        self.set_text_color(*INK)
        self.y_pos = y + 8.5

    def room_for(self, height: float) -> None:
        if self.y_pos + height > BOTTOM:
            self.start_page()

    # ---- content ---------------------------------------------------------------------------
    def first_page_header(self) -> None:
        doc = self.document
        h = doc.header
        top = MARGIN + 6
        self.set_text_color(*INK)
        self.fitted(h.issuer_name, CONTENT_W - 70, 17, bold=True)
        self.put(MARGIN, top, h.issuer_name)
        self._font(20, bold=True)
        self.put(0, top, h.title.upper(), "R", PAGE_W - MARGIN)
        self._status_badge(top + 4)

        # Bill to (left) and invoice facts (right)
        y = top + 18
        self._font(7.5, bold=True)
        self.set_text_color(*MUTED)
        self.put(MARGIN, y, "BILL TO")
        self.set_text_color(*INK)
        self._font(11, bold=True)
        lines = self.wrap(h.customer_name, 88)
        if len(lines) > 2:  # a long name in a smaller size, whole
            self._font(9, bold=True)
            lines = self.wrap(h.customer_name, 88)
        left_y = y + 5.5
        for line in lines:
            self.put(MARGIN, left_y, line)
            left_y += self._size * 0.45
        self._font(9.5)
        for line in h.address_lines:
            for part in self.wrap(line, 88):
                self.put(MARGIN, left_y, part)
                left_y += 4.5

        facts = [("Invoice number", h.invoice_id), ("Issue date", h.issue_date), ("Billing period", h.period),
                 ("Credit type", h.credit_type), ("Customer ID", h.customer_id)]
        if h.contract_id:
            facts.append(("Contract ID", h.contract_id))
        right_y = y
        label_x, value_right = PAGE_W - MARGIN - 88, PAGE_W - MARGIN
        for label, value in facts:
            self._font(8)
            self.set_text_color(*MUTED)
            self.put(label_x, right_y, label)
            self.set_text_color(*INK)
            self.fitted(value, 60, 8.5, bold=label == "Invoice number")
            self.put(0, right_y, value, "R", value_right)
            right_y += 5
        self.y_pos = max(left_y, right_y) + 3

        if h.status_notes:
            self._font(9, bold=True)
            self.set_text_color(*STATUS_COLOURS.get(h.status, INK))
            for note in h.status_notes:
                for part in self.wrap(note, CONTENT_W):
                    self.put(MARGIN, self.y_pos + 3, part)
                    self.y_pos += 5
            self.set_text_color(*INK)
            self.y_pos += 2

    def _status_badge(self, y: float) -> None:
        status = self.document.header.status
        colour = STATUS_COLOURS.get(status, MUTED)
        self._font(9, bold=True)
        width = self.width(status) + 6
        x = PAGE_W - MARGIN - width
        self.set_draw_color(*colour)
        self.set_line_width(0.5)
        self.rect(x, y, width, 6.5, style="D", round_corners=True, corner_radius=1.2)
        self.set_text_color(*colour)
        self.put(x + 3, y + 4.6, status)
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)

    def figures(self, y: float, quantity: str, unit_price: str, total: str, size: float, bold: bool = False) -> None:
        """The three numeric columns of a row. Plain numbers and dollar amounts line up on their
        decimal point (room for the most decimals the column shows, up to MAX_ALIGNED_PLACES);
        anything else (a custom unit's amount) is right-aligned, smaller if it must be to fit."""
        right = MARGIN + COLUMNS[0]
        for column, (text, width) in enumerate(zip((quantity, unit_price, total), COLUMNS[1:])):
            right += width
            if not text:
                continue
            size_used = self.fitted(text, width - 5, size, bold)
            places = self.places[column]
            match = _ALIGNABLE.match(text) if size_used == size else None
            if match is None or len(match.group(2) or "") > places + 1:
                self.put(0, y, text, "R", right - 2)
                continue
            room = self.width("." + "0" * places) if places else 0.0
            self.put(0, y, match.group(1), "R", right - 2 - room)
            if match.group(2):
                self.put(right - 2 - room, y, match.group(2))

    def section(self, section: Section) -> None:
        single = len(section.rows) == 1 and not section.rows[0].description and not section.rows[0].tiers
        self.room_for(SECTION_H + ROW_H)
        self.section_title = section.title
        self._font(9.5, bold=True)
        lines = self.wrap(section.title, COLUMNS[0] - 4)
        for i, line in enumerate(lines):
            self.put(MARGIN + 2, self.y_pos + 5, line)
            if i < len(lines) - 1:
                self.y_pos += 4.5
        if single:
            row = section.rows[0]
            self.figures(self.y_pos + 5, row.quantity, row.unit_price, row.total, 9.5)
        self.y_pos += SECTION_H - (0 if single else 0.5)
        if section.is_custom_unit:
            self._font(7.8)
            self.set_text_color(*MUTED)
            self.put(MARGIN + 2, self.y_pos + 1.5, f"Priced in {section.credit_type}; converted below")
            self.set_text_color(*INK)
            self.y_pos += 3.5
        if not single:
            for row in section.rows:
                self.row(row)
        if len(section.rows) > 1:
            self.room_for(ROW_H + 1)
            self._font(8.5)
            self.set_text_color(*MUTED)
            self.put(0, self.y_pos + 4, f"{section.title} subtotal", "R", MARGIN + COLUMNS[0] + COLUMNS[1] + COLUMNS[2] - 2)
            self.set_text_color(*INK)
            self.figures(self.y_pos + 4, "", "", section.subtotal, 8.5, bold=True)
            self.y_pos += ROW_H + 0.5
        self.section_title = None
        self.set_draw_color(*RULE)
        self.set_line_width(0.15)
        self.line(MARGIN, self.y_pos, PAGE_W - MARGIN, self.y_pos)
        self.y_pos += 0.5

    def row(self, row: Row) -> None:
        self._font(9)
        lines = self.wrap(row.description, COLUMNS[0] - 8)
        self.room_for(ROW_H * len(lines))
        for i, line in enumerate(lines):
            self._font(9)
            self.put(MARGIN + 6, self.y_pos + 3.6, line)
            if i == 0:
                self.figures(self.y_pos + 3.6, row.quantity, row.unit_price, row.total, 9)
            self.y_pos += ROW_H - (0.6 if i < len(lines) - 1 else 0)
        for tier in row.tiers:
            self.room_for(TIER_H)
            self._font(7.8)
            self.set_text_color(*MUTED)
            self.put(MARGIN + 10, self.y_pos + 3, tier.label)
            self.figures(self.y_pos + 3, tier.quantity, tier.unit_price, tier.total, 7.8)
            self.set_text_color(*INK)
            self.y_pos += TIER_H

    def block_title(self, title: str) -> None:
        self.room_for(SECTION_H + ROW_H)
        self.y_pos += 2
        self._font(9.5, bold=True)
        self.put(MARGIN + 2, self.y_pos + 5, title)
        self.y_pos += SECTION_H - 0.5

    def adjustments(self) -> None:
        doc = self.document
        if doc.applied:
            self.block_title("Commits and credits applied")
            for applied in doc.applied:
                self.room_for(ROW_H)
                self._font(9)
                for i, line in enumerate(self.wrap(f"{applied.name} ({applied.kind})", COLUMNS[0] + COLUMNS[1] - 8)):
                    self.put(MARGIN + 6, self.y_pos + 3.6, line)
                    if i == 0:
                        self.figures(self.y_pos + 3.6, "", "", applied.total, 9)
                    self.y_pos += ROW_H
        if doc.conversions:
            self.block_title("Custom pricing unit conversion")
            for conversion in doc.conversions:
                self.room_for(ROW_H)
                self._font(9)
                self.put(MARGIN + 6, self.y_pos + 3.6, f"{conversion.unit_amount} to {doc.header.credit_type}")
                self.figures(self.y_pos + 3.6, "", conversion.rate, conversion.total, 9)
                self.y_pos += ROW_H
            self._font(7.8)
            self.set_text_color(*MUTED)
            self.room_for(TIER_H)
            self.put(MARGIN + 6, self.y_pos + 3, "The unit's total on this invoice × the rate per unit")
            self.set_text_color(*INK)
            self.y_pos += TIER_H

    def totals(self) -> None:
        doc = self.document
        status = doc.header.status
        total_label = {"DRAFT": "Total (draft)", "VOID": "Total (void)"}.get(status, "Total due")
        self.room_for(22)
        self.y_pos += 4
        left = PAGE_W - MARGIN - 90
        self.set_draw_color(*INK)
        self.set_line_width(0.3)
        self.line(left, self.y_pos, PAGE_W - MARGIN, self.y_pos)
        self._font(9.5)
        self.put(left + 2, self.y_pos + 5.5, "Subtotal")
        self.figures(self.y_pos + 5.5, "", "", doc.subtotal, 9.5)
        self.y_pos += 8
        self.set_fill_color(*BAND)
        self.rect(left, self.y_pos, 90, 9, style="F")
        self._font(11, bold=True)
        self.put(left + 2, self.y_pos + 6.2, total_label)
        self.figures(self.y_pos + 6.2, "", "", doc.total, 11, bold=True)
        self.y_pos += 12


def render_invoice_pdf(document: InvoiceDocument) -> bytes:
    """The PDF of one invoice document (A4, numbered pages, the line table's header on every page)."""
    pdf = _InvoicePDF(document)
    pdf.start_page()
    pdf.first_page_header()
    pdf.table_started = True
    pdf.column_headings()
    for section in document.sections:
        pdf.section(section)
    if not document.sections:
        pdf._font(9)
        pdf.set_text_color(*MUTED)
        pdf.put(MARGIN + 2, pdf.y_pos + 4, "No charges in this period.")
        pdf.set_text_color(*INK)
        pdf.y_pos += ROW_H + 1
    pdf.adjustments()
    pdf.table_started = False
    pdf.totals()
    pdf.footers()
    return bytes(pdf.output())
