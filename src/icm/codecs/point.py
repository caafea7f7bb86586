"""Operating points: ``family[+tool...]@level`` (``hevc@qp37``, ``hevc-kvazaar+saliency@qp37``)
or ``family@<x>bpp`` for rate control.

Tools (``+saliency``, ``+fit=classify:efficientnet-lite0``, ``+tags~3``) name the machine-aware
steps applied before the codec (see :mod:`icm.recipe`); this module only keeps them, in order,
as text. A point with tools is its own curve in a benchmark, so ``jpeg+saliency`` is compared
with plain ``jpeg`` like any other codec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from icm.errors import UnknownCodecError

# A level is letters then a number (q30, qp37, d1.5, r40) or a number then "bpp". Tool
# arguments may contain '@' too (clip:ViT-B-32@openai), so only a trailing '@' + level counts.
_LEVEL = re.compile(r"^(?:[a-z]{0,3}\d+(?:\.\d*)?|\d*\.?\d+(?:e-?\d+)?bpp)$")


@dataclass(frozen=True)
class CodecPoint:
    """A codec, its tools, and either a fixed level or a bpp target, never both."""

    codec: str
    level: str | None = None
    bpp: float | None = None
    tools: tuple[str, ...] = ()

    @property
    def curve(self) -> str:
        """The point without its level: the name of its rate-distortion curve."""
        return "+".join((self.codec, *self.tools))

    def __str__(self) -> str:
        if self.bpp is not None:
            return f"{self.curve}@{self.bpp:g}bpp"
        return f"{self.curve}@{self.level}" if self.level else self.curve


def split_level(text: str) -> tuple[str, str]:
    """``'jpeg+prompt=a cat@vit@q30'`` -> ``('jpeg+prompt=a cat@vit', 'q30')``; no level -> ''."""
    if "+" not in text:  # no tools: everything after the '@' is the level, checked later
        head, _, tail = text.partition("@")
        return head, tail.strip().lower()
    head, at, tail = text.rpartition("@")
    tail = tail.strip().lower()
    if at and (_LEVEL.match(tail) or tail.endswith("bpp")):
        return head, tail
    return text, ""


def parse_point(text: str, bpp: float | None = None) -> CodecPoint:
    """Parse ``'jpeg@q30'``, ``'hevc@0.1bpp'``, ``'jpeg+saliency@q30'``, or a bare name plus
    a ``bpp`` target."""
    head, level = split_level(text.strip())
    codec, *tools = (part.strip() for part in head.split("+"))
    codec = codec.lower()
    if not codec:
        raise UnknownCodecError(f"empty codec in {text!r}; write it as family@level, e.g. jpeg@q30")
    if any(not tool for tool in tools):
        raise UnknownCodecError(f"empty tool in {text!r}: write codec+tool+tool@level")
    if level.endswith("bpp"):
        if bpp is not None:
            raise UnknownCodecError(f"{text!r} already names a bpp target; drop --bpp")
        bpp = _parse_bpp(level[:-3], text)
        level = ""
    if bpp is not None:
        if level:
            raise UnknownCodecError(f"give either a level or --bpp for {codec}, not both")
        if bpp <= 0:
            raise UnknownCodecError(f"bpp target must be positive, got {bpp:g}")
        return CodecPoint(codec, bpp=bpp, tools=tuple(tools))
    if not level:
        raise UnknownCodecError(f"{text!r} has no level; write {head}@<level> or pass --bpp")
    return CodecPoint(codec, level=level, tools=tuple(tools))


def _parse_bpp(number: str, text: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise UnknownCodecError(f"{text!r}: bpp target {number!r} is not a number") from None
