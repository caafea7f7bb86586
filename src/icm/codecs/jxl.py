"""JPEG XL through imagecodecs' libjxl, addressed by Butteraugli distance.

The distance is libjxl's native knob (1.0 is "visually lossless", larger is coarser), so it is
the level rather than a quality number that libjxl would map to a distance anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.image.load import jxl_header
from icm.limits import DecodeSide


@register_codec
class JxlCodec(Codec):
    name = "jxl"
    knob = Knob(
        "d", 0.05, 25, integer=False, rate_rises=False, meaning="distance, lower is better"
    )
    raw_suffix = ".jxl"
    typical_level = "d1.5"
    ladder = ("d12", "d8", "d5", "d3", "d2", "d1.3")
    library = "libjxl (imagecodecs)"
    summary = "JPEG XL, VarDCT"
    install_hint = "pip install imagecodecs"
    options = {"effort": Option(7, tuple(range(1, 10)), "encoder effort 1 (fast) .. 9 (slow)")}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed"
        return None if imagecodecs.JPEGXL.available else "imagecodecs was built without libjxl"

    @classmethod
    def library_version(cls) -> str:
        import imagecodecs

        return f"{imagecodecs.jpegxl_version()}, imagecodecs {imagecodecs.__version__}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(rgb, distance=value, effort=options["effort"]))

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        import imagecodecs

        side.check_pixels(*jxl_header(data, "payload")[:2], "JPEG XL picture")  # libjxl would
        return imagecodecs.jpegxl_decode(data)  # allocate the whole picture before we could

    def native_chroma(self, options: Mapping[str, Any]) -> str:
        return "444"
