"""Capture-side compression: ``jpeg``, the JPEG a camera or phone wrote before icm saw the image.

Most pictures a machine reads were JPEG-compressed at capture, often hard (messaging apps,
surveillance recorders). That first generation of blocking and ringing is part of the input, not
of the codec under test, so it is a degradation like noise or blur. Pillow's libjpeg-turbo with
its default 4:2:0 chroma subsampling stands in for a camera's encoder.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from icm.degrade.base import Degradation
from icm.degrade.registry import register_degradation


@register_degradation
class CaptureJpeg(Degradation):
    """One JPEG round trip at quality ``round(95 - 90 * strength)``.

    Quality 95 near strength 0, 77 at 0.2, 50 at 0.5, 5 at 1. Deterministic: draws no random
    numbers. Strength exactly 0 skips the round trip (every degradation is the identity there).
    """

    name = "jpeg"
    summary = "capture-time JPEG compression (libjpeg-turbo via Pillow, 4:2:0)"
    mapping = "quality = round(95 - 90*s)"
    random = False

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        return jpeg_round_trip(rgb, jpeg_quality(strength))


def jpeg_quality(strength: float) -> int:
    return round(95 - 90 * strength)


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()
