"""The editor: a compact network that decides, pixel by pixel, how much detail a photo keeps
before a standard codec codes it.

It can only take detail away: its answer is two masks in [0, 1] that blend each pixel
towards a lightly (Gaussian sigma 1) and a strongly (sigma 2.5) smoothed copy of the photo.
Detail the machine ignores is what a block-transform codec spends most bits on (its high-
frequency coefficients), so an editor that removes it where the machine does not look saves
bits, and one that cannot add anything cannot learn to fight the codec's own quantisation
noise (a free-form residual trained through a straight-through quantiser did: it sharpened,
and the bits rose). The masks' network works at a quarter of the resolution (pixel-
unshuffled, so no pixel is thrown away) and answers one value per 4x4 patch, interpolated
bilinearly: masks that changed from pixel to pixel wrote noise into the photo, and the bits
rose. Its last convolution starts at zero, so an untrained editor returns its input exactly.
Where the machine looks, it is told: the machine's Fisher block map (the weights ``for``
allocates by, :mod:`icm.importance.fisher`) is an input beside the pixels. An editor that
had to learn a classifier's attention from a few dozen photos did not, at a CPU budget: it
learned to leave everything alone, while the same smoothing steered by the Fisher map
lowered the training loss (docs/preedit.md). Each residual block is modulated (FiLM) by the
condition (:func:`icm.preedit.config.condition`: the level's quantiser step and the codec
family) and by a summary of the whole picture, so one model serves every level of every
codec it was trained for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: the condition's size: (scaled log2 step, is-JPEG)
CONDITION = 2
SHUFFLE = 4
#: the Gaussian widths (px) of the smoothed copies the masks blend towards
SIGMAS = (1.0, 2.5)
#: the block (px) of the machine's importance map the editor is given
IMPORTANCE_BLOCK = 16
#: log2 importance below the picture's typical block (clipped here); unread blocks get the top
IMPORTANCE_RANGE = (-4.0, 8.0)


def relative_importance(weights: np.ndarray) -> np.ndarray:
    """A block map of the machine's weights (its Fisher diagonal's block means) as the
    editor's input: ``log2(W / w)`` scaled by 1/4, ``W`` the geometric mean of the blocks the
    machine reads, so 0 is a typical block, positive is less important, and blocks it never
    reads get the top of the range. The scale of ``w`` (which differs by photo) drops out."""
    weights = np.asarray(weights, dtype=np.float64)
    read = weights > 0
    low, high = IMPORTANCE_RANGE
    if not read.any():
        return np.full(weights.shape, high / 4.0, dtype=np.float32)
    typical = np.exp(np.mean(np.log(weights[read])))
    relative = np.where(read, np.log2(typical / np.where(read, weights, 1.0)), high)
    return (np.clip(relative, low, high) / 4.0).astype(np.float32)


@functools.cache
def blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size): multiplying a line of pixels by it blurs the line by a Gaussian of
    ``sigma``, edges replicated. A separable blur as two matrix products runs on the BLAS
    at full speed, where torch's single-channel convolutions crawl on the CPU."""
    radius = max(1, round(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    matrix = torch.zeros(size, size, dtype=torch.float64)
    for offset, weight in zip(range(-radius, radius + 1), weights, strict=True):
        source = (torch.arange(size) + offset).clamp(0, size - 1)
        matrix[source, torch.arange(size)] += weight
    return matrix.float()


def smoothed(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (B, C, H, W) blurred by a separable Gaussian, edges replicated."""
    height, width = x.shape[-2:]
    rows = x @ blur_matrix(width, sigma).to(x)
    return blur_matrix(height, sigma).T.to(x) @ rows


@dataclass(frozen=True)
class Architecture:
    width: int = 48
    blocks: int = 3

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "blocks": self.blocks}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Architecture:
        return cls(int(record["width"]), int(record["blocks"]))


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.film = nn.Linear(CONDITION + width, 2 * width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(condition)[:, :, None, None].chunk(2, dim=1)
        y = F.silu(self.conv1(h)) * (1 + scale) + shift
        return h + self.conv2(y)


class EditorNet(nn.Module):
    """(B, 3, H, W) in [0, 1], (B, 2) conditions and (B, 1, rows, cols) importance maps ->
    the edited crops (H, W multiples of 4; :func:`icm.preedit.api.edit_image` pads).
    :meth:`masks` gives the blend masks."""

    def __init__(self, arch: Architecture = Architecture()) -> None:
        super().__init__()
        self.arch = arch
        channels = 3 * SHUFFLE * SHUFFLE
        self.head = nn.Conv2d(channels + CONDITION + 1, arch.width, 3, padding=1)
        self.context = nn.Linear(arch.width, arch.width)
        self.blocks = nn.ModuleList(_Block(arch.width) for _ in range(arch.blocks))
        self.tail = nn.Conv2d(arch.width, len(SIGMAS), 3, padding=1)
        # the direct path: masks as a function of the importance and the level alone, whose
        # few weights every pixel of a batch trains (low-variance gradients, found quickly);
        # the convolutions above refine it by content
        self.direct = nn.Conv2d(2 * CONDITION + 2, len(SIGMAS), 1)
        nn.init.zeros_(self.direct.weight)
        nn.init.zeros_(self.direct.bias)
        nn.init.zeros_(self.tail.weight)  # an untrained editor is the identity
        nn.init.zeros_(self.tail.bias)

    def masks(self, x: torch.Tensor, condition: torch.Tensor, importance: torch.Tensor
              ) -> torch.Tensor:
        """(B, len(SIGMAS), H, W) in [0, 1]: how far each pixel moves to each smoothed copy.
        ``importance`` (B, 1, rows, cols): :func:`relative_importance` of the crop."""
        packed = F.pixel_unshuffle(x * 2.0 - 1.0, SHUFFLE)
        planes = condition[:, :, None, None].expand(-1, -1, *packed.shape[-2:])
        where = F.interpolate(importance, size=packed.shape[-2:], mode="bilinear",
                              align_corners=False)
        h = F.silu(self.head(torch.cat([packed, planes, where], 1)))
        # the whole picture's summary beside the level: what the photo is about decides
        # which of its details a machine needs, and no convolution here sees all of it
        state = torch.cat([condition, F.silu(self.context(h.mean(dim=(2, 3))))], 1)
        for block in self.blocks:
            h = block(h, state)
        # one value per 4x4 patch, interpolated: a mask that varied from pixel to pixel
        # would itself write high-frequency detail into the photo (and bits into the file)
        direct = self.direct(torch.cat([where, planes, where * planes, where.relu()], 1))
        raw = F.interpolate(self.tail(F.silu(h)) + direct, scale_factor=SHUFFLE,
                            mode="bilinear", align_corners=False)
        # clamped forward, the identity backward: a clamp's gradient is 0 at the bound, where
        # the zero-initialised tail starts, and the editor would never begin to learn
        return raw + (raw.clamp(0.0, 1.0) - raw).detach()

    def forward(self, x: torch.Tensor, condition: torch.Tensor, importance: torch.Tensor
                ) -> torch.Tensor:
        masks = self.masks(x, condition, importance)
        edited = x
        for index, sigma in enumerate(SIGMAS):
            edited = edited + masks[:, index : index + 1] * (smoothed(x, sigma) - x)
        return edited


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
