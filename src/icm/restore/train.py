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

Because a step's batch depends only on ``(seed, step)`` and the learning rate only on the step,
a run resumed from a checkpoint (model, optimiser, step; written atomically every
``checkpoint_every`` steps beside the output) ends with the same weights as one never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from icm.checkpoints import load_checkpoint, save_checkpoint
from icm.degrade import get_degradation, list_degradations
from icm.errors import IcmError
from icm.image.datasets import open_dataset
from icm.metrics import psnr
from icm.restore.files import RestoreInfo, save_model
from icm.restore.network import UNKNOWN, Architecture, RestoreNet, parameter_count

Progress = Callable[[str, int, int], None]

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

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (``steps`` may grow: training longer)."""
        record = asdict(self)
        record["out"] = str(self.out)
        for key in ("images", "degradations", "strengths", "widths"):
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
    """Every photo of every spec, decoded once (training reads crops of them thousands of
    times); images smaller than a crop are skipped."""
    images: list[np.ndarray] = []
    for spec in specs:
        dataset = open_dataset(spec).of_kind("photo")
        if limit:
            dataset = dataset.limit(limit)
        images.extend(pixels for pixels in (image.load() for image in dataset)
                      if min(pixels.shape[:2]) >= crop)
    if not images:
        raise RestoreTrainError(f"no photos of at least {crop}x{crop} px in "
                                f"{', '.join(map(repr, specs))}")
    return images


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0


def sample_batch(images: Sequence[np.ndarray], config: RestoreTrainConfig, net: RestoreNet,
                 step: int) -> Batch:
    """The batch of ``step``: a pure function of ``(config.seed, step)`` and the images."""
    rng = np.random.default_rng([config.seed, step])
    degraded, clean, type_ids, strengths, known = [], [], [], [], []
    crop = config.crop
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
        damaged = get_degradation(name).apply(context, strength, seed)
        y, x = int(rng.integers(side - crop + 1)), int(rng.integers(side - crop + 1))
        flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
        hide_type, hide_strength = rng.random() < config.unknown_rate, rng.random()
        hide_strength = hide_type or hide_strength < config.unknown_rate
        for source, into in ((context, clean), (damaged, degraded)):
            window = source[y : y + crop, x : x + crop]
            window = window[:, ::-1] if flip_x else window
            window = window[::-1] if flip_y else window
            into.append(to_tensor(window))
        type_ids.append(0 if hide_type else net.type_index(name))
        strengths.append(0.0 if hide_strength else strength)
        known.append(0.0 if hide_strength else 1.0)
    return Batch(torch.stack(degraded), torch.stack(clean), torch.tensor(type_ids),
                 torch.tensor(strengths), torch.tensor(known))


def restoration_loss(net: RestoreNet, batch: Batch, mse_weight: float) -> torch.Tensor:
    restored = net(batch.degraded, batch.type_ids, batch.strengths, batch.strength_known)
    loss = F.l1_loss(restored, batch.clean)
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(restored, batch.clean)
    return loss


@dataclass
class ValCase:
    name: str
    clean: np.ndarray
    degraded: np.ndarray
    strength: float


def val_cases(config: RestoreTrainConfig) -> list[ValCase]:
    """Center crops of the first ``val_limit`` val photos, each with every trained degradation
    at ``val_strength`` and a fixed seed: the same cases before and after training."""
    if not config.val:
        return []
    crops = [_center(pixels, config.val_crop)
             for pixels in load_images([config.val], 8, config.val_limit)]
    return [ValCase(name, clean, get_degradation(name).apply(clean, config.val_strength, 1000 + i),
                    config.val_strength)
            for name in config.degradations for i, clean in enumerate(crops)]


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


def learning_rate(config: RestoreTrainConfig, step: int) -> float:
    """Cosine decay to 5% of ``lr`` (a pure function of the step, so resuming repeats it)."""
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / config.steps)))


def train_restorer(config: RestoreTrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or resume training) a restoration network; write it to ``config.out``."""
    config.check()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    net = RestoreNet(config.vocabulary(), Architecture(widths=tuple(config.widths)))
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    images = load_images(config.images, config.crop, config.limit)
    cases = val_cases(config)
    checkpoint = config.out.with_suffix(config.out.suffix + ".ckpt")
    start = _resume(checkpoint, config, net, optimiser)
    val_before = evaluate(net, cases) if cases and not start else None
    losses: list[float] = []
    net.train()
    for step in range(start, config.steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = restoration_loss(net, sample_batch(images, config, net, step), config.mse_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _checkpoint(checkpoint, config, net, optimiser, step + 1)
        if progress:
            progress("training", step + 1, config.steps)
    net.eval()
    val_after = evaluate(net, cases) if cases else None
    wall_s = round(time.perf_counter() - started, 1)
    trained = {"steps": config.steps, "resumed_from": start, "images": list(config.images),
               "image_count": len(images), "val": config.val, "crop": config.crop,
               "batch": config.batch, "lr": config.lr, "seed": config.seed,
               "degradations": list(config.degradations), "strengths": list(config.strengths),
               "unknown_rate": config.unknown_rate, "wall_s": wall_s,
               "val_strength": config.val_strength, "val_before": val_before,
               "val_after": val_after, "last_loss": losses[-1] if losses else None}
    save_model(config.out, net, RestoreInfo(net.vocabulary, net.arch, trained))
    checkpoint.unlink(missing_ok=True)
    return TrainResult(config.out, config.steps, start, losses, val_before, val_after, wall_s,
                       parameter_count(net), len(images))


def _checkpoint(path: Path, config: RestoreTrainConfig, net: RestoreNet,
                optimiser: torch.optim.Optimizer, step: int) -> None:
    save_checkpoint(path, config.identity(), step,
                    {"model": net.state_dict(), "optimiser": optimiser.state_dict()})


def _resume(path: Path, config: RestoreTrainConfig, net: RestoreNet,
            optimiser: torch.optim.Optimizer) -> int:
    """The step to start from: a matching checkpoint's, else 0."""
    state = load_checkpoint(path, config.identity(), RestoreTrainError)
    if state is None:
        return 0
    step = state["step"]
    if step > config.steps:
        raise RestoreTrainError(f"checkpoint is at step {step}, past --steps {config.steps}",
                                path)
    try:
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RestoreTrainError(f"checkpoint does not fit the network ({first}); delete it "
                                "to start over", path) from None
    return step
