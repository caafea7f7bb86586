"""Rendered text documents with exact ground truth: what OCR machines are benchmarked on.

Photos carry no text to check a reader against, so the embedded dataset adds documents drawn
here: receipts, signs and paragraphs at font sizes from 11 px (small print that compression
smears first) to 48 px (a sign read from across a room). Because the text is drawn rather than
scanned, the truth is exact: ``text`` is the document's lines joined by ``"\\n"``, each line as
an OCR engine should read it (a receipt's item and its right-aligned price become
``"Bread loaf 2.40"``: a run of blank paper reads as one space).

**Determinism.** Everything is fixed data drawn with Pillow's bundled font (Aileron Regular,
``ImageFont.load_default(size=N)``) and its basic layout engine: no randomness, no system fonts,
so every machine with the same Pillow wheel renders the same bytes and a benchmark's image hashes
(its cache keys) never drift. DejaVu may be installed on some machines and not others, so it is
deliberately not used.

**Glyphs.** Aileron draws ``l`` and ``I`` as the same plain bar, differing only in height, so no
text below puts either alone as a word (no pronoun "I", no list marker "l") where not even a
person could tell them apart; inside words the context settles them, as it does for real print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]

_INK: Colour = (26, 26, 30)
_RECEIPT_PAPER: Colour = (252, 251, 246)  # thermal paper: the faintest warm tint
_PAGE_PAPER: Colour = (250, 248, 242)
_LINE_SPACING = 1.3  # baseline-to-baseline distance, in font sizes
_RECEIPT_WIDTH = 360


@dataclass(frozen=True)
class RenderedDocument:
    """One rendered document: ``image`` is ``(H, W, 3)`` uint8, ``text`` its exact lines.

    ``layout`` is ``receipt``, ``sign`` or ``paragraph``; ``font_size`` is the em size in pixels.
    """

    name: str
    image: np.ndarray = field(repr=False, compare=False)
    text: str
    font_size: int
    layout: str


# -- the fixed content ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Receipt:
    name: str
    font_size: int
    header: tuple[str, ...]
    items: tuple[tuple[str, int], ...]  # (label, price in pence), so the total always adds up
    cash: int | None  # pence handed over, so the change is printed; None: paid by card
    thanks: str


@dataclass(frozen=True)
class _Sign:
    name: str
    font_size: int
    lines: tuple[str, ...]
    ink: Colour
    paper: Colour


@dataclass(frozen=True)
class _Paragraph:
    name: str
    font_size: int
    width: int
    prose: str


_RECEIPTS = (
    _Receipt(
        "doc-receipt-1",
        14,
        ("CORNER GROCERY", "14 Harbour Road, Leeds", "2024-03-14 09:41"),
        (
            ("Bread loaf", 240),
            ("Milk 2 pints", 115),
            ("Free range eggs", 320),
            ("Cheddar cheese", 475),
            ("Apples 6 pack", 210),
            ("Coffee beans", 625),
        ),
        None,
        "Thank you for shopping with us",
    ),
    _Receipt(
        "doc-receipt-2",
        18,
        ("RIVERSIDE CAFE", "Table 7, server Maria", "2023-11-02 13:05"),
        (
            ("Flat white", 340),
            ("Tomato soup", 590),
            ("Cheese toastie", 650),
            ("Carrot cake", 380),
            ("Sparkling water", 220),
        ),
        2500,
        "Please come again",
    ),
    _Receipt(
        "doc-receipt-3",
        24,
        ("HILLTOP HARDWARE", "2024-06-21 16:27"),
        (
            ("Wood screws", 560),
            ("Sandpaper pack", 325),
            ("Paint brush", 499),
            ("Masking tape", 215),
        ),
        2000,
        "Keep this receipt for returns",
    ),
    _Receipt(
        "doc-receipt-4",
        12,
        ("GREEN LEAF PHARMACY", "3 Mill Lane, York", "2024-01-09 17:52"),
        (
            ("Hand cream", 450),
            ("Plasters 20 pack", 199),
            ("Vitamin C tablets", 385),
            ("Toothpaste", 275),
            ("Cough syrup", 560),
            ("Cotton pads", 130),
            ("Sun cream SPF 30", 799),
        ),
        None,
        "Ask us about repeat prescriptions",
    ),
    _Receipt(
        "doc-receipt-5",
        11,
        ("NORTH STAR BOOKS", "Order 48213", "2023-08-30 11:16"),
        (
            ("Field guide to birds", 1299),
            ("Pocket atlas", 850),
            ("Notebook A5", 425),
            ("Pencils 12 pack", 340),
            ("Postcards 5 pack", 250),
        ),
        4000,
        "Books make good friends",
    ),
)

_SIGNS = (
    _Sign("doc-sign-1", 48, ("EXIT",), ink=(20, 84, 40), paper=(232, 244, 234)),
    _Sign("doc-sign-2", 40, ("NO PARKING",), ink=(140, 18, 22), paper=(252, 252, 252)),
    _Sign("doc-sign-3", 32, ("PLATFORM 9", "NORTHBOUND"), ink=_INK, paper=(250, 222, 96)),
)

_PARAGRAPHS = (
    _Paragraph(
        "doc-paragraph-1",
        14,
        520,
        "The old lighthouse stands at the end of a narrow stone pier. Every evening the keeper "
        "climbs the spiral stairs, winds the clockwork and trims the wick. Ships passing in the "
        "night see its beam sweep across the water once every twelve seconds. In winter storms "
        "the waves break over the pier, and the keeper waits inside until the tide turns.",
    ),
    _Paragraph(
        "doc-paragraph-2",
        20,
        640,
        "Fresh bread needs only flour, water, salt and yeast, but it also needs patience. Mix "
        "the dough the night before and leave it covered in a cool kitchen. By morning it will "
        "have doubled in size and smell faintly sweet.",
    ),
    _Paragraph(
        "doc-paragraph-3",
        28,
        720,
        "Trains to the coast leave every hour from platform four. Please keep your ticket "
        "until the end of your journey.",
    ),
    _Paragraph(
        "doc-paragraph-4",
        12,
        440,
        "To reset the heating timer, hold the mode button for five seconds until the display "
        "flashes. Use the arrow keys to choose the hour and press mode again to confirm. The "
        "boiler keeps its settings during a power cut for up to two days, after which the "
        "clock returns to midnight and must be set once more.",
    ),
    _Paragraph(
        "doc-paragraph-5",
        11,
        400,
        "Volunteers meet at the village hall on Saturday at nine to clear the footpath along "
        "the river. Bring gloves, sturdy boots and a flask of tea. Tools and lunch are "
        "provided, and the work ends by three whatever the weather.",
    ),
)


# -- rendering --------------------------------------------------------------------------------


def render_documents() -> list[RenderedDocument]:
    """Every document, in a fixed order: receipts, signs, paragraphs. Byte-identical per run."""
    documents = [_render_receipt(receipt) for receipt in _RECEIPTS]
    documents += [_render_sign(sign) for sign in _SIGNS]
    documents += [_render_paragraph(paragraph) for paragraph in _PARAGRAPHS]
    return documents


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # pragma: no cover - Pillow without FreeType
        raise RuntimeError("rendering documents needs Pillow built with FreeType")
    return font


def _line_height(size: int) -> int:
    return round(size * _LINE_SPACING)


def _money(pence: int) -> str:
    return f"{pence // 100}.{pence % 100:02d}"


def _receipt_rows(receipt: _Receipt) -> list[tuple[str, str | None, bool]]:
    """(left text, right-aligned price or None, centred) per line, totals worked out."""
    total = sum(price for _, price in receipt.items)
    rows: list[tuple[str, str | None, bool]] = [(line, None, True) for line in receipt.header]
    rows += [(label, _money(price), False) for label, price in receipt.items]
    rows.append(("TOTAL", _money(total), False))
    if receipt.cash is None:
        rows.append(("Card payment", _money(total), False))
    else:
        rows += [
            ("Cash", _money(receipt.cash), False),
            ("Change", _money(receipt.cash - total), False),
        ]
    rows.append((receipt.thanks, None, True))
    return rows


def _render_receipt(receipt: _Receipt) -> RenderedDocument:
    size = receipt.font_size
    font, step = _font(size), _line_height(size)
    margin = max(16, size)
    rows = _receipt_rows(receipt)
    # Half-line breaks after the header, before the total and before the closing line.
    gaps = {len(receipt.header), len(receipt.header) + len(receipt.items), len(rows) - 1}
    height = 2 * margin + step * len(rows) + (step // 2) * len(gaps)
    image = Image.new("RGB", (_RECEIPT_WIDTH, height), _RECEIPT_PAPER)
    draw = ImageDraw.Draw(image)
    y = margin
    for index, (left, right, centred) in enumerate(rows):
        if index in gaps:
            y += step // 2
        if centred:
            draw.text((_RECEIPT_WIDTH // 2, y), left, font=font, fill=_INK, anchor="ma")
        else:
            draw.text((margin, y), left, font=font, fill=_INK, anchor="la")
        if right is not None:
            draw.text((_RECEIPT_WIDTH - margin, y), right, font=font, fill=_INK, anchor="ra")
        y += step
    lines = [left if right is None else f"{left} {right}" for left, right, _ in rows]
    return _document(receipt.name, image, lines, size, "receipt")


def _render_sign(sign: _Sign) -> RenderedDocument:
    size = sign.font_size
    font, step = _font(size), _line_height(size)
    margin = size  # a sign's generous border: one em of blank panel all round
    # Centre the ink, not the line boxes: capitals leave the ascender band above them empty.
    top = font.getbbox(sign.lines[0], anchor="ma")[1]
    bottom = (len(sign.lines) - 1) * step + font.getbbox(sign.lines[-1], anchor="ma")[3]
    width = max(round(font.getlength(line)) for line in sign.lines) + 2 * margin
    height = bottom - top + 2 * margin
    image = Image.new("RGB", (width, height), sign.paper)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(sign.lines):
        xy = (width // 2, margin - top + index * step)
        draw.text(xy, line, font=font, fill=sign.ink, anchor="ma")
    return _document(sign.name, image, list(sign.lines), size, "sign")


def _render_paragraph(paragraph: _Paragraph) -> RenderedDocument:
    size = paragraph.font_size
    font, step = _font(size), _line_height(size)
    margin = max(24, size)
    lines = wrap(paragraph.prose, font, paragraph.width - 2 * margin)
    height = step * len(lines) + 2 * margin
    image = Image.new("RGB", (paragraph.width, height), _PAGE_PAPER)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((margin, margin + index * step), line, font=font, fill=_INK, anchor="la")
    return _document(paragraph.name, image, lines, size, "paragraph")


def wrap(prose: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap: as many words per line as fit in ``width`` pixels of ``font``."""
    lines: list[str] = []
    current = ""
    for word in prose.split():
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _document(
    name: str, image: Image.Image, lines: Sequence[str], size: int, layout: str
) -> RenderedDocument:
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    return RenderedDocument(name, pixels, "\n".join(lines), size, layout)
