"""The trainable parts: a condition embedding, and the two ways it reaches a frozen encoder.

* :class:`StageAdapters` for CNNs (EfficientNet-Lite0): after each stage, a depthwise 3x3
  residual filter whose output is scaled and shifted per channel by the condition (FiLM):
  ``x + gamma(c) * dwconv(x) + beta(c)``. Depthwise filtering can learn de-blocking and
  de-ringing; FiLM decides per codec and rate how much of it to apply.
* :class:`TokenAdapter` for ViTs: the condition, projected to the token width, is added to
  every token before the first layer norm, i.e. to the positional embeddings (the route
  CompressVLMBench takes through the rotary embedding).

Both end in zero-initialised layers, so a fresh adapter changes nothing: the adapted encoder
is exactly the frozen one until training moves it. Both take a per-image ``gate`` (1 acts, 0
is the identity) with the condition: a shut gate zeroes the condition's whole effect, so the
image reads exactly as through the frozen encoder (see :mod:`icm.adapt.gate`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

EMBEDDING = 16


class ConditionEmbedding(nn.Module):
    """codec id and bpp-bucket id -> one vector (their embeddings, concatenated)."""

    def __init__(self, codec_slots: int, bucket_slots: int, size: int = EMBEDDING) -> None:
        super().__init__()
        self.codec = nn.Embedding(codec_slots, size)
        self.bucket = nn.Embedding(bucket_slots, size)
        self.size = 2 * size

    def forward(self, codec_ids: torch.Tensor, bucket_ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.codec(codec_ids), self.bucket(bucket_ids)], dim=-1)


class StageAdapters(nn.Module):
    """A conditioned residual depthwise filter after each CNN stage."""

    def __init__(self, channels: Sequence[int], condition_size: int, hidden: int = 64) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.filters = nn.ModuleList(
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False) for c in self.channels
        )
        self.film = nn.Sequential(
            nn.Linear(condition_size, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * sum(self.channels)),
        )
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        self._scales: list[tuple[torch.Tensor, torch.Tensor]] = []

    def set_condition(self, condition: torch.Tensor, gate: torch.Tensor) -> None:
        """Compute every stage's (gamma, beta) for this batch's condition vectors, zero where
        the image's ``gate`` is 0."""
        params = self.film(condition) * gate[:, None]
        self._scales = []
        start = 0
        for c in self.channels:
            gamma = params[:, start : start + c, None, None]
            beta = params[:, start + c : start + 2 * c, None, None]
            self._scales.append((gamma, beta))
            start += 2 * c

    def apply(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = self._scales[stage]
        return x + gamma * self.filters[stage](x) + beta


class TokenAdapter(nn.Module):
    """The condition added to every ViT token (positional embedding), zero at start."""

    def __init__(self, condition_size: int, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(condition_size, width)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self._offset: torch.Tensor | None = None

    def set_condition(self, condition: torch.Tensor, gate: torch.Tensor) -> None:
        self._offset = (self.project(condition) * gate[:, None])[:, None, :]

    def apply(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self._offset is not None, "set_condition first"
        return tokens + self._offset
