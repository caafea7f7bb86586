"""What configures training of ``icm-lic``, without torch: the settings of a run.

The command line reads its options' defaults from :class:`LearnedTrainConfig` on every ``icm``
call, so this module must import cheaply: torch loads with :mod:`icm.learned.train`, and the
network's :class:`~icm.learned.network.Architecture` only when :meth:`LearnedTrainConfig.arch`
is asked for it (the one import inside a function here, for that reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icm.errors import IcmError
from icm.machines.classify import LITE0_TAPS
from icm.training.checkpoints import identity_of

if TYPE_CHECKING:
    from icm.learned.network import Architecture

#: the smallest window side, in the machine's view, whose deepest feature tap is still 2x2
MIN_VIEW = 32
#: ``init`` value naming the model that ships with icm
SHIPPED = "shipped"


class LearnedTrainError(IcmError):
    """Training input that cannot be used: no images, a bad setting, a stale checkpoint."""


@dataclass
class LearnedTrainConfig:
    """One training run's settings. ``icm learned train`` shows these defaults as its own."""

    images: tuple[str, ...] = ("samples",)
    out: Path = Path("icm-lic")
    crop: int = 128
    batch: int = 8
    steps: int = 3000
    lr: float = 5e-4
    #: weight of the machine's feature distortion beside pixel MSE (0 = pixels only)
    alpha: float = 30.0
    machine: str = "classify:efficientnet-lite0"
    #: share of windows given a spatially varying quality map
    spatial_rate: float = 0.5
    seed: int = 0
    checkpoint_every: int = 100
    limit: int = 0
    channels: int = 64
    latent: int = 192
    threads: int = 1
    #: the factor the machine resizes coded photos by (1: distortion at full resolution)
    view_scale: float = 1.0
    #: a model file to start from ('' = a fresh network)
    init: str = ""
    #: the machine's feature taps in the distortion (block indices; 16 = Lite0's head)
    taps: tuple[int, ...] = LITE0_TAPS

    def check(self) -> None:
        if self.crop < 64 or self.crop % 64:
            raise LearnedTrainError(f"crop must be a multiple of 64, got {self.crop}")
        if self.batch < 1 or self.steps < 1 or self.checkpoint_every < 1:
            raise LearnedTrainError("batch, steps and checkpoint-every must be >= 1")
        if self.alpha < 0:
            raise LearnedTrainError(f"alpha must be >= 0, got {self.alpha}")
        if not 0.0 <= self.spatial_rate <= 1.0:
            raise LearnedTrainError(f"spatial rate must be in [0, 1], got {self.spatial_rate}")
        if not 0.0 < self.view_scale <= 1.0:
            raise LearnedTrainError(f"view scale must be in (0, 1], got {self.view_scale}")
        if self.crop * self.view_scale < MIN_VIEW:
            raise LearnedTrainError(
                f"a {self.crop} px crop at view scale {self.view_scale} is under {MIN_VIEW} px; "
                "use a larger --crop")

    def arch(self) -> Architecture:
        from icm.learned.network import Architecture  # torch: see the module docstring

        return Architecture(channels=self.channels, latent=self.latent, hyper=self.channels)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (``steps`` may grow: training longer)."""
        return identity_of(self)
