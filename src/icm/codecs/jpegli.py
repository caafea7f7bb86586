"""jpegli: libjxl's JPEG encoder, ~13% smaller than libjpeg-turbo at equal PSNR.

The files are ordinary JPEG, so any decoder (here Pillow's) reads them. Optional: install
``pyjpegli`` (``pip install 'icm[jpegli]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pillow import pillow_decode
from icm.codecs.base import Codec, Knob
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide


@register_codec
class JpegliCodec(Codec):
    name = "jpegli"
    knob = Knob("q", 1, 100, meaning="quality, higher is better")
    raw_suffix = ".jpg"
    typical_level = "q75"
    ladder = ("q5", "q15", "q30", "q50", "q70", "q85")
    library = "jpegli (pyjpegli)"
    summary = "JPEG from libjxl's jpegli encoder (standard JPEG files)"
    install_hint = "pip install 'icm[jpegli]'"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import pyjpegli  # noqa: F401
        except ImportError:
            return "pyjpegli is not installed"
        return None

    @classmethod
    def library_version(cls) -> str:
        import pyjpegli

        return f"pyjpegli {pyjpegli.__version__}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        import pyjpegli

        height, width = rgb.shape[:2]
        return pyjpegli.encode(np.ascontiguousarray(rgb).tobytes(), width, height, int(value))

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pillow_decode(data, side, "JPEG")
