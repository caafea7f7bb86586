"""JPEG through Pillow's libjpeg-turbo: the anchor every other codec is compared with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pillow import pillow_decode, pillow_encode, pillow_version
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec

# Pillow's subsampling argument: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
_SUBSAMPLING = {"444": 0, "422": 1, "420": 2}


@register_codec
class JpegCodec(Codec):
    name = "jpeg"
    knob = Knob("q", 1, 95, meaning="quality, higher is better")
    raw_suffix = ".jpg"
    typical_level = "q75"
    ladder = ("q10", "q20", "q35", "q50", "q70", "q85")
    library = "libjpeg-turbo (Pillow)"
    summary = "baseline JPEG, Huffman-coded, optimised tables"
    options = {
        "chroma": Option("420", ("420", "422", "444"), "chroma subsampling"),
        "optimize": Option(True, (True, False), "optimised Huffman tables"),
    }

    @classmethod
    def library_version(cls) -> str:
        from PIL import features

        return f"libjpeg-turbo {features.version('jpg')}, Pillow {pillow_version()}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        return pillow_encode(
            rgb,
            "JPEG",
            quality=int(value),
            subsampling=_SUBSAMPLING[options["chroma"]],
            optimize=bool(options["optimize"]),
        )

    def _decode(self, data: bytes) -> np.ndarray:
        return pillow_decode(data)
