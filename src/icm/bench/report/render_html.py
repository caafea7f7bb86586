"""The document as one self-contained HTML page: every image inlined as base64 and the style
sheet in the page, so the report survives being mailed or uploaded on its own."""

from __future__ import annotations

import base64
import html
from collections import Counter

from icm.bench.report.document import Block, Bullets, Figure, Heading, Para, Table, slug


def render_html(title: str, blocks: list[Block]) -> str:
    ids: Counter[str] = Counter()
    body = "\n".join(_block(block, ids) for block in blocks)
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _block(block: Block, ids: Counter[str]) -> str:
    """One block as HTML; ``ids`` counts heading anchors so a repeated heading (every
    machine has a "Curve points") still gets an id of its own."""
    e = html.escape
    if isinstance(block, Heading):
        anchor = slug(block.text)
        ids[anchor] += 1
        anchor += f"-{ids[anchor]}" if ids[anchor] > 1 else ""
        return f'<h{block.level} id="{anchor}">{e(block.text)}</h{block.level}>'
    if isinstance(block, Para):
        return f"<p>{e(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{e(item)}</li>" for item in block.items) + "\n</ul>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.data).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(block.caption)}">'
            f"<figcaption>{e(block.caption)}</figcaption></figure>"
        )
    return f'<p><a href="{e(block.name)}">{e(block.text)}</a></p>'


def _table(table: Table) -> str:
    """A table in a scrolling box, so a wide one scrolls instead of widening the page."""
    def cell(tag: str, text: str, numeric: bool) -> str:
        return f"<{tag}{' class=num' if numeric else ''}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(table.header, table.numeric, strict=True))
    rows = "\n".join(
        "<tr>"
        + "".join(cell("td", c, n) for c, n in zip(row, table.numeric, strict=True))
        + "</tr>"
        for row in table.rows
    )
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n'
        "</tbody>\n</table></div>"
    )


#: The page's style sheet, kept in the code rather than a package data file: the project ships
#: no package data, and a page that must stand alone inlines it anyway.
CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6474; --rule: #d9dee7;
  --band: #f4f6fa; --accent: #2f5fb3; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 1rem; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 0.75rem; padding-top: 1rem;
  border-top: 2px solid var(--rule); }
h3 { font-size: 1.1rem; margin: 1.75rem 0 0.5rem; color: var(--muted); }
p, li { max-width: 48rem; }
a { color: var(--accent); }
.scroll { overflow-x: auto; margin: 0.75rem 0 1.25rem; }
table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.35rem 0.75rem; border-bottom: 1px solid var(--rule); text-align: left;
  vertical-align: top; }
th { background: var(--band); font-weight: 600; border-bottom: 2px solid var(--rule); }
tbody tr:nth-child(even) { background: #fafbfd; }
.num { text-align: right; white-space: nowrap; }
figure { margin: 1rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { font-size: 0.85rem; color: var(--muted); margin-top: 0.3rem; }
"""
