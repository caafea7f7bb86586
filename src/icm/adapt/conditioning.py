"""What an adapter is told about the image it reads: which codec made it, and at what rate.

Codec names and bpp buckets become small integer ids; id 0 always means "unknown", which is
what an unconditioned adapter always sees and what a conditioned one sees for a codec it was
not trained on (or a plain image file with no ``.icm`` header to say).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

#: bpp bucket edges, doubling: the rate regimes where artefacts change character
BPP_EDGES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
UNKNOWN = 0


@dataclass(frozen=True)
class Condition:
    """One image's codec and rate, as known (None = unknown)."""

    codec: str | None = None
    bpp: float | None = None


@dataclass(frozen=True)
class Conditioning:
    """The codec vocabulary an adapter was trained with, and its bucket edges."""

    codecs: tuple[str, ...]
    edges: tuple[float, ...] = BPP_EDGES

    @property
    def codec_slots(self) -> int:
        return len(self.codecs) + 1

    @property
    def bucket_slots(self) -> int:
        return len(self.edges) + 2  # unknown, below the first edge, ..., above the last

    def codec_id(self, codec: str | None) -> int:
        return self.codecs.index(codec) + 1 if codec in self.codecs else UNKNOWN

    def bucket_id(self, bpp: float | None) -> int:
        return UNKNOWN if bpp is None else 1 + bisect.bisect_right(self.edges, bpp)

    def ids(self, conditions: Sequence[Condition]) -> tuple[list[int], list[int]]:
        """(codec ids, bucket ids) for a batch."""
        return ([self.codec_id(c.codec) for c in conditions],
                [self.bucket_id(c.bpp) for c in conditions])
