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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from icm.codecs import get_codec
from icm.degrade import get_degradation
from icm.machines.features import MachineFeatures, feature_distortion
from icm.metrics import psnr
from icm.restore.config import UNKNOWN, RestoreTrainConfig, RestoreTrainError
from icm.restore.files import RestoreInfo, load_model, save_model
from icm.restore.network import Architecture, RestoreNet, parameter_count
from icm.training import (
    Progress,
    Schedule,
    Settings,
    TrainedRun,
    load_photos,
    resume,
    run,
    to_tensor,
)

#: the largest context window a degradation is applied to before cropping
MAX_CONTEXT = 256




@dataclass
class Batch:
    degraded: torch.Tensor  # (B, 3, crop, crop) in [0, 1]
    clean: torch.Tensor
    type_ids: torch.Tensor
    strengths: torch.Tensor
    strength_known: torch.Tensor


@dataclass
class TrainResult(TrainedRun):
    val_before: dict[str, float] | None
    val_after: dict[str, float] | None
    wall_s: float
    parameters: int
    images: int

    def figures(self) -> dict[str, Any]:
        return {"images": self.images, "parameters": self.parameters, "wall_s": self.wall_s,
                "val_before": self.val_before, "val_after": self.val_after}


def load_images(specs: Sequence[str], crop: int, limit: int = 0) -> list[np.ndarray]:
    """The training photos, each at least a crop on its shorter side."""
    return load_photos(specs, crop, limit, RestoreTrainError)


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
    if config.threads:
        torch.set_num_threads(config.threads)
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
