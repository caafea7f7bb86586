"""``icm importance``: an importance map over its image, as a heat overlay file and numbers.

The overlay shows where a provider (or a machine's own provider) says bits are worth
spending, so a user can see what ``encode --for`` or ``--importance`` will protect before
coding anything.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from icm.fileio import refuse_overwriting_input, write_atomic
from icm.image import load_image
from icm.importance.maps import DEFAULT_BLOCK
from icm.importance.registry import get_importance
from icm.limits import DEFAULT_MAX_PIXELS
from icm.machines import get_machine

#: the provider used when neither a provider nor a machine is named
DEFAULT_PROVIDER = "saliency"


def importance_file(
    source: Path,
    provider: str | None = None,
    for_machine: str | None = None,
    block: int = DEFAULT_BLOCK,
    output: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Compute a map and write it over the image as a heat overlay (red = keep bits); return
    what was written, the map's description, its values and how long it took."""
    if provider is None:
        provider = get_machine(for_machine).default_importance() if for_machine \
            else DEFAULT_PROVIDER
    output = output or source.with_suffix(".map.png")
    refuse_overwriting_input(source, output)
    image = load_image(source, max_pixels=max_pixels)
    start = time.perf_counter()
    importance = get_importance(provider).compute(image, block)
    compute_ms = (time.perf_counter() - start) * 1e3
    write_atomic(output, png_bytes(overlay(image, importance.to_pixels())))
    return {"input": str(source), "output": str(output), "compute_ms": compute_ms,
            **importance.describe(), "values": np.round(importance.values, 3).tolist()}


def overlay(image: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The image in grey, tinted from blue (no bits needed) to red (keep every bit)."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True)
    heat = np.stack([dense, 0.25 * np.ones_like(dense), 1.0 - dense], axis=2) * 255.0
    return np.clip(0.55 * grey + 0.45 * heat, 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` uint8 image as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
