"""AVIF (AV1 intra in HEIF) through Pillow's built-in libavif with the aom encoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pillow import pillow_decode, pillow_encode, pillow_version
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide

_SUBSAMPLING = {"420": "4:2:0", "422": "4:2:2", "444": "4:4:4"}


@register_codec
class AvifCodec(Codec):
    name = "avif"
    knob = Knob("q", 0, 100, meaning="quality, higher is better")
    raw_suffix = ".avif"
    typical_level = "q70"
    ladder = ("q20", "q35", "q50", "q60", "q70", "q80")
    library = "libavif (Pillow)"
    summary = "AVIF still image (AV1 intra), 8-bit"
    install_hint = "Pillow >= 11.2 has AVIF built in: pip install -U pillow"
    options = {
        "chroma": Option("420", ("420", "422", "444"), "chroma subsampling"),
        "speed": Option(6, tuple(range(11)), "encoder speed 0 (slow, small) .. 10 (fast)"),
    }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from PIL import features

        return None if features.check("avif") else "this Pillow was built without libavif"

    @classmethod
    def library_version(cls) -> str:
        from PIL import features

        return f"libavif {features.version('avif')}, Pillow {pillow_version()}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        return pillow_encode(
            rgb,
            "AVIF",
            quality=int(value),
            subsampling=_SUBSAMPLING[options["chroma"]],
            speed=options["speed"],
        )

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pillow_decode(data, side, "AVIF")
