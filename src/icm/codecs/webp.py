"""WebP (lossy VP8 intra) through Pillow's libwebp."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pillow import pillow_decode, pillow_encode, pillow_version
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide


@register_codec
class WebpCodec(Codec):
    name = "webp"
    knob = Knob("q", 0, 100, meaning="quality, higher is better")
    raw_suffix = ".webp"
    typical_level = "q75"
    ladder = ("q5", "q20", "q40", "q60", "q75", "q90")
    library = "libwebp (Pillow)"
    summary = "lossy WebP (VP8 intra), 4:2:0"
    options = {"method": Option(6, tuple(range(7)), "effort 0 (fast) .. 6 (smallest files)")}

    @classmethod
    def library_version(cls) -> str:
        from PIL import features

        return f"libwebp {features.version('webp')}, Pillow {pillow_version()}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        # lossless=False is Pillow's default, but spelling it out guards against the
        # imagecodecs-style trap where WebP silently defaults to lossless.
        return pillow_encode(
            rgb, "WEBP", quality=int(value), method=options["method"], lossless=False
        )

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pillow_decode(data, side, "WEBP")
