"""JPEG 2000 through Pillow's OpenJPEG, addressed by compression ratio.

Pillow's defaults suit lossless coding (reversible 5/3 wavelet, no colour transform); for lossy
coding we turn on the irreversible 9/7 wavelet and the RGB->YCbCr transform, which gain about
4 dB at 0.5 bpp on a natural photo. The knob is the compression ratio against 24-bit RGB, so
``jpeg2000@r48`` is 0.5 bpp of codestream before the JP2 boxes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pillow import pillow_decode, pillow_encode, pillow_version
from icm.codecs.base import Codec, Knob
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide


@register_codec
class Jpeg2000Codec(Codec):
    name = "jpeg2000"
    knob = Knob(
        "r", 2, 2000, integer=False, rate_rises=False, meaning="compression ratio, lower is better"
    )
    raw_suffix = ".jp2"
    typical_level = "r24"
    ladder = ("r192", "r96", "r48", "r32", "r24", "r16")
    library = "OpenJPEG (Pillow)"
    summary = "JPEG 2000 Part 1, 9/7 wavelet, JP2 file"

    @classmethod
    def library_version(cls) -> str:
        from PIL import features

        return f"OpenJPEG {features.version('jpg_2000')}, Pillow {pillow_version()}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        return pillow_encode(
            rgb, "JPEG2000", quality_mode="rates", quality_layers=[value], irreversible=True, mct=1
        )

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pillow_decode(data, side, "JPEG2000")

    def native_chroma(self, options: Mapping[str, Any]) -> str:
        return "444"
