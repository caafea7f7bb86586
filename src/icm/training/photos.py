"""The photos a trainer reads: every photo of its dataset specs, decoded once, and the one way
a photo becomes a tensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from icm.errors import IcmError
from icm.image.datasets import PHOTO, open_dataset


def load_photos(specs: Sequence[str], min_side: int, limit: int = 0,
                error: type[IcmError] = IcmError) -> list[np.ndarray]:
    """Every photo of every dataset spec (the first ``limit`` of each, 0 = all), decoded once,
    because training reads crops of them thousands of times; photos with a side under
    ``min_side`` are skipped. None left is an ``error`` (the trainer's own error class)."""
    photos: list[np.ndarray] = []
    for spec in specs:
        dataset = open_dataset(spec).of_kind(PHOTO)
        if limit:
            dataset = dataset.limit(limit)
        photos.extend(pixels for pixels in (image.load() for image in dataset)
                      if min(pixels.shape[:2]) >= min_side)
    if not photos:
        raise error(f"no photos of at least {min_side}x{min_side} px in "
                    f"{', '.join(map(repr, specs))}")
    return photos


def to_tensor(rgb: np.ndarray) -> Any:
    """(H, W, 3) uint8 -> (3, H, W) float32 torch tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0
