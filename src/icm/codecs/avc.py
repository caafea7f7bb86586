"""AVC / H.264 intra: x264 in-process through PyAV, raw Annex-B (``.264``).

The level is the slice QP actually coded: x264's I-picture offset is turned off (``ipratio=1``;
otherwise ``qp32`` codes the picture at QP 29), and for 10-bit the value is shifted by x264's
+12 so ``qp32`` is QP 32 in the standard's scale at both depths. ``qp0`` at 8 bits is lossless
(x264 switches to the High 4:4:4 Predictive profile with transform bypass).

x264 always writes its options banner as an SEI message (about 600 bytes); it is non-normative
and is dropped from the stream, so the bytes counted are the ones a decoder needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pyav import (
    X26X_PRESETS,
    YUV_FORMATS,
    encoder_banner,
    pyav_decode,
    pyav_encode,
    pyav_unavailable,
    pyav_version,
)
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec

_X264_BANNER = b"x264 - core"


@register_codec
class AvcCodec(Codec):
    name = "avc"
    knob = Knob("qp", 0, 51, rate_rises=False, meaning="slice QP, lower is better")
    raw_suffix = ".264"
    typical_level = "qp26"
    ladder = ("qp44", "qp39", "qp34", "qp30", "qp26", "qp22")  # about 0.1 .. 1.3 bpp on photos
    library = "x264 (PyAV)"
    summary = "AVC/H.264 intra picture, x264 at a fixed QP, raw Annex-B"
    install_hint = "pip install av"
    options = {
        "chroma": Option("420", ("420", "444"), "chroma subsampling"),
        "bit_depth": Option(8, (8, 10), "coded bit depth"),
        "preset": Option("medium", X26X_PRESETS, "x264 speed preset"),
    }
    pad_multiple = 2  # 4:2:0 needs even sizes

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return pyav_unavailable(("libx264", "w"), ("h264", "r"))

    @classmethod
    def library_version(cls) -> str:
        # x264's SEI banner: "x264 - core 165 - H.264/MPEG-4 AVC codec - Copyleft ..."
        banner = encoder_banner("libx264", "yuv420p", (("qp", "30"),), _X264_BANNER, b" - H.264")
        version = banner.replace(" - ", " ")
        return f"{version}, {pyav_version()}" if version else pyav_version()

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        bit_depth = options["bit_depth"]
        x264_qp = int(value) + 6 * (bit_depth - 8)  # x264 counts high-depth QPs from -QpBdOffset
        data = pyav_encode(
            rgb,
            "libx264",
            YUV_FORMATS[options["chroma"], bit_depth],
            {"qp": str(x264_qp), "preset": options["preset"], "x264-params": "ipratio=1"},
        )
        return strip_sei_containing(data, _X264_BANNER)

    def _decode(self, data: bytes) -> np.ndarray:
        return pyav_decode(data, "h264")


def strip_sei_containing(data: bytes, marker: bytes) -> bytes:
    """Drop the H.264 SEI NAL units (type 6) of an Annex-B stream that contain ``marker``.

    Start codes cannot occur inside a NAL unit (emulation prevention), so splitting on
    ``00 00 01`` is exact; a fourth leading zero byte belongs to the start code that follows.
    """
    starts = []
    position = data.find(b"\x00\x00\x01")
    while position >= 0:
        starts.append(position)
        position = data.find(b"\x00\x00\x01", position + 3)
    if not starts:
        return data
    kept = [data[: _unit_start(data, starts[0])]]
    for index, start in enumerate(starts):
        begin = _unit_start(data, start)
        end = _unit_start(data, starts[index + 1]) if index + 1 < len(starts) else len(data)
        header = data[start + 3] if start + 3 < len(data) else 0
        if header & 0x1F == 6 and marker in data[start:end]:
            continue
        kept.append(data[begin:end])
    return b"".join(kept)


def _unit_start(data: bytes, start_code: int) -> int:
    """Where the byte-stream unit of the start code at ``start_code`` begins (its zero_byte)."""
    return start_code - 1 if start_code > 0 and data[start_code - 1] == 0 else start_code
