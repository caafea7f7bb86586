"""The importance map: how much each block of an image matters to the machine that will read it.

Providers (saliency, feature sensitivity, CLIP attention, OCR text probability) all end in the
same object, so appliers (delta-QP maps, prefilters, quality maps) never need to know where a map
came from. Values live on a block grid of ``block``-pixel squares covering the image (the last
row and column may be partial), in [0, 1], 1 meaning "spend bits here".
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the default block side: HEVC's and VVC's smallest quantisation-group size worth signalling
DEFAULT_BLOCK = 16


@dataclass(frozen=True)
class ImportanceMap:
    """Values in [0, 1] on a ``rows x cols`` block grid over a ``width x height`` image.

    ``provider`` is the provider's full name (``sensitivity=classify:efficientnet-lite0``) and
    ``params`` what else shaped the map (model fingerprint, degradation...), so a map is as
    reproducible as a bitstream.
    """

    values: np.ndarray
    block: int
    width: int
    height: int
    provider: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        expected = grid_shape(self.height, self.width, self.block)
        if values.shape != expected:
            raise ValueError(
                f"{self.provider}: map of shape {values.shape} does not cover a "
                f"{self.width}x{self.height} image in {self.block}-px blocks {expected}"
            )
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(f"{self.provider}: map values must be finite and in [0, 1]")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_dense(
        cls,
        dense: np.ndarray,
        block: int,
        provider: str,
        params: Mapping[str, Any] | None = None,
    ) -> ImportanceMap:
        """Pool a per-pixel score (any non-negative scale) to blocks and normalise to [0, 1].

        Normalisation is robust min-max between the 2nd and 98th percentiles of the block
        scores, so one hot pixel does not flatten the rest of the map.
        """
        dense = np.asarray(dense, dtype=np.float64)
        height, width = dense.shape
        blocks = block_means(dense, block)
        return cls(normalise(blocks), block, width, height, provider, dict(params or {}))

    # -- reading the map at other resolutions ------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def to_grid(self, rows: int, cols: int) -> np.ndarray:
        """The map resampled to a ``rows x cols`` grid (area-weighted), e.g. a codec's CTU grid."""
        from PIL import Image

        if (rows, cols) == self.shape:
            return np.array(self.values)
        picture = Image.fromarray(np.array(self.values), mode="F")
        resized = picture.resize((cols, rows), Image.Resampling.BOX)
        return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)

    def to_pixels(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """A smooth per-pixel map (bilinear between block centres) at ``height x width``.

        Smooth rather than blocky so that a prefilter driven by it leaves no block edges for
        the codec to spend bits on.
        """
        from PIL import Image

        height = height or self.height
        width = width or self.width
        rows, cols = self.shape
        # Upsample to the block-aligned canvas, then crop, so block centres stay in place.
        canvas = Image.fromarray(np.array(self.values), mode="F").resize(
            (cols * self.block, rows * self.block), Image.Resampling.BILINEAR
        )
        dense = np.asarray(canvas, dtype=np.float32)[: self.height, : self.width]
        if (height, width) != dense.shape:
            dense = np.asarray(
                Image.fromarray(dense, mode="F").resize((width, height), Image.Resampling.BILINEAR)
            )
        return np.clip(dense, 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: provider, grid, mean and a checksum of the values."""
        rows, cols = self.shape
        quantised = np.round(self.values * 255).astype(np.uint8)
        return {
            "provider": self.provider,
            "block": self.block,
            "grid": f"{cols}x{rows}",
            "mean": round(float(self.values.mean()), 4),
            "crc32": f"{zlib.crc32(quantised.tobytes()):08x}",
            **{key: value for key, value in self.params.items() if _is_plain(value)},
        }


def grid_shape(height: int, width: int, block: int) -> tuple[int, int]:
    """Blocks needed to cover the image; partial blocks at the right and bottom count."""
    if block < 1:
        raise ValueError(f"block size must be positive, got {block}")
    return math.ceil(height / block), math.ceil(width / block)


def block_means(dense: np.ndarray, block: int) -> np.ndarray:
    """Mean of each block of a 2-D array; partial edge blocks average only their own pixels."""
    height, width = dense.shape
    rows, cols = grid_shape(height, width, block)
    padded = np.zeros((rows * block, cols * block), dtype=np.float64)
    weight = np.zeros_like(padded)
    padded[:height, :width] = dense
    weight[:height, :width] = 1.0
    sums = padded.reshape(rows, block, cols, block).sum(axis=(1, 3))
    counts = weight.reshape(rows, block, cols, block).sum(axis=(1, 3))
    return sums / counts


def normalise(scores: np.ndarray, low_pct: float = 2.0, high_pct: float = 98.0) -> np.ndarray:
    """Robust min-max to [0, 1]; a flat score becomes a flat map of ones (nothing to favour)."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    low, high = np.percentile(scores, [low_pct, high_pct])
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.ones_like(scores, dtype=np.float32)
    return np.clip((scores - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
