"""Operating points, the one grammar for them: ``codec[+tool...]@level`` (``hevc@qp37``,
``hevc-kvazaar+saliency~6@qp37``) or ``codec[+tool...]@<x>bpp`` for rate control.

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

# A level is letters then a number (q30, qp37, d1.5, r40) or a number then "bpp". Tool
# arguments may contain '@' too (clip:ViT-B-32@openai), so only a trailing '@' + level counts.
_LEVEL = re.compile(r"^(?:[a-z]{0,3}\d+(?:\.\d*)?|\d*\.?\d+(?:e-?\d+)?bpp)$")


class RecipeError(IcmError):
    """A point's tools that do not make sense together or cannot run."""


@dataclass(frozen=True)
class Tool:
    """One ``+tool`` of a point: ``name[=argument][~strength]``."""

    name: str
    argument: str | None = None
    strength: float | None = None

    @classmethod
    def parse(cls, text: str) -> Tool:
        body, tilde, number = text.rpartition("~")
        strength = None
        if tilde:
            try:
                strength = float(number)
            except ValueError:
                raise RecipeError(f"tool {text!r}: strength {number!r} is not a number") from None
            if strength < 0:
                raise RecipeError(f"tool {text!r}: strength must be >= 0")
        else:
            body = text
        name, equals, argument = body.partition("=")
        if equals and not argument:
            raise RecipeError(f"tool {text!r} has nothing after '='")
        return cls(name.strip().lower(), argument.strip() if equals else None, strength)

    def __str__(self) -> str:
        text = f"{self.name}={self.argument}" if self.argument else self.name
        return f"{text}~{self.strength:g}" if self.strength is not None else text


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


def parse_curve(head: str, text: str) -> tuple[str, tuple[Tool, ...]]:
    """``'jpeg+saliency~6'`` (a point without its level, from ``text``) -> the codec name and
    its parsed tools."""
    codec, *tools = (part.strip() for part in head.split("+"))
    codec = codec.lower()
    if not codec:
        raise UnknownCodecError(f"empty codec in {text!r}; write it as family@level, e.g. jpeg@q30")
    if any(not tool for tool in tools):
        raise UnknownCodecError(f"empty tool in {text!r}: write codec+tool+tool@level")
    return codec, tuple(Tool.parse(tool) for tool in tools)


def parse_point(text: str, bpp: float | None = None, *, bare: bool = False) -> CodecPoint:
    """Parse ``'jpeg@q30'``, ``'hevc@0.1bpp'``, ``'jpeg+saliency@q30'``, or a bare name plus
    a ``bpp`` target. With ``bare``, a name with neither is returned as a bare point (level
    and bpp None) for :func:`~icm.pipeline.recipe.parse_points` to give levels to."""
    head, level = split_level(text.strip())
    codec, tools = parse_curve(head, text)
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
        raise UnknownCodecError(f"{text!r} has no level; write {head}@<level> or pass --bpp")
    return CodecPoint(codec, level=level or None, tools=tools)


def _parse_bpp(number: str, text: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise UnknownCodecError(f"{text!r}: bpp target {number!r} is not a number") from None
