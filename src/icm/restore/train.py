"""Training the restoration network on clean photos with synthetic degradations, resumable.

Every image is loaded once into memory. Each step draws, from a generator seeded by
``(seed, step)`` alone, a batch of samples: a random image, a random context window (from the
crop size up to 256 px, so scene-sized damage such as rain and haze looks as it does on a whole
picture), one of the chosen degradations at a random strength with its own seed, applied to the
context, then a random ``crop`` x ``crop`` window of both versions, flipped at random. The
network restores the degraded crop, told the type and strength, and the loss is L1 (plus
``mse_weight`` times MSE) to the clean crop.

A share of samples (``unknown_rate``) is shown as type "unknown" with no strength, and as many
again (of the rest) with the type but no strength, as classifier-free guidance drops its
condition: the model then also serves images that come with no metadata.

**Joint training** (LL-ICM's second stage): with ``codec`` set, every degraded crop is also
coded and decoded by that codec at a random level of ``levels`` before the network sees it, so
the network learns to remove the degradation and the coding artefacts together. It starts from
``init`` (a trained restorer, usually the shipped one). ``clean_rate`` of the samples are left
undegraded and labelled "unknown at strength 0": the condition a decoder gives an image the
encoder's recogniser called clean, where only the coding artefacts are left to remove. Crops
are coded at the origin of the crop, so the codec's block grid lines up with the network's
stride-8 grid exactly as it does on a whole image coded from its top-left corner.

Because a step's batch depends only on ``(seed, step)`` and the learning rate only on the step,
a run resumed from a checkpoint (model, optimiser, step; written atomically every
``checkpoint_every`` steps beside the output) ends with the same weights as one never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from icm.codecs import get_codec
from icm.degrade import get_degradation, list_degradations
from icm.errors import IcmError
from icm.machines.features import MachineFeatures, feature_distortion
from icm.metrics import psnr
from icm.restore.files import RestoreInfo, load_model, save_model
from icm.restore.network import UNKNOWN, Architecture, RestoreNet, parameter_count
from icm.training import Progress, Schedule, Settings, load_photos, resume, run

#: the largest context window a degradation is applied to before cropping
MAX_CONTEXT = 256


class RestoreTrainError(IcmError):
    """Training input that cannot be used: no images, a bad setting, a stale checkpoint."""


def all_degradations() -> tuple[str, ...]:
    return tuple(cls.name for cls in list_degradations())


@dataclass
class RestoreTrainConfig:
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
        record = asdict(self)
        record["out"] = str(self.out)
        record["init"] = None if self.init is None else str(self.init)
        for key in ("images", "degradations", "strengths", "widths", "levels"):
            record[key] = list(record[key])
        for volatile in ("steps", "checkpoint_every"):
            record.pop(volatile)
        return record

    def vocabulary(self) -> tuple[str, ...]:
        """Every registered degradation, not just the trained ones: the file's ids stay valid
        when training on a subset, and an untrained type falls back to sensible FiLM zeros."""
        return (UNKNOWN, *all_degradations())


@dataclass
class Batch:
    degraded: torch.Tensor  # (B, 3, crop, crop) in [0, 1]
    clean: torch.Tensor
    type_ids: torch.Tensor
    strengths: torch.Tensor
    strength_known: torch.Tensor


@dataclass
class TrainResult:
    out: Path
    steps: int
    resumed_from: int
    losses: list[float]
    val_before: dict[str, float] | None
    val_after: dict[str, float] | None
    wall_s: float
    parameters: int
    images: int


def load_images(specs: Sequence[str], crop: int, limit: int = 0) -> list[np.ndarray]:
    """The training photos, each at least a crop on its shorter side."""
    return load_photos(specs, crop, limit, RestoreTrainError)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0


def sample_batch(images: Sequence[np.ndarray], config: RestoreTrainConfig, net: RestoreNet,
                 step: int) -> Batch:
    """The batch of ``step``: a pure function of ``(config.seed, step)`` and the images."""
    rng = np.random.default_rng([config.seed, step])
    degraded, clean, type_ids, strengths, known = [], [], [], [], []
    crop, levels = config.crop, config.coding_levels()
    for _ in range(config.batch):
        pixels = images[int(rng.integers(len(images)))]
        height, width = pixels.shape[:2]
        largest = min(height, width, max(MAX_CONTEXT, crop))
        side = round(math.exp(rng.uniform(math.log(crop), math.log(largest))))
        side = min(max(side, crop), largest)
        top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
        context = np.ascontiguousarray(pixels[top : top + side, left : left + side])
        name = config.degradations[int(rng.integers(len(config.degradations)))]
        strength = float(rng.uniform(*config.strengths))
        seed = int(rng.integers(2**31))
        is_clean = rng.random() < config.clean_rate
        damaged = context if is_clean else get_degradation(name).apply(context, strength, seed)
        y, x = int(rng.integers(side - crop + 1)), int(rng.integers(side - crop + 1))
        flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
        hide_type, hide_strength = rng.random() < config.unknown_rate, rng.random()
        hide_strength = hide_type or hide_strength < config.unknown_rate
        windows = [_window(source, y, x, crop, flip_x, flip_y) for source in (context, damaged)]
        if levels:
            level = levels[int(rng.integers(len(levels)))]
            windows[1] = coded_round_trip(windows[1], str(config.codec), level)
        clean.append(to_tensor(windows[0]))
        degraded.append(to_tensor(windows[1]))
        if is_clean:  # what a decoder is told for an image the recogniser called clean
            name, strength, hide_type, hide_strength = UNKNOWN, 0.0, True, False
        type_ids.append(0 if hide_type else net.type_index(name))
        strengths.append(0.0 if hide_strength else strength)
        known.append(0.0 if hide_strength else 1.0)
    return Batch(torch.stack(degraded), torch.stack(clean), torch.tensor(type_ids),
                 torch.tensor(strengths), torch.tensor(known))


def _window(source: np.ndarray, y: int, x: int, crop: int, flip_x: bool,
            flip_y: bool) -> np.ndarray:
    window = source[y : y + crop, x : x + crop]
    window = window[:, ::-1] if flip_x else window
    return np.ascontiguousarray(window[::-1] if flip_y else window)


def coded_round_trip(rgb: np.ndarray, codec: str, level: str) -> np.ndarray:
    """``rgb`` as the decoder of ``codec@level`` gives it back."""
    coder = get_codec(codec)
    return coder.decode(coder.encode(rgb, level))


def restoration_loss(net: RestoreNet, batch: Batch, mse_weight: float,
                     features: MachineFeatures | None = None,
                     machine_weight: float = 0.0) -> torch.Tensor:
    restored = net(batch.degraded, batch.type_ids, batch.strengths, batch.strength_known)
    loss = F.l1_loss(restored, batch.clean)
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(restored, batch.clean)
    if features is not None and machine_weight:
        loss = loss + machine_weight * feature_distortion(features, restored, batch.clean).mean()
    return loss


@dataclass
class ValCase:
    name: str
    clean: np.ndarray
    degraded: np.ndarray
    strength: float


def val_cases(config: RestoreTrainConfig) -> list[ValCase]:
    """Center crops of the first ``val_limit`` val photos, each with every trained degradation
    at ``val_strength`` and a fixed seed: the same cases before and after training. Joint
    training codes each case at the middle of its levels, as the network will meet it."""
    if not config.val:
        return []
    crops = [_center(pixels, config.val_crop)
             for pixels in load_images([config.val], 8, config.val_limit)]
    levels = config.coding_levels()
    cases = []
    for name in config.degradations:
        for i, clean in enumerate(crops):
            damaged = get_degradation(name).apply(clean, config.val_strength, 1000 + i)
            if levels:
                damaged = coded_round_trip(damaged, str(config.codec), levels[len(levels) // 2])
            cases.append(ValCase(name, clean, damaged, config.val_strength))
    return cases


def _center(pixels: np.ndarray, side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    h, w = min(side, height), min(side, width)
    top, left = (height - h) // 2, (width - w) // 2
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


def evaluate(net: RestoreNet, cases: Sequence[ValCase]) -> dict[str, float]:
    """Mean PSNR (dB) to clean of the restored val crops, per degradation, told the true type
    and strength; ``"degraded"`` holds the same mean for the unrestored crops."""
    from icm.restore.api import run_network

    per: dict[str, list[float]] = {}
    degraded: list[float] = []
    for case in cases:
        restored = run_network(net, case.degraded, case.name, case.strength)
        per.setdefault(case.name, []).append(psnr(case.clean, restored))
        degraded.append(psnr(case.clean, case.degraded))
    result = {name: round(float(np.mean(values)), 3) for name, values in per.items()}
    result["mean"] = round(float(np.mean([v for vs in per.values() for v in vs])), 3)
    result["degraded"] = round(float(np.mean(degraded)), 3)
    return result


def schedule(config: RestoreTrainConfig) -> Schedule:
    """Cosine decay to 5% of ``lr`` from the first step."""
    return Schedule(config.lr, config.steps, decay_share=1.0, floor=0.05)


@dataclass
class _RestoreTask:
    """The restorer's batches and loss, for the shared loop."""

    net: RestoreNet
    images: Sequence[np.ndarray]
    config: RestoreTrainConfig
    features: MachineFeatures | None

    def batch(self, step: int) -> Batch:
        return sample_batch(self.images, self.config, self.net, step)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return restoration_loss(self.net, batch, self.config.mse_weight, self.features,
                                self.config.machine_weight), {}


