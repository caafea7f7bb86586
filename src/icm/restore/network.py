"""A compact restoration network conditioned on what damaged the image.

Why conditioned: one small network cannot be the best denoiser, deblurrer and dehazer at once,
but told "noise at 0.5" it can switch its filters to that job. The condition is a learned
embedding of the degradation type (index 0 is "unknown", for images without metadata) and of its
strength (a scalar in [0, 1] plus a "known" flag, through a small MLP), injected by FiLM
(per-channel scale and shift) after the first convolution of every residual block.

Why this shape: a pixel-unshuffle first (lossless, 3 -> 12 channels at half resolution) and a
2-level U-Net behind it keep the work at 1/4 of the pixels or fewer, which is what makes training
on two CPU cores possible, while three scales give the receptive field that blur and haze need.
The output is the input plus a predicted residual, and the last convolution starts at zero: an
untrained network is exactly the identity, so training only ever has to learn the correction.
Any height and width work: the input is reflect-padded to a multiple of 8 and cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from icm.restore.config import UNKNOWN


@dataclass(frozen=True)
class Architecture:
    """The sizes a saved model must be rebuilt with (they travel in the file's metadata)."""

    widths: tuple[int, int, int] = (32, 48, 64)
    embed: int = 16
    condition: int = 64

    def to_json(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_json(cls, record: dict) -> Architecture:
        return cls(tuple(int(w) for w in record["widths"]), int(record["embed"]),
                   int(record["condition"]))


class FiLMBlock(nn.Module):
    """conv -> FiLM(condition) -> GELU -> conv, added to the input.

    The FiLM projection starts at zero (scale 1, shift 0), so the condition is learned as a
    departure from an unconditioned block rather than fighting a random start.
    """

    def __init__(self, channels: int, condition: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(condition, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(x) * (1 + scale) + shift
        return x + self.conv2(F.gelu(h))


class RestoreNet(nn.Module):
    """``net(rgb, type_ids, strengths, strength_known)`` -> restored rgb, all in [0, 1] floats.

    ``rgb`` is ``(B, 3, H, W)``; ``type_ids`` indexes ``vocabulary`` (0 = unknown);
    ``strengths`` are in [0, 1]; ``strength_known`` is 1 where the strength was given, 0 where
    it was not (its strength value is then ignored by training convention: it is fed as 0).
    """

    factor = 8  # pixel-unshuffle 2 x two stride-2 downsamplings

    def __init__(self, vocabulary: Sequence[str], arch: Architecture | None = None) -> None:
        super().__init__()
        if not vocabulary or vocabulary[0] != UNKNOWN:
            raise ValueError(f"the vocabulary must start with {UNKNOWN!r}")
        self.vocabulary = tuple(vocabulary)
        self.arch = arch or Architecture()
        w1, w2, w3 = self.arch.widths
        e, c = self.arch.embed, self.arch.condition
        self.type_embedding = nn.Embedding(len(self.vocabulary), e)
        self.strength_mlp = nn.Sequential(nn.Linear(2, e), nn.GELU(), nn.Linear(e, e))
        self.condition_mlp = nn.Sequential(nn.Linear(2 * e, c), nn.GELU(), nn.Linear(c, c))
        self.head = nn.Conv2d(12, w1, 3, padding=1)
        self.enc1 = FiLMBlock(w1, c)
        self.down1 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.enc2 = FiLMBlock(w2, c)
        self.down2 = nn.Conv2d(w2, w3, 3, stride=2, padding=1)
        self.middle = FiLMBlock(w3, c)
        self.up2 = nn.Conv2d(w3, w2, 3, padding=1)
        self.dec2 = FiLMBlock(w2, c)
        self.up1 = nn.Conv2d(w2, w1, 3, padding=1)
        self.dec1 = FiLMBlock(w1, c)
        self.tail = nn.Conv2d(w1, 12, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # an untrained network is the identity
        nn.init.zeros_(self.tail.bias)

    def type_index(self, name: str) -> int:
        """The embedding row of ``name``; a type the model was not trained on is unknown."""
        try:
            return self.vocabulary.index(name)
        except ValueError:
            return 0

    def condition(self, type_ids: torch.Tensor, strengths: torch.Tensor,
                  strength_known: torch.Tensor) -> torch.Tensor:
        known = strength_known.float()
        strength = torch.stack([strengths.float() * known, known], dim=1)
        both = torch.cat([self.type_embedding(type_ids), self.strength_mlp(strength)], dim=1)
        return self.condition_mlp(both)

    def forward(self, rgb: torch.Tensor, type_ids: torch.Tensor, strengths: torch.Tensor,
                strength_known: torch.Tensor) -> torch.Tensor:
        cond = self.condition(type_ids, strengths, strength_known)
        height, width = rgb.shape[-2:]
        pad_h, pad_w = -height % self.factor, -width % self.factor
        x = rgb
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        s1 = self.enc1(self.head(F.pixel_unshuffle(x, 2)), cond)
        s2 = self.enc2(self.down1(s1), cond)
        h = self.middle(self.down2(s2), cond)
        h = self.dec2(s2 + self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest")), cond)
        h = self.dec1(s1 + self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest")), cond)
        residual = F.pixel_shuffle(self.tail(h), 2)[..., :height, :width]
        return rgb + residual


def parameter_count(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))
