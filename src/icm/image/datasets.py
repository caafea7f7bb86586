"""Datasets: the images a benchmark runs over, each with an id, a kind and optional truth.

A dataset is a folder (recursive), a list file (one path per line, relative to the list), or
``samples``: the embedded default, bundled photos plus documents rendered deterministically with
exact ground-truth text. An image's ``kind`` (``photo`` or ``document``) lets the grid pair
machines with the images they are meant for (OCR reads documents).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Truth:
    """Ground truth attached to an image: rendered text, captions, labels."""

    text: str | None = None
    captions: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def content_hash(image: np.ndarray) -> str:
    """SHA-256 of the pixels and shape: the cache key for everything derived from an image."""
    digest = hashlib.sha256(f"{image.shape}|{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()
