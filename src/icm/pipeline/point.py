"""Operating points, in the one spec grammar (:mod:`icm.spec`): ``codec[+tool...]@level``
(``hevc@qp37``, ``hevc-kvazaar+saliency~6@qp37``) or ``codec[+tool...]@<x>bpp`` for rate
control.

A tool is ``name[=argument][~strength]`` (``saliency``, ``fit=classify:efficientnet-lite0``,
``tags~3``): a machine-aware step run before the codec (see :mod:`icm.pipeline.recipe`). A
point keeps its tools parsed and in order, and prints back exactly what was written in the
canonical form, since that text is the point's key in a bench ledger. A point with tools is its
own curve in a benchmark, so ``jpeg+saliency`` is compared with plain ``jpeg`` like any other
codec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from icm.errors import IcmError, UnknownCodecError
from icm.spec import Part, parse_part, parse_spec

# A level is letters then a number (q30, qp37, d1.5, r40) or a number then "bpp". Tool
# arguments may contain '@' too (clip:ViT-B-32@openai), so only a trailing '@' + level counts.
_LEVEL = re.compile(r"^(?:[a-z]{0,3}\d+(?:\.\d*)?|\d*\.?\d+(?:e-?\d+)?bpp)$")


class RecipeError(IcmError):
    """A point's tools that do not make sense together or cannot run."""


@dataclass(frozen=True)
class Tool(Part):
    """One ``+tool`` of a point: ``name[=argument][~strength]`` (:mod:`icm.spec`)."""

    @classmethod
    def parse(cls, text: str) -> Tool:
        part = parse_part(text, "tool", RecipeError)
        return cls(part.name, part.argument, part.strength)


@dataclass(frozen=True)
class CodecPoint:
    """A codec, its tools, and either a fixed level or a bpp target, never both."""

    codec: str
    level: str | None = None
    bpp: float | None = None
    tools: tuple[Tool, ...] = ()

    @property
    def curve(self) -> str:
        """The point without its level: the name of its rate-distortion curve."""
        return "+".join((self.codec, *map(str, self.tools)))

    def __str__(self) -> str:
        if self.bpp is not None:
            return f"{self.curve}@{self.bpp:g}bpp"
        return f"{self.curve}@{self.level}" if self.level else self.curve


def parse_point(text: str, bpp: float | None = None, *, bare: bool = False) -> CodecPoint:
    """Parse ``'jpeg@q30'``, ``'hevc@0.1bpp'``, ``'jpeg+saliency@q30'``, or a bare name plus
    a ``bpp`` target. With ``bare``, a name with neither is returned as a bare point (level
    and bpp None) for :func:`~icm.pipeline.recipe.parse_points` to give levels to."""
    spec = parse_spec(text, "tool", RecipeError, trailing=_is_level)
    codec, level = str(spec.head), (spec.qualifier or "").lower()
    if not codec:
        raise UnknownCodecError(f"empty codec in {text!r}; write it as family@level, e.g. jpeg@q30")
    if any(not tool.name for tool in spec.parts):
        raise UnknownCodecError(f"empty tool in {text!r}: write codec+tool+tool@level")
    tools = tuple(Tool(t.name, t.argument, t.strength) for t in spec.parts)
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
        return CodecPoint(codec, bpp=bpp, tools=tools)
    if not level and not bare:
        curve = "+".join((codec, *map(str, tools)))
        raise UnknownCodecError(f"{text!r} has no level; write {curve}@<level> or pass --bpp")
    return CodecPoint(codec, level=level or None, tools=tools)


def _is_level(text: str) -> bool:
    """Whether the text after a point's last ``@`` is its level (a bpp target included, even
    a malformed one, so that it is refused as such)."""
    return bool(_LEVEL.match(text)) or text.endswith("bpp")


def _parse_bpp(number: str, text: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise UnknownCodecError(f"{text!r}: bpp target {number!r} is not a number") from None
