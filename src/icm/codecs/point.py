"""Operating points: ``family@level`` (``hevc@qp37``) or ``family@<x>bpp`` for rate control."""

from __future__ import annotations

from dataclasses import dataclass

from icm.errors import UnknownCodecError


@dataclass(frozen=True)
class CodecPoint:
    """A codec and either a fixed level or a bpp target, never both."""

    codec: str
    level: str | None = None
    bpp: float | None = None

    def __str__(self) -> str:
        if self.bpp is not None:
            return f"{self.codec}@{self.bpp:g}bpp"
        return f"{self.codec}@{self.level}" if self.level else self.codec


def parse_point(text: str, bpp: float | None = None) -> CodecPoint:
    """Parse ``'jpeg@q30'``, ``'hevc@0.1bpp'``, or a bare ``'hevc'`` plus a ``bpp`` target."""
    codec, _, level = text.strip().lower().partition("@")
    if not codec:
        raise UnknownCodecError(f"empty codec in {text!r}; write it as family@level, e.g. jpeg@q30")
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
        return CodecPoint(codec, bpp=bpp)
    if not level:
        raise UnknownCodecError(f"{text!r} has no level; write {codec}@<level> or pass --bpp")
    return CodecPoint(codec, level=level)


def _parse_bpp(number: str, text: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise UnknownCodecError(f"{text!r}: bpp target {number!r} is not a number") from None
