"""Training our learned codec: rate + lambda x (pixel MSE + alpha x machine feature distortion).

Every image is loaded once into memory. Each step draws, from a generator seeded by
``(seed, step)`` alone, a batch of random ``crop`` x ``crop`` windows (random flips and
quarter turns) and a quality map per window: half of them one quality everywhere, half a
random smooth field around a random base (QmapCompression's recipe), so the model learns both
the global knob and spatial rate. Qualities are continuous in ``[0, levels - 1]``, so the
interpolated gains between trained levels are trained too.

The loss of one window, with ``lambda(q)`` the architecture's lambdas interpolated
geometrically at each latent position's quality::

    bits / pixels + mean(lambda(q) * 255^2 * (x_hat - x)^2) + alpha * mean(lambda(q)) * D_machine

``D_machine`` is the multi-level feature distortion of a frozen machine (EfficientNet-Lite0 by
default): at each tapped stage, the squared error of the decoded window's features against the
pristine window's, over the pristine features' energy, averaged over stages (CoTAM and
Diff-ICMH use such multi-level feature losses). The stages are ``taps``: Lite0's blocks 2, 4
and 10 by default; adding block 15 and the head (16) reaches what the classifier pools.
``alpha = 0`` trains for pixels alone.

The machine's view (``view_scale`` below 1): a classifier reads a photo resized so that its
shorter side is the model's input (224 px for Lite0, so 0.4375 x for a 512 px Kodak photo).
Detail above that view's Nyquist frequency never reaches the model, yet a loss measured at
full resolution pays bits for it. With ``view_scale`` set, both the pixel and the feature
distortion are measured on the window resized by that factor with the machine's own filter
(antialiased bilinear), so the codec learns to drop what the machine cannot see. The rate is
still counted over the full-resolution pixels: those are what the bitstream codes.

Fine-tuning (``init``): training may start from a model file's weights (the shipped model, say)
instead of a fresh network; the architecture is then the file's.

Because a step's batch depends only on ``(seed, step)`` and the learning rate only on the step,
a run resumed from a checkpoint (model, optimiser, step; written atomically every
``checkpoint_every`` steps in the output folder) ends with the same weights as one never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from icm.learned.config import SHIPPED, LearnedTrainConfig, LearnedTrainError
from icm.learned.files import load_model, save_model, shipped_model
from icm.learned.network import LATENT_STRIDE, Architecture, LicNet, parameter_count
from icm.machines.features import MachineFeatures, feature_distortion
from icm.training import Progress, Schedule, Settings, TrainedRun, load_photos, resume, run


@dataclass
class TrainResult(TrainedRun):
    wall_s: float
    parameters: int
    images: int

    def figures(self) -> dict[str, Any]:
        return {"images": self.images, "parameters": self.parameters,
                "wall_s": round(self.wall_s, 1)}


def load_images(specs: Sequence[str], crop: int, limit: int = 0) -> list[np.ndarray]:
    """The training photos, each at least a crop on its shorter side."""
    return load_photos(specs, crop, limit, LearnedTrainError)


def sample_batch(images: Sequence[np.ndarray], config: LearnedTrainConfig, levels: int,
                 step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(windows in [0, 1], 0-based quality maps) of ``step``: a function of (seed, step)."""
    rng = np.random.default_rng([config.seed, step])
    crop, grid = config.crop, config.crop // LATENT_STRIDE
    windows, qmaps = [], []
    for _ in range(config.batch):
        pixels = images[int(rng.integers(len(images)))]
        top = int(rng.integers(pixels.shape[0] - crop + 1))
        left = int(rng.integers(pixels.shape[1] - crop + 1))
        window = pixels[top : top + crop, left : left + crop]
        window = np.rot90(window, int(rng.integers(4)))
        if rng.random() < 0.5:
            window = window[:, ::-1]
        windows.append(np.ascontiguousarray(window.transpose(2, 0, 1)))
        qmaps.append(random_quality_map(rng, grid, levels - 1, rng.random() < config.spatial_rate))
    x = torch.from_numpy(np.stack(windows)).float() / 255.0
    return x, torch.from_numpy(np.stack(qmaps)[:, None]).float()


def random_quality_map(rng: np.random.Generator, grid: int, top: float,
                       spatial: bool) -> np.ndarray:
    """One quality everywhere, or a smooth random field (a 3x3 grid of offsets of up to +-2
    levels, bilinearly upsampled) around a random base, clipped to ``[0, top]``."""
    base = rng.uniform(0, top)
    if not spatial:
        return np.full((grid, grid), base, dtype=np.float32)
    coarse = torch.from_numpy(rng.uniform(-2, 2, size=(1, 1, 3, 3)).astype(np.float32))
    field = F.interpolate(coarse, size=(grid, grid), mode="bilinear", align_corners=True)
    return np.clip(base + field[0, 0].numpy(), 0, top).astype(np.float32)


def lambda_map(arch: Architecture, qmap: torch.Tensor) -> torch.Tensor:
    """The trade-off at each position: the level lambdas interpolated geometrically."""
    logs = torch.log(torch.tensor(arch.lambdas))
    q = qmap.clamp(0, arch.levels - 1)
    low = q.floor().clamp(max=arch.levels - 2)
    frac = q - low
    index = low.long()
    return torch.exp(logs[index] * (1 - frac) + logs[index + 1] * frac)


