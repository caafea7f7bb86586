"""What configures icm.restore, without torch: the settings of a training run and the names
a condition may take.

The command line reads its options' defaults from :class:`RestoreTrainConfig`, so this module
is imported by every ``icm`` call, and keeps that cheap: torch loads only with the network
(:mod:`icm.restore.network`), which this module never imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm.codecs import get_codec
from icm.degrade import get_degradation, list_degradations
from icm.errors import IcmError
from icm.training.checkpoints import identity_of

#: the vocabulary's first entry: a degradation the caller does not know (or did not say)
UNKNOWN = "unknown"
#: the condition that asks the degradation recogniser (``icm.degrade.recognise``)
AUTO = "auto"
#: ``--init`` value naming the shipped general restorer
SHIPPED_INIT = "shipped"


class RestoreTrainError(IcmError):
    """Training input that cannot be used: no images, a bad setting, a stale checkpoint."""


def all_degradations() -> tuple[str, ...]:
    """Every registered degradation's name: what training covers unless told otherwise."""
    return tuple(cls.name for cls in list_degradations())


@dataclass
class RestoreTrainConfig:
    """One training run's settings. ``icm restore train`` shows these defaults as its own."""

    images: tuple[str, ...] = ("samples",)
    val: str | None = None
    out: Path = Path("restore.safetensors")
    degradations: tuple[str, ...] = field(default_factory=all_degradations)
    strengths: tuple[float, float] = (0.2, 0.8)
    crop: int = 96
    batch: int = 8
    steps: int = 1000
    lr: float = 2e-3
    #: weight of an MSE term beside L1 (L1 alone keeps edges sharper; MSE is what PSNR scores)
    mse_weight: float = 0.0
    #: share of samples shown as type "unknown" (and, of the rest, with no strength)
    unknown_rate: float = 0.2
    seed: int = 0
    checkpoint_every: int = 100
    #: images of ``images`` to use (0 = all) and of ``val`` (its center crops)
    limit: int = 0
    val_limit: int = 4
    val_crop: int = 128
    val_strength: float = 0.5
    widths: tuple[int, int, int] = (32, 48, 64)
    #: joint training: the codec the network learns to follow, its levels, and the start model
    codec: str | None = None
    levels: tuple[str, ...] = ()
    init: Path | None = None
    clean_rate: float = 0.0
    #: a machine whose multi-level features of the restored crop should match the clean
    #: crop's (CoTAM-style), and that term's weight: PSNR alone smooths what machines read
    machine: str | None = None
    machine_weight: float = 0.0
    #: torch CPU threads (0: torch's default); not part of a checkpoint's identity
    threads: int = 0

    def check(self) -> None:
        low, high = self.strengths
        if not 0.0 <= low <= high <= 1.0:
            raise RestoreTrainError(f"strengths {low}..{high} must satisfy 0 <= low <= high <= 1")
        if self.crop < 8 or self.batch < 1 or self.steps < 1 or self.checkpoint_every < 1:
            raise RestoreTrainError("crop must be >= 8; batch, steps, checkpoint-every >= 1")
        if not 0.0 <= self.unknown_rate <= 1.0:
            raise RestoreTrainError(f"unknown rate must be in [0, 1], got {self.unknown_rate}")
        if not self.degradations:
            raise RestoreTrainError("no degradations to train on")
        for name in self.degradations:
            get_degradation(name)  # an unknown name is a one-line error
        if not 0.0 <= self.clean_rate < 1.0:
            raise RestoreTrainError(f"clean rate must be in [0, 1), got {self.clean_rate}")
        if self.codec is not None:
            codec = get_codec(self.codec)  # unknown or unavailable: a one-line error
            for level in self.levels:
                codec.knob.parse(level, codec.name)
        elif self.levels or self.clean_rate:
            raise RestoreTrainError("--levels and --clean-rate need --codec (joint training)")
        if (self.machine is None) != (self.machine_weight == 0.0) or self.machine_weight < 0:
            raise RestoreTrainError("--machine and a positive --machine-weight go together")
        if self.init is not None and not Path(self.init).is_file():
            raise RestoreTrainError("initial model file not found", self.init)

    def coding_levels(self) -> tuple[str, ...]:
        """The levels joint training codes at: the given ones, else the codec's ladder."""
        if self.codec is None:
            return ()
        return self.levels or get_codec(self.codec).ladder

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (``steps`` may grow: training longer)."""
        return identity_of(self)

    def vocabulary(self) -> tuple[str, ...]:
        """Every registered degradation, not just the trained ones: the file's ids stay valid
        when training on a subset, and an untrained type falls back to sensible FiLM zeros."""
        return (UNKNOWN, *all_degradations())
