"""Training the pre-editor through the codec proxy, resumable and exact on resume.

Each step draws, from a generator seeded by ``(seed, step)`` alone, one proxy family (in
turn), one level of it and a batch of square crops of photos already fitted to the
machine's input (flipped at random). The editor changes the crops, the proxy codes them, and
the loss is

    proxy bits per pixel + lambda x machine distortion + pixel term,

divided by what the unedited crops cost at the same level (so every level weighs the same, 1
meaning "no better than not editing"), the machine distortion being the KL of the
classifier's output on the decoded crop from its output on the unedited one, plus the multi-
level feature distortion (:mod:`icm.machines.features`), both against the *unedited* crop;
the pixel term (MSE of the edit, per 100 in 8-bit units) keeps the edited image a
photograph.

**Lambda is the codec's own slope.** An edit is only worth making if it saves more bits per
unit of machine distortion than coding the plain crop a little coarser would; any other
edit is beaten by simply choosing another level. So each step measures, without gradients,
the proxy's bits and distortion of the unedited batch at the level and at steps
``2 ** (slope_gap / 6)`` coarser, and weighs distortion by that exchange rate (clamped to
``slope_bounds``). Fine levels, where bits buy little distortion, get a large lambda and an
editor close to the identity; coarse ones a smaller lambda. Because rate and distortion are
both measured with the proxy, the proxy's rate scale cancels.

A run resumed from its checkpoint ends with the same weights as one never stopped (the
shared loop, :mod:`icm.training`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from icm.image.resample import resize
from icm.machines import get_machine
from icm.machines.classify import LITE0_TAPS
from icm.machines.features import LITE0_HEAD, MachineFeatures, relative_distance
from icm.preedit.api import importance_of
from icm.preedit.config import (
    TRAIN_LEVELS,
    PreeditError,
    PreeditTrainConfig,
    condition,
    step_tables,
)
from icm.preedit.files import EditorInfo, save_model
from icm.preedit.network import Architecture, EditorNet, parameter_count
from icm.preedit.proxy import CodecProxy
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

#: the levels the held-out figures are measured at, per family
VAL_LEVELS = {"jpeg": (10, 30, 60), "transform": (42, 37, 32)}


@dataclass
class Batch:
    crops: torch.Tensor  # (B, 3, crop, crop) in [0, 1]
    importance: torch.Tensor  # (B, 1, rows, cols): the machine's relative block map
    tables: torch.Tensor  # (B, 2, 8, 8)
    conditions: torch.Tensor  # (B, 2)


@dataclass
class TrainResult(TrainedRun):
    wall_s: float
    parameters: int
    images: int
    val_before: dict[str, float] | None
    val_after: dict[str, float] | None
    curve: list[dict[str, float]]

    def figures(self) -> dict[str, Any]:
        return {"images": self.images, "parameters": self.parameters, "wall_s": self.wall_s,
                "val_before": self.val_before, "val_after": self.val_after,
                "curve": self.curve}


class MachineOutputs:
    """The classifier's taps and logits of crops in [0, 1] in one pass (differentiable)."""

    def __init__(self, machine: str) -> None:
        self.features = MachineFeatures(machine, (*LITE0_TAPS, LITE0_HEAD))

    def __call__(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        taps = self.features(x)
        net = self.features.module
        logits = net._fc(net._avg_pooling(taps[-1]).flatten(1))
        return taps, logits


def distortion(outputs: MachineOutputs, reference: tuple[list[torch.Tensor], torch.Tensor],
               decoded: torch.Tensor, feature_weight: float) -> torch.Tensor:
    """Per crop: KL(reference || decoded) of the class probabilities plus ``feature_weight``
    x the mean relative squared distance of the taps."""
    taps, logits = outputs(decoded)
    ref_taps, ref_logits = reference
    kl = F.kl_div(logits.log_softmax(-1), ref_logits.log_softmax(-1), log_target=True,
                  reduction="none").sum(-1)
    return kl + feature_weight * relative_distance(taps, ref_taps)


def fitted_photos(config: PreeditTrainConfig, specs: Sequence[str], limit: int
                  ) -> list[np.ndarray]:
    """The photos resampled as ``+fit`` would resample them for the machine (the scale the
    editor will meet), each at least a crop on its shorter side."""
    machine = get_machine(config.machine)
    photos = []
    for pixels in load_photos(specs, 8, limit, PreeditError):
        width, height = machine.fit_size(pixels)
        if min(width, height) < config.crop:
            scale = config.crop / min(width, height)
            width, height = round(width * scale), round(height * scale)
        photos.append(pixels if (height, width) == pixels.shape[:2]
                      else resize(pixels, max(width, config.crop), max(height, config.crop)))
    return photos


@dataclass
class Crops:
    """Training crops with their machine importance maps, computed once: the Fisher map
    takes a forward and eight backward passes, which every step could not afford."""

    pixels: torch.Tensor  # (N, 3, crop, crop)
    importance: torch.Tensor  # (N, 1, rows, cols)


def machine_crops(photos: Sequence[np.ndarray], config: PreeditTrainConfig, per_photo: int,
                  seed: int, progress: Progress | None = None) -> Crops:
    """``per_photo`` crops of each photo (the centre first, then places drawn from ``seed``)
    and their importance maps."""
    rng = np.random.default_rng([seed, 7])
    pixels, maps = [], []
    total = len(photos) * per_photo
    for pi, photo in enumerate(photos):
        height, width = photo.shape[:2]
        for index in range(per_photo):
            if index == 0:
                top, left = (height - config.crop) // 2, (width - config.crop) // 2
            else:
                top = int(rng.integers(height - config.crop + 1))
                left = int(rng.integers(width - config.crop + 1))
            window = np.ascontiguousarray(photo[top : top + config.crop,
                                                left : left + config.crop])
            pixels.append(to_tensor(window))
            maps.append(torch.from_numpy(importance_of(window, config.machine))[None])
            if progress is not None:
                progress("importance maps", pi * per_photo + index + 1, total)
    return Crops(torch.stack(pixels), torch.stack(maps))


def level_batch(crops: torch.Tensor, importance: torch.Tensor, family: str,
                level: float) -> Batch:
    tables = torch.from_numpy(step_tables(family, level))[None].expand(len(crops), -1, -1, -1)
    conditions = torch.tensor([condition(family, level)]).expand(len(crops), -1)
    return Batch(crops, importance, tables.contiguous(), conditions.contiguous())


def sample_batch(crops: Crops, config: PreeditTrainConfig, step: int) -> Batch:
    """The batch of ``step``: a pure function of ``(config.seed, step)`` and the crops."""
    rng = np.random.default_rng([config.seed, step])
    family = config.families[step % len(config.families)]
    low, high = TRAIN_LEVELS[family]
    level = float(rng.integers(low, high + 1))
    chosen = rng.integers(len(crops.pixels), size=config.batch)
    flips = rng.random(config.batch) < 0.5
    pixels, maps = crops.pixels[chosen].clone(), crops.importance[chosen].clone()
    pixels[flips], maps[flips] = pixels[flips].flip(-1), maps[flips].flip(-1)
    return level_batch(pixels, maps, family, level)


class EditorLoss:
    """Rate + slope-weighted machine distortion + pixel term, with its parts."""

    def __init__(self, config: PreeditTrainConfig) -> None:
        self.config = config
        self.outputs = MachineOutputs(config.machine)
        self.proxy = CodecProxy()

    def slope(self, batch: Batch, reference: Any) -> tuple[float, float]:
        """Proxy bits saved per unit of machine distortion added by coding the plain crops
        ``slope_gap`` QPs coarser (the exchange rate an edit must beat), and the plain
        crops' own cost at the level at that rate (what the loss is measured against)."""
        coarser = batch.tables * 2.0 ** (self.config.slope_gap / 6.0)
        with torch.no_grad():
            figures = []
            for tables in (batch.tables, coarser):
                decoded, bpp = self.proxy(batch.crops, tables)
                figures.append((float(bpp.mean()), float(self.distort(reference, decoded).mean())))
        (rate_a, dist_a), (rate_b, dist_b) = figures
        low, high = self.config.slope_bounds
        weight = high if dist_b <= dist_a else \
            min(max((rate_a - rate_b) / (dist_b - dist_a), low), high)
        return weight, rate_a + weight * dist_a

    def distort(self, reference: Any, decoded: torch.Tensor) -> torch.Tensor:
        return distortion(self.outputs, reference, decoded, self.config.feature_weight)

    def __call__(self, net: EditorNet, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            reference = self.outputs(batch.crops)
        weight, plain = self.slope(batch, reference)
        edited = net(batch.crops, batch.conditions, batch.importance)
        decoded, bpp = self.proxy(edited, batch.tables)
        machine = self.distort(reference, decoded)
        pixel = (edited - batch.crops).pow(2).mean(dim=(1, 2, 3)) * 255.0**2 / 100.0
        cost = (bpp + weight * machine + self.config.pixel_weight * pixel).mean()
        loss = cost / max(plain, 1e-6)  # 1 for the unedited crops, at every level
        return loss, {"bpp": float(bpp.detach().mean()),
                      "machine": float(machine.detach().mean()), "lambda": weight,
                      "pixel": float(pixel.detach().mean())}


def val_batches(crops: Crops, families: Sequence[str]) -> list[Batch]:
    """Held-out crops at a few fixed levels of each family."""
    return [level_batch(crops.pixels, crops.importance, family, level)
            for family in families for level in VAL_LEVELS[family]]


def evaluate(net: EditorNet, loss: EditorLoss, batches: Sequence[Batch]) -> dict[str, float]:
    """Mean loss and its parts over the held-out batches (the editor in eval mode)."""
    net.eval()
    totals: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in batches:
            value, parts = loss(net, batch)
            for key, figure in {"loss": float(value), **parts}.items():
                totals.setdefault(key, []).append(figure)
    net.train()
    return {key: round(float(np.mean(values)), 5) for key, values in totals.items()}


@dataclass
class _EditorTask:
    net: EditorNet
    crops: Crops
    config: PreeditTrainConfig
    loss_fn: EditorLoss

    def batch(self, step: int) -> Batch:
        return sample_batch(self.crops, self.config, step)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss_fn(self.net, batch)


def _describe(loss: float, parts: Any) -> str:
    return (f"loss {loss:.3f} bpp {parts['bpp']:.3f} machine {parts['machine']:.4f} "
            f"lambda {parts['lambda']:.2f}")


def train_editor(config: PreeditTrainConfig, val: Sequence[str] = (),
                 progress: Progress | None = None) -> TrainResult:
    """Train (or resume) a pre-editor; write ``config.out/preedit-<hash>.safetensors``."""
    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    net = EditorNet(Architecture(config.width, config.blocks))
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    photos = fitted_photos(config, config.images, config.limit)
    loss_fn = EditorLoss(config)
    crops = machine_crops(photos, config, config.crops_per_photo, config.seed, progress)
    held_out = val_batches(machine_crops(fitted_photos(config, val, 0), config, 1, 0),
                           config.families) if val else []
    config.out.mkdir(parents=True, exist_ok=True)
    checkpoint = config.out / "preedit.ckpt"
    settings = Settings(config.steps, checkpoint, config.identity(),
                        Schedule(config.lr, config.steps, warmup=20, decay_share=0.5),
                        config.checkpoint_every, step_seed=config.seed, clip_norm=1.0,
                        error=PreeditError)
    resumed = resume(net, optimiser, settings)
    val_before = resumed.extra.get("val_before")
    if held_out and val_before is None:
        val_before = evaluate(net, loss_fn, held_out) if not resumed.resumed_from else None
    curve: list[dict[str, float]] = list(resumed.extra.get("curve", []))

    def validate(done: int) -> None:
        if held_out and done % config.val_every == 0 and done < config.steps:
            curve.append({"step": done, **evaluate(net, loss_fn, held_out)})

    task = _EditorTask(net, crops, config, loss_fn)
    outcome = run(task, net, optimiser, settings, progress, resumed=resumed,
                  describe=_describe, after_step=validate,
                  extra_state=lambda: {"curve": curve, "val_before": val_before})
    net.eval()
    val_after = evaluate(net, loss_fn, held_out) if held_out else None
    if val_after is not None:
        curve.append({"step": config.steps, **val_after})
    wall_s = round(time.perf_counter() - started, 1)
    trained = {"steps": config.steps, "machine": config.machine,
               "families": list(config.families), "images": list(config.images),
               "image_count": len(photos), "val": list(val), "crop": config.crop,
               "crops_per_photo": config.crops_per_photo,
               "batch": config.batch, "lr": config.lr, "seed": config.seed,
               "pixel_weight": config.pixel_weight, "feature_weight": config.feature_weight,
               "slope_gap": config.slope_gap, "slope_bounds": list(config.slope_bounds),
               "wall_s": round(outcome.wall_s, 1), "threads": torch.get_num_threads(),
               "val_before": val_before, "val_after": val_after, "curve": curve,
               "losses": [round(v, 5) for v in outcome.losses]}
    path = save_model(config.out, net, EditorInfo(net.arch, config.machine, trained))
    checkpoint.unlink(missing_ok=True)
    return TrainResult(path, config.steps, resumed.resumed_from, outcome.new_losses, wall_s,
                       parameter_count(net), len(photos), val_before, val_after, curve)