def machine_view(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` as a machine that resizes by ``scale`` sees it (its antialiased bilinear filter)."""
    if scale >= 1.0:
        return x
    size = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def training_loss(net: LicNet, x: torch.Tensor, qmap: torch.Tensor, alpha: float,
                  features: MachineFeatures | None,
                  view_scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean loss of a batch and its parts (bpp, full-resolution PSNR, machine distortion);
    distortion is measured in the machine's view (see the module docstring)."""
    out = net(x, qmap)
    pixels = x.shape[-2] * x.shape[-1]
    bpp = (out["y_bits"] + out["z_bits"]) / pixels
    lambdas = lambda_map(net.arch, qmap)
    seen, seen_hat = machine_view(x, view_scale), machine_view(out["x_hat"], view_scale)
    per_pixel = F.interpolate(lambdas, size=seen.shape[-2:], mode="nearest")
    squared = (seen_hat - seen).pow(2).mean(dim=1, keepdim=True)
    loss = bpp + (per_pixel * squared).mean(dim=(1, 2, 3)) * 255.0**2
    full = (out["x_hat"].detach() - x).pow(2).mean()
    parts = {"bpp": float(bpp.mean().detach()),
             "psnr": float(10 * torch.log10(1 / full.clamp_min(1e-10)))}
    if features is not None and alpha > 0:
        machine = feature_distortion(features, seen_hat, seen)
        loss = loss + alpha * lambdas.mean(dim=(1, 2, 3)) * machine
        parts["machine"] = float(machine.detach().mean())
    return loss.mean(), parts


def schedule(config: LearnedTrainConfig) -> Schedule:
    """Warm up over 100 steps, hold, then decay by 10x over the last fifth (cosine)."""
    return Schedule(config.lr, config.steps, warmup=100, decay_share=0.2, floor=0.1)


@dataclass
class _CodecTask:
    """The learned codec's batches and loss, for the shared loop."""

    net: LicNet
    images: Sequence[np.ndarray]
    config: LearnedTrainConfig
    features: MachineFeatures | None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_batch(self.images, self.config, self.net.arch.levels, step)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor,
                                                                     dict[str, float]]:
        x, qmap = batch
        return training_loss(self.net, x, qmap, self.config.alpha, self.features,
                             self.config.view_scale)


def train(config: LearnedTrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or resume) and write the hash-named model file into ``config.out``."""
    config.check()
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    images = load_images(config.images, config.crop, config.limit)
    net, lineage = initial_network(config)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    settings = Settings(config.steps, out / "train.ckpt", config.identity(), schedule(config),
                        config.checkpoint_every, step_seed=config.seed, clip_norm=1.0,
                        final_checkpoint=True, error=LearnedTrainError)
    resumed = resume(net, optimiser, settings)
    features = MachineFeatures(config.machine, config.taps) if config.alpha > 0 else None
    task = _CodecTask(net, images, config, features)
    outcome = run(task, net, optimiser, settings, progress, resumed=resumed, describe=_describe)
    trained = {**_summary(config, len(images), outcome.wall_s, outcome.losses), **lineage}
    path = save_model(out, net.eval(), trained)
    return TrainResult(path, config.steps, outcome.resumed_from, outcome.losses,
                       outcome.wall_s, parameter_count(net), len(images))


def initial_network(config: LearnedTrainConfig) -> tuple[LicNet, dict[str, Any]]:
    """A fresh network of the configured sizes, or the weights of ``config.init``; and the
    lineage for the training record: for a fine-tune, the model it started from and that
    model's own record, so a shipped model's file tells its whole training budget."""
    path = _init_path(config.init)
    if path is None:
        torch.manual_seed(config.seed)
        return LicNet(config.arch()), {"init": None}
    net, info = load_model(path)
    return net, {"init": path.name, "init_trained": info.trained}


def _init_path(init: str) -> Path | None:
    """The model file training starts from (None: a fresh network)."""
    if not init:
        return None
    if init != SHIPPED:
        return Path(init).expanduser()
    path = shipped_model()
    if path is None:
        raise LearnedTrainError("--init shipped: no icm-lic model ships in this installation")
    return path


def _describe(loss: float, parts: dict[str, float]) -> str:
    text = f"loss {loss:.3f} bpp {parts['bpp']:.3f} psnr {parts['psnr']:.2f}"
    return text + (f" machine {parts['machine']:.3f}" if "machine" in parts else "")


def _summary(config: LearnedTrainConfig, images: int, wall: float,
             losses: list[float]) -> dict[str, Any]:
    tail = losses[-100:]
    return {"steps": config.steps, "wall_s": round(wall, 1), "threads": config.threads,
            "crop": config.crop, "batch": config.batch, "lr": config.lr,
            "alpha": config.alpha, "machine": config.machine if config.alpha > 0 else None,
            "data": list(config.images), "images": images, "seed": config.seed,
            "view_scale": config.view_scale,
            "taps": list(config.taps) if config.alpha > 0 else None,
            "final_loss": round(sum(tail) / max(len(tail), 1), 4)}
