"""The document as Markdown: images as links to the PNG files beside ``report.md``, for reading
in a repository or next to the folder."""

from __future__ import annotations

from icm.bench.report.document import Block, Bullets, Figure, Heading, Para, Table


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Figure):
            parts.append(f"![{block.caption}]({block.name})\n\n*{block.caption}*")
        else:
            parts.append(f"[{block.text}]({block.name})")
    return "\n\n".join(parts) + "\n"


def _table(table: Table) -> str:
    """A pipe table; a ``|`` or a line break inside a cell would end the cell or the row."""
    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = ["---:" if numeric else "---" for numeric in table.numeric]
    return "\n".join(
        [line(table.header), "| " + " | ".join(rule) + " |", *(line(row) for row in table.rows)]
    )
