"""Rate control: the level whose real file is the largest not above a bpp target.

Bisection on the codec's knob, at most ``max_encodes`` real encodes (8 by default). Integer
knobs are bisected over their values; continuous ones (JPEG XL distance, JPEG 2000 ratio) over
the logarithm of their range, because rate moves roughly geometrically with them. Each trial is
measured in real bytes through ``size_of`` (the payload by default; the CLI passes the whole
``.icm`` file so the header counts too). The best fitting trial wins, so a codec whose rate is
not perfectly monotonic in its knob still gets the largest file that fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from icm.codecs.base import Bitstream, Codec
from icm.errors import RateControlError

SizeOf = Callable[[Bitstream], int]


@dataclass(frozen=True)
class RateResult:
    """The chosen encode, what it achieved, and every trial on the way (level, bpp)."""

    bitstream: Bitstream
    target_bpp: float
    achieved_bpp: float
    trials: tuple[tuple[str, float], ...]

    @property
    def encodes(self) -> int:
        return len(self.trials)


def encode_to_bpp(
    codec: Codec,
    image: np.ndarray,
    target_bpp: float,
    *,
    size_of: SizeOf | None = None,
    max_encodes: int = 8,
    window: tuple[float, float] | None = None,
    **options: Any,
) -> RateResult:
    """Encode ``image`` at the highest-rate level of ``codec`` whose size is <= ``target_bpp``.

    ``window`` (two knob values, in either order) limits the search to that part of the
    knob's range, when the caller knows roughly where the answer lies: fewer encodes.
    """
    if target_bpp <= 0:
        raise RateControlError(f"bpp target must be positive, got {target_bpp:g}")
    measure = size_of or (lambda bitstream: len(bitstream.data))
    pixels = image.shape[0] * image.shape[1]
    search = _Search(codec, image, target_bpp * pixels / 8, measure, options, window)
    if codec.knob.integer:
        search.integers(max_encodes)
    else:
        search.continuous(max_encodes)
    if search.best is None:
        smallest = min(search.trials, key=lambda trial: trial[1])
        raise RateControlError(
            f"{codec.name} cannot reach {target_bpp:g} bpp: its smallest file, at "
            f"{smallest[0]}, is {smallest[1]:.4g} bpp"
        )
    best, best_size = search.best
    return RateResult(best, target_bpp, 8 * best_size / pixels, tuple(search.trials))


class _Search:
    """Trial bookkeeping shared by the integer and continuous bisections."""

    def __init__(self, codec, image, budget_bytes, measure, options, window=None):
        self.codec, self.image, self.budget = codec, image, budget_bytes
        self.measure, self.options = measure, options
        knob = codec.knob
        low, high = sorted(window) if window else (knob.lo, knob.hi)
        self.lo, self.hi = max(knob.lo, low), min(knob.hi, high)
        self.pixels = image.shape[0] * image.shape[1]
        self.trials: list[tuple[str, float]] = []
        self.best: tuple[Bitstream, int] | None = None

    def fits(self, value: float) -> bool:
        """Encode at ``value``; remember it if it is the largest fitting file so far."""
        bitstream = self.codec.encode(self.image, value, **self.options)
        size = self.measure(bitstream)
        self.trials.append((bitstream.level, 8 * size / self.pixels))
        if size <= self.budget:
            if self.best is None or size > self.best[1]:
                self.best = (bitstream, size)
            return True
        return False

    def _value_at(self, position: float) -> float:
        """Map ``position`` in [0, 1] (rate rising with it) onto the knob's range."""
        knob = self.codec.knob
        fraction = position if knob.rate_rises else 1.0 - position
        if knob.integer:
            return round(self.lo + fraction * (self.hi - self.lo))
        low, high = math.log(self.lo), math.log(self.hi)
        return math.exp(low + fraction * (high - low))

    def integers(self, max_encodes: int) -> None:
        steps = int(self.hi - self.lo)
        fitting, failing = -1, steps + 1  # sentinels: step -1 fits, step steps+1 does not
        while failing - fitting > 1 and len(self.trials) < max_encodes:
            middle = (fitting + failing) // 2
            if self.fits(self._value_at(middle / steps) if steps else self.lo):
                fitting = middle
            else:
                failing = middle

    def continuous(self, max_encodes: int) -> None:
        fitting, failing = 0.0, 1.0
        # Until something fits, keep one encode back to try the smallest setting at the end.
        while len(self.trials) < max_encodes - (self.best is None):
            middle = (fitting + failing) / 2
            if self.fits(self._value_at(middle)):
                fitting = middle
            else:
                failing = middle
        if self.best is None:
            self.fits(self._value_at(0.0))
