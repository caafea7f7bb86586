"""What configures the pre-editor, without torch: the training settings, and how a codec
point becomes the editor's condition and its proxy's quantiser.

The command line reads its option defaults from :class:`PreeditTrainConfig` on every ``icm``
call, so this module stays cheap: torch loads with the network and the proxy only.

**One condition for every codec.** The editor is told how coarsely the codec will quantise,
in one unit every block-transform codec shares: the quantiser step on the orthonormal 8x8
DCT of 8-bit pixels. JPEG's step is its table entry (libjpeg's FDCT is that DCT), so a
quality gives the geometric mean of its luma table; H.264, HEVC and VVC share
``step = 2 ** ((QP - 4) / 6)``. Beside the step the editor is told the proxy family (JPEG's
frequency-weighted tables, or the video codecs' flat step with prediction): the same step
does not cost the same bits in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icm.codecs import Codec, get_codec
from icm.codecs.jpeg import quant_tables
from icm.errors import IcmError
from icm.training.checkpoints import identity_of

JPEG, TRANSFORM = "jpeg", "transform"
FAMILIES = (JPEG, TRANSFORM)
#: codec names whose levels are H.26x slice QPs (``step = 2 ** ((QP - 4) / 6)``)
QP_CODECS = ("hevc", "avc", "vvc")
#: the log2 steps the condition is scaled between: q95's table (~1.6) to QP 63 (~1000)
LOG2_STEP_RANGE = (0.0, 10.0)
#: levels training draws from, per family: the range the benchmarks code at
TRAIN_LEVELS = {JPEG: (3, 90), TRANSFORM: (22, 51)}


class PreeditError(IcmError):
    """A pre-editor that cannot run: a codec it has no proxy for, a bad setting or file."""


def family_of(codec: Codec | str) -> str:
    """The proxy family that stands for ``codec``: ``jpeg`` (Pillow's libjpeg tables) or
    ``transform`` (H.264, HEVC and VVC's QP scale); any other codec is a one-line error,
    since the editor would be told a step that means nothing to it."""
    coder = get_codec(codec) if isinstance(codec, str) else codec
    if coder.name == "jpeg":
        return JPEG
    if coder.knob.prefix == "qp" and coder.name.split("-")[0] in QP_CODECS:
        return TRANSFORM
    raise PreeditError(f"the pre-editor has a proxy for jpeg and the QP-scaled codecs "
                       f"({', '.join(QP_CODECS)}), not {coder.name}")


def level_value(codec: Codec, level: str | None) -> float:
    """The number of ``level`` (the middle of the ladder for a bpp target)."""
    level = level or codec.ladder[len(codec.ladder) // 2]
    return float(codec.knob.parse(level, codec.name))


def jpeg_tables(quality: int) -> np.ndarray:
    """(2, 8, 8) float32: libjpeg's luma and chroma tables at ``quality``."""
    return np.stack(quant_tables(int(quality))).astype(np.float32)


def step_tables(family: str, value: float) -> np.ndarray:
    """(2, 8, 8) quantiser steps (luma, chroma) of a level on the orthonormal DCT of 8-bit
    pixels. The video codecs' steps are flat (their default scaling lists)."""
    if family == JPEG:
        return jpeg_tables(round(value))
    step = 2.0 ** ((value - 4.0) / 6.0)
    return np.full((2, 8, 8), step, dtype=np.float32)


def condition(family: str, value: float) -> tuple[float, float]:
    """The editor's condition: (log2 of the level's mean luma step scaled to 0..1, 1 for
    JPEG else 0)."""
    luma = step_tables(family, value)[0]
    log2_step = float(np.mean(np.log2(luma)))
    low, high = LOG2_STEP_RANGE
    return (min(max((log2_step - low) / (high - low), 0.0), 1.0),
            1.0 if family == JPEG else 0.0)


@dataclass
class PreeditTrainConfig:
    """One training run's settings. ``icm preedit train`` shows these defaults as its own."""

    images: tuple[str, ...] = ("samples",)
    out: Path = Path("preedit")
    machine: str = "classify:efficientnet-lite0"
    families: tuple[str, ...] = FAMILIES
    #: the side of the square training crops, cut from photos fitted to the machine's input
    crop: int = 224
    #: crops cut from each photo (with their importance maps) once, before training
    crops_per_photo: int = 4
    batch: int = 6
    steps: int = 300
    lr: float = 3e-4
    seed: int = 0
    checkpoint_every: int = 50
    limit: int = 0
    #: weight of the pixel term (MSE to the unedited crop, per 255^2): keeps a photograph
    pixel_weight: float = 0.02
    #: weight of the multi-level feature distortion beside the output KL in the machine term:
    #: small, because shallow taps measure the very texture an editor should remove where
    #: the output does not need it
    feature_weight: float = 0.1
    #: QP steps (or JPEG quality steps) between the two probes that measure the codec's own
    #: rate-distortion slope at the level, which sets the machine term's weight
    slope_gap: int = 3
    #: bounds on that weight, in proxy bits per pixel per unit of distortion
    slope_bounds: tuple[float, float] = (0.05, 50.0)
    width: int = 48
    blocks: int = 3
    #: held-out loss every this many steps (the learning curve), when held-out photos are given
    val_every: int = 100
    #: torch CPU threads (0: torch's default); not part of a checkpoint's identity
    threads: int = 0

    def check(self) -> None:
        if self.crop < 32 or self.crop % 16 or self.batch < 1 or self.steps < 1:
            raise PreeditError("crop must be a multiple of 16 and >= 32; batch, steps >= 1")
        if self.checkpoint_every < 1 or self.val_every < 1 or self.width < 4 or self.blocks < 1:
            raise PreeditError("checkpoint-every, val-every, blocks >= 1 and width >= 4")
        unknown = [family for family in self.families if family not in FAMILIES]
        if unknown or not self.families:
            raise PreeditError(f"families must be among {', '.join(FAMILIES)}, got "
                               f"{', '.join(self.families) or 'none'}")
        low, high = self.slope_bounds
        if not 0 < low <= high or self.pixel_weight < 0 or self.feature_weight < 0:
            raise PreeditError("slope bounds must satisfy 0 < low <= high; weights >= 0")
        if self.slope_gap < 1:
            raise PreeditError("slope gap must be >= 1")
        from icm.machines.features import SUPPORTED
        if self.machine not in SUPPORTED:
            raise PreeditError(f"pre-editor training supports {', '.join(SUPPORTED)}, not "
                               f"{self.machine!r}")

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (``steps`` may grow: training longer)."""
        return identity_of(self)