def train_restorer(config: RestoreTrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or resume training) a restoration network; write it to ``config.out``."""
    config.check()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    net = _start_network(config)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    images = load_images(config.images, config.crop, config.limit)
    features = MachineFeatures(config.machine) if config.machine else None
    cases = val_cases(config)
    checkpoint = config.out.with_suffix(config.out.suffix + ".ckpt")
    settings = Settings(config.steps, checkpoint, config.identity(), schedule(config),
                        config.checkpoint_every, error=RestoreTrainError)
    resumed = resume(net, optimiser, settings)
    start = resumed.resumed_from
    val_before = evaluate(net, cases) if cases and not start else None
    task = _RestoreTask(net, images, config, features)
    losses = run(task, net, optimiser, settings, progress, resumed=resumed).new_losses
    net.eval()
    val_after = evaluate(net, cases) if cases else None
    wall_s = round(time.perf_counter() - started, 1)
    trained = {"steps": config.steps, "resumed_from": start, "images": list(config.images),
               "image_count": len(images), "val": config.val, "crop": config.crop,
               "batch": config.batch, "lr": config.lr, "seed": config.seed,
               "degradations": list(config.degradations), "strengths": list(config.strengths),
               "unknown_rate": config.unknown_rate, "wall_s": wall_s,
               "val_strength": config.val_strength, "val_before": val_before,
               "val_after": val_after, "last_loss": losses[-1] if losses else None,
               "codec": config.codec, "levels": list(config.coding_levels()),
               "init": None if config.init is None else str(config.init),
               "clean_rate": config.clean_rate, "machine": config.machine,
               "machine_weight": config.machine_weight}
    save_model(config.out, net, RestoreInfo(net.vocabulary, net.arch, trained))
    checkpoint.unlink(missing_ok=True)
    return TrainResult(config.out, config.steps, start, losses, val_before, val_after, wall_s,
                       parameter_count(net), len(images))


def _start_network(config: RestoreTrainConfig) -> RestoreNet:
    """A fresh network, or a copy of ``config.init`` (joint training fine-tunes a restorer)."""
    if config.init is None:
        return RestoreNet(config.vocabulary(), Architecture(widths=tuple(config.widths)))
    return load_model(Path(config.init))[0]
