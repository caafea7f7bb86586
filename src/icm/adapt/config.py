"""What an adapter's training run is: the machine, codecs and levels, photos and views, the
objective's weights and the early-stopping habits (documented in :mod:`icm.adapt.train`).

Torch-free, so the command line reads its defaults from here without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm.codecs import get_codec
from icm.training.checkpoints import identity_of


@dataclass(frozen=True)
class ViewPlan:
    """How photos become views: how many per photo, and window sides as multiples of the
    machine's input side (0: the whole photo). Views are spread evenly over the scales; a
    window larger than the photo shrinks to its shorter side."""

    views: int = 6
    scales: tuple[float, ...] = (1.0, 1.5, 2.0)
    seed: int = 0



#: low-rate levels by default: where the generalization gap is
DEFAULT_LEVELS = {
    "jpeg": ("q5", "q10", "q20", "q35"),
    "hevc": ("qp47", "qp42", "qp37", "qp32"),
    "avif": ("q5", "q15", "q25", "q40"),
    "webp": ("q5", "q15", "q30", "q50"),
    "vvc": ("qp50", "qp45", "qp40", "qp35"),
}

@dataclass
class TrainConfig:
    machine: str = "classify:efficientnet-lite0"
    codecs: tuple[str, ...] = ("jpeg", "hevc", "avif")
    images: str = "samples"
    #: validation images; None: ``val_share`` of the training photos are held out instead
    val: str | None = None
    out: Path = Path("adapter.safetensors")
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    conditioned: bool = True
    #: at most this many steps; early stopping on validation picks the state kept
    steps: int = 400
    batch: int = 16
    lr: float = 1e-3
    kl_weight: float = 1.0
    feature_weight: float = 0.0
    anchor_weight: float = 0.5
    unknown_rate: float = 0.2
    seed: int = 0
    checkpoint_every: int = 50
    limit: int = 0
    #: views per photo, and their window sides as multiples of the input side (0: whole photo)
    views: int = 6
    scales: tuple[float, ...] = (1.0, 1.5, 2.0)
    val_share: float = 0.2
    eval_every: int = 25
    #: evaluations without a new best before stopping; 0: run every step, keep the last state
    patience: int = 4
    #: validation samples read at each evaluation (a fixed subset; the gate reads them all)
    val_rows: int = 480
    gate: bool = True
    #: bucket rates per pixel of the machine's input (False: per file pixel, the old way)
    input_buckets: bool = True
    #: also fine-tune every encoder weight (at ``lr * encoder_lr_scale``): the reference that
    #: estimates the whole generalization gap, against which adapters are judged
    tune_encoder: bool = False
    encoder_lr_scale: float = 0.1
    #: where coded views are kept between runs (None: computed afresh)
    cache: Path | None = None
    #: the first CNN stage with an adapter: the stages before stay plain, and their output is
    #: computed once per view (CPU training costs about a fifth). ViTs ignore it.
    first_stage: int = 2

    def levels_of(self, codec: str) -> tuple[str, ...]:
        if codec in self.levels:
            return self.levels[codec]
        if codec in DEFAULT_LEVELS:
            return DEFAULT_LEVELS[codec]
        return tuple(get_codec(codec).ladder[:4])

    def jobs(self) -> list[tuple[str, str]]:
        return [(codec, level) for codec in self.codecs for level in self.levels_of(codec)]

    def plan(self) -> ViewPlan:
        return ViewPlan(self.views, tuple(self.scales), self.seed)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (the cache only saves time)."""
        return identity_of(self, cache=None,
                           levels={c: list(self.levels_of(c)) for c in self.codecs})
