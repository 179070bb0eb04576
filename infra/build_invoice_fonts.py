"""Builds the fonts invoice PDFs are set in, committed under shared/tally/rendering/fonts/.

    python -m infra.build_invoice_fonts      # about a minute; rerun only to change the ranges

Sources are Debian's packages, so the build is reproducible on any machine of this project:
`fonts-dejavu-core` 2.37 (DejaVu Sans and Sans Bold) and `fonts-noto-cjk` 20220127 (Noto Sans
CJK SC, face 2 of NotoSansCJK-Regular.ttc; the SC face maps the whole unified ideograph block,
Hangul and kana). Each font is cut with fontTools' subsetter to the ranges below, without hinting,
layout tables or vertical metrics: fpdf2 lays out text itself and embeds only the glyphs a PDF
uses, so these files bound the Lambda package, not the PDFs.

- DejaVu Sans: Latin (with Vietnamese), IPA, Greek, Cyrillic, Armenian, Georgian, punctuation,
  currency, arrows, maths: what a name or an address in a European script needs.
- Noto Sans CJK: CJK punctuation, Hiragana, Katakana, Hangul Jamo and all 11,172 Hangul
  syllables, the CJK Unified Ideographs block (U+4E00..9FFF) and compatibility ideographs,
  full-width forms. Extension A and the supplementary planes are left out (rare in names: they
  would add about 1.5 MB); such a character prints as the missing-glyph box.

The licenses travel with the files (LICENSE-DejaVu.txt, LICENSE-NotoSansCJK-OFL.txt), taken from
the packages' Debian copyright files.
"""

from __future__ import annotations

import re
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont

OUT = Path(__file__).resolve().parent.parent / "shared" / "tally" / "rendering" / "fonts"
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
NOTO_CJK_FACE = 2  # Noto Sans CJK SC
DEJAVU_COPYRIGHT = Path("/usr/share/doc/fonts-dejavu-core/copyright")
NOTO_COPYRIGHT = Path("/usr/share/doc/fonts-noto-cjk/copyright")

LATIN_GREEK_CYRILLIC = [
    (0x0020, 0x007E), (0x00A0, 0x036F), (0x0370, 0x03FF), (0x0400, 0x052F), (0x0530, 0x058F),
    (0x10A0, 0x10FF), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF), (0x2000, 0x206F), (0x20A0, 0x20CF),
    (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x25A0, 0x25FF), (0xFB00, 0xFB06),
    (0xFFFD, 0xFFFD),
]
CJK = [
    (0x3000, 0x303F), (0x3040, 0x30FF), (0x3130, 0x318F), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF), (0xFF00, 0xFFEF),
]


def _codepoints(ranges: list[tuple[int, int]]) -> list[int]:
    return [c for start, end in ranges for c in range(start, end + 1)]


def _cut(font: TTFont, ranges: list[tuple[int, int]], path: Path) -> None:
    options = subset.Options()
    options.layout_features = []
    options.hinting = False
    options.notdef_outline = True
    options.name_IDs = ["*"]  # keep the copyright, license and trademark records
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "JSTF", "VORG", "vhea", "vmtx", "DSIG", "kern"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=_codepoints(ranges))
    subsetter.subset(font)
    font.recalcTimestamp = False  # keep the source's head.modified: the same input gives the same bytes
    font.save(path)
    print(f"{path.name}: {path.stat().st_size:,} bytes")


def _license(copyright_file: Path, name: str) -> str:
    """The `License: name` paragraph of a Debian (DEP-5) copyright file, as plain text."""
    text = copyright_file.read_text()
    match = re.search(rf"^License: {re.escape(name)}\n((?: .*\n?)+)", text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"{copyright_file}: no License: {name} paragraph")
    lines = [line[1:] for line in match.group(1).splitlines()]
    return "\n".join("" if line == "." else line for line in lines).strip() + "\n"


def _copyright_lines(copyright_file: Path) -> str:
    """The Copyright: field of the `Files: *` paragraph."""
    text = copyright_file.read_text()
    match = re.search(r"^Files: \*\nCopyright: (.*(?:\n .*)*)", text, re.MULTILINE)
    return "" if match is None else "\n".join(l.strip() for l in match.group(1).splitlines()) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    _cut(TTFont(DEJAVU_DIR / "DejaVuSans.ttf"), LATIN_GREEK_CYRILLIC, OUT / "DejaVuSans-subset.ttf")
    _cut(TTFont(DEJAVU_DIR / "DejaVuSans-Bold.ttf"), LATIN_GREEK_CYRILLIC, OUT / "DejaVuSans-Bold-subset.ttf")
    noto = TTCollection(NOTO_CJK).fonts[NOTO_CJK_FACE]
    noto_copyright = noto["name"].getDebugName(0)
    _cut(noto, CJK, OUT / "NotoSansCJKsc-Regular-subset.otf")
    (OUT / "LICENSE-DejaVu.txt").write_text(
        "DejaVu Sans (fonts-dejavu-core 2.37), subset by infra/build_invoice_fonts.py.\n\n"
        + _copyright_lines(DEJAVU_COPYRIGHT) + "\n" + _license(DEJAVU_COPYRIGHT, "bitstream-vera")
    )
    (OUT / "LICENSE-NotoSansCJK-OFL.txt").write_text(
        "Noto Sans CJK SC (fonts-noto-cjk 20220127), subset by infra/build_invoice_fonts.py.\n"
        f"{noto_copyright}\n\n"
        + _license(NOTO_COPYRIGHT, "SIL-1.1")
    )


if __name__ == "__main__":
    main()
