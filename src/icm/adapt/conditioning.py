"""What an adapter is told about the image it reads: which codec made it, and at what rate.

Codec names and bpp buckets become small integer ids; id 0 always means "unknown", which is
what an unconditioned adapter always sees and what a conditioned one sees for a codec it was
not trained on (or a plain image file with no ``.icm`` header to say).

The rate is measured per pixel of the machine's input, not of the file (``input_side`` > 0):
a machine shrinks every image to its input size, so 0.2 bpp on a 768x512 photo puts about
five times more bits into each pixel the machine reads than 0.2 bpp on a 224 px crop. Bucketed
by file bpp, one bucket would hold artefacts of very different strength at different image
sizes; bucketed per input pixel, a bucket means the same thing at every size. Files written
before this (``input_side`` 0) keep bucketing by file bpp.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

#: file-bpp bucket edges (adapters made before input-pixel buckets), doubling
BPP_EDGES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
#: bits-per-input-pixel bucket edges, doubling: low-rate coding of a 224 px crop reads about
#: 0.1-0.6; the same levels on a photo twice the input size read four times more
INPUT_BPP_EDGES = (0.15, 0.3, 0.6, 1.2, 2.4, 4.8)
UNKNOWN = 0
UNKNOWN_NAME = "unknown"


@dataclass(frozen=True)
class Condition:
    """One image's codec, rate and (height, width) as known (None = unknown)."""

    codec: str | None = None
    bpp: float | None = None
    size: tuple[int, int] | None = None

    def without_codec(self) -> Condition:
        """The same rate with the codec unknown: what a codec not trained on is shown."""
        return Condition(None, self.bpp, self.size)


@dataclass(frozen=True)
class Conditioning:
    """The codec vocabulary an adapter was trained with, its bucket edges, and the machine's
    input side that rates are scaled to (0: buckets of file bpp)."""

    codecs: tuple[str, ...]
    edges: tuple[float, ...] = BPP_EDGES
    input_side: int = 0

    @property
    def codec_slots(self) -> int:
        return len(self.codecs) + 1

    @property
    def bucket_slots(self) -> int:
        return len(self.edges) + 2  # unknown, below the first edge, ..., above the last

    def codec_id(self, codec: str | None) -> int:
        return self.codecs.index(codec) + 1 if codec in self.codecs else UNKNOWN

    def rate(self, condition: Condition) -> float | None:
        """The bucketed rate: bits per pixel of the machine's input when the image size and
        input side are known (the machine resizes the shorter side to ``input_side``), else
        the file's bpp."""
        if condition.bpp is None:
            return None
        if not self.input_side or condition.size is None:
            return condition.bpp
        return condition.bpp * (min(condition.size) / self.input_side) ** 2

    def bucket_id(self, condition: Condition) -> int:
        rate = self.rate(condition)
        return UNKNOWN if rate is None else 1 + bisect.bisect_right(self.edges, rate)

    def ids(self, conditions: Sequence[Condition]) -> tuple[list[int], list[int]]:
        """(codec ids, bucket ids) for a batch."""
        return ([self.codec_id(c.codec) for c in conditions],
                [self.bucket_id(c) for c in conditions])

    def codec_name(self, codec_id: int) -> str:
        return self.codecs[codec_id - 1] if codec_id else UNKNOWN_NAME

    def bucket_range(self, bucket_id: int) -> str:
        """A bucket id as the rates it holds, for people: ``0.3-0.6 bpp/input px``."""
        unit = "bpp/input px" if self.input_side else "bpp"
        if bucket_id == UNKNOWN:
            return "rate unknown"
        bounds = (0.0, *self.edges, float("inf"))
        low, high = bounds[bucket_id - 1], bounds[bucket_id]
        return f"<{high:g} {unit}" if low == 0 else (
            f">={low:g} {unit}" if high == float("inf") else f"{low:g}-{high:g} {unit}")
