"""The degradation interface: a clean RGB image, a strength and a seed in; a degraded image out.

Machines meet pictures from real cameras: noisy, blurred, hazy, rained on, underexposed, already
JPEG-compressed. To measure what that costs (and what coding for the machine can win back) we
need the same damage, at the same dose, on every run, so a degradation is a pure function of
``(image, strength, seed)``:

* **strength** is a float in ``[0, 1]``: 0 is the identity (the input comes back exactly) and 1 is
  severe. Each family maps it to its physical parameters and documents the map in its docstring,
  so a strength can be read back as "noise sigma 25" or "JPEG quality 50".
* **seed** feeds ``np.random.default_rng``, the only source of randomness, so equal arguments give
  equal bytes on any machine.

A :class:`DegradationRecord` says what was done (``haze@0.5``, seed 3); it is small enough to
travel as side information with a coded file later.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from icm.errors import IcmError
from icm.spec import parse_spec

#: the display gamma used where a family works in linear light (sensor noise, exposure)
DISPLAY_GAMMA = 2.2


class BadDegradationError(IcmError):
    """A strength outside [0, 1], a negative seed, or a record that does not parse."""


class Degradation(ABC):
    """One family of camera damage, deterministic for a given strength and seed.

    Subclasses set ``name``, ``summary`` and ``mapping`` (how strength becomes physical
    parameters, one line for listings) and implement :meth:`_apply`, which only ever sees a
    validated image and a strength in ``(0, 1]``. ``random`` is False for families that draw no
    random numbers (their output does not depend on the seed).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    mapping: ClassVar[str] = ""
    random: ClassVar[bool] = True

    def apply(self, rgb: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
        """The degraded ``(H, W, 3)`` uint8 copy of ``rgb``; the input is never modified."""
        check_rgb(rgb, "a degradation")
        strength = check_strength(strength)
        seed = check_seed(seed)
        if strength == 0.0:
            return rgb.copy()
        out = self._apply(rgb, strength, np.random.default_rng(seed))
        if out.shape != rgb.shape or out.dtype != np.uint8:  # pragma: no cover - a family's bug
            raise AssertionError(f"{self.name} returned {out.dtype} {out.shape}")
        return out

    @abstractmethod
    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        """Degrade a valid image at ``0 < strength <= 1``, drawing randomness only from ``rng``."""


@dataclass(frozen=True)
class DegradationRecord:
    """What was done to an image: family, strength and seed (``haze@0.5``, seed 3)."""

    name: str
    strength: float
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", check_strength(self.strength))
        object.__setattr__(self, "seed", check_seed(self.seed))

    def __str__(self) -> str:
        return f"{self.name}@{self.strength:g}"

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> DegradationRecord:
        """``'haze@0.5'`` -> ``DegradationRecord('haze', 0.5, seed)``; the name is not checked."""
        spec = parse_spec(text, "degradation", BadDegradationError, parts=(), strengths=False)
        name, value = spec.head.name, spec.qualifier
        if not name or value is None or spec.head.argument is not None:
            raise BadDegradationError(f"degradation {text!r} is not NAME@STRENGTH (e.g. haze@0.5)")
        try:
            strength = float(value)
        except ValueError:
            raise BadDegradationError(f"degradation {text!r}: strength {value!r} is not a "
                                      "number") from None
        return cls(name, strength, seed)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength, "seed": self.seed}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> DegradationRecord:
        return cls(str(record["name"]), float(record["strength"]), int(record.get("seed", 0)))


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1], or a one-line error saying what is accepted."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise BadDegradationError(
            f"strength must be a number in [0, 1] (0 = clean, 1 = severe), got {strength!r}")
    return value


def check_seed(seed: int) -> int:
    """A seed ``np.random.default_rng`` accepts: a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise BadDegradationError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_rgb(rgb: np.ndarray, taker: str) -> np.ndarray:
    """``rgb`` if it is a non-empty ``(H, W, 3)`` uint8 array; else a ValueError saying what
    ``taker`` takes (a programming mistake, not bad user input: files are checked on load)."""
    shape = getattr(rgb, "shape", None)
    valid = isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
    if not valid or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"{taker} takes an (H, W, 3) uint8 image, got {shape}")
    return rgb


def to_unit(rgb: np.ndarray) -> np.ndarray:
    """uint8 -> float64 in [0, 1]: every family computes in floats and rounds once at the end."""
    return rgb.astype(np.float64) / 255.0


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (overshoot allowed) -> uint8, rounded and clipped."""
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def to_linear(unit: np.ndarray) -> np.ndarray:
    """Display values -> linear light, where photons add and shot noise is Poisson."""
    return np.power(np.clip(unit, 0.0, 1.0), DISPLAY_GAMMA)


def to_display(linear: np.ndarray) -> np.ndarray:
    return np.power(np.clip(linear, 0.0, 1.0), 1.0 / DISPLAY_GAMMA)


def luma(unit: np.ndarray) -> np.ndarray:
    """BT.601 luma of a [0, 1] RGB image, (H, W)."""
    return unit @ np.array([0.299, 0.587, 0.114])


def shorter_side(rgb: np.ndarray) -> int:
    """Scene- and lens-sized effects (rain, drops, haze depth) scale with this, not in pixels."""
    return int(min(rgb.shape[:2]))
