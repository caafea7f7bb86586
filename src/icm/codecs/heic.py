"""HEIC (HEVC intra in HEIF) through pillow-heif's libheif + x265."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide


@register_codec
class HeicCodec(Codec):
    name = "heic"
    knob = Knob("q", 0, 100, meaning="quality, higher is better")
    raw_suffix = ".heic"
    typical_level = "q60"
    ladder = ("q10", "q20", "q30", "q40", "q48", "q55")
    library = "libheif + x265 (pillow-heif)"
    summary = "HEIC still image (HEVC intra in HEIF)"
    install_hint = "pip install pillow-heif"
    options = {"chroma": Option("420", ("420", "422", "444"), "chroma subsampling")}
    pad_multiple = 2

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif is not installed"
        encoders = pillow_heif.libheif_info().get("encoders", {})
        return None if "x265" in encoders else "pillow-heif has no HEVC encoder"

    @classmethod
    def library_version(cls) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"libheif {info['libheif']}, {info['HEIF']}, pillow-heif {pillow_heif.__version__}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        import pillow_heif

        size = (rgb.shape[1], rgb.shape[0])
        pixels = np.ascontiguousarray(rgb).tobytes()
        heif = pillow_heif.from_bytes(mode="RGB", size=size, data=pixels)
        buffer = io.BytesIO()
        heif.save(buffer, quality=int(value), chroma=int(options["chroma"]))
        return buffer.getvalue()

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        side.check_pixels(*heif.size, "HEIC picture")  # libheif decodes lazily, on to_pillow
        return np.asarray(heif.to_pillow().convert("RGB"))
