"""Resource limits that the encoding and the decoding side share.

One default, so that a picture icm agrees to encode is one it agrees to decode: a file that
declares more pixels than this is refused from its header, before anything is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icm.errors import UndecodableError

#: pixels per picture, read or decoded (100 MP: a 10000 x 10000 scan)
DEFAULT_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class DecodeSide:
    """What the decoding machine decides for itself; nothing in a file ever changes it.

    ``max_pixels`` bounds every picture a file declares (its header, its resampled size, each
    codec's own dimensions), checked before pixels are allocated. ``models`` are the model
    files the decoding side trusts (``icm decode --weights``): a learned codec's stream names
    its model only by a digest tag, and is decoded with the shipped or listed model whose
    digest matches, never with a path the file gives.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    models: tuple[Path, ...] = ()

    def trusting(self, models: tuple[Path, ...]) -> DecodeSide:
        """This side with more model files trusted (those the caller itself encoded with)."""
        if not models:
            return self
        return DecodeSide(self.max_pixels, self.models + tuple(models))

    def check_pixels(self, width: int, height: int, what: str) -> None:
        """Refuse ``what`` (``"the header's size"``...) when it is over the pixel limit."""
        if width * height > self.max_pixels:
            raise UndecodableError(
                f"{what} is {width}x{height} = {width * height / 1e6:.1f} MP, over the decode "
                f"pixel limit of {self.max_pixels / 1e6:g} MP (raise it with --max-pixels)")


#: the decoding side with every setting at its default
DEFAULT_SIDE = DecodeSide()
