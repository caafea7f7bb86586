"""The report as a document: a flat list of blocks, independent of any output format.

The sections build these blocks once and each renderer turns the same list into its own format,
which is what keeps ``report.md`` and ``report.html`` from ever saying different things. The
blocks hold text and PNG bytes only, no ledger rows, so a renderer needs nothing but this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-align these columns


@dataclass(frozen=True)
class Figure:
    name: str  # path relative to the report folder
    data: bytes  # the PNG, inlined into the HTML
    caption: str


@dataclass(frozen=True)
class Link:
    name: str
    text: str


Block = Heading | Para | Bullets | Table | Figure | Link


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: one rule for file names and HTML anchors alike,
    so a name in the Markdown and the id in the HTML are spelled the same way."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
