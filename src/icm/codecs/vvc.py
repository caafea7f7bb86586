"""VVC / H.266 intra: vvenc through the imageio-ffmpeg binary, decoded by FFmpeg's native VVC
decoder through PyAV. Raw Annex-B (``.266``), one IDR picture, always 10-bit 4:2:0 (the only
input vvenc takes).

The level is the slice QP actually coded, 0..63: vvenc's intra QP offset is set to 0 (it would
code ``qp32`` at 29) and its perceptual QP adaptation (``qpa``, per-CTU QP changes tuned for
the human eye) is off by default, which also makes it cheaper in bits at equal PSNR (about 15%
here) and faster. ``qpa=true`` turns it back on.

Presets on a 768x512 photo on a 2-core machine: faster about 0.3-0.5 s, fast about 3x that,
medium about 10x. ``faster`` is the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._ffmpeg import ffmpeg_encode, ffmpeg_unavailable, ffmpeg_version
from icm.codecs._pyav import pad_to_at_least, pyav_decode, pyav_unavailable
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide


@register_codec
class VvcCodec(Codec):
    name = "vvc"
    knob = Knob("qp", 0, 63, rate_rises=False, meaning="slice QP, lower is better")
    raw_suffix = ".266"
    typical_level = "qp22"
    ladder = ("qp42", "qp37", "qp33", "qp29", "qp25", "qp20")  # about 0.1 .. 1.2 bpp on photos
    library = "vvenc (ffmpeg binary)"
    summary = "VVC/H.266 intra picture, vvenc at a fixed QP, 10-bit, raw Annex-B"
    install_hint = "pip install imageio-ffmpeg av"
    options = {
        "preset": Option("faster", ("faster", "fast", "medium", "slow", "slower"),
                         "vvenc speed preset"),
        "qpa": Option(False, (False, True), "vvenc perceptual QP adaptation"),
        "bit_depth": Option(10, (10,), "coded bit depth (vvenc codes 10-bit only)"),
    }  # fmt: skip
    pad_multiple = 2  # 4:2:0; vvenc pads to its 8-pixel grid itself and signals the crop

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return ffmpeg_unavailable("libvvenc") or pyav_unavailable(("vvc", "r"))

    @classmethod
    def library_version(cls) -> str:
        return ffmpeg_version()

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        qpa = "1" if options["qpa"] else "0"
        args = ["-c:v", "libvvenc", "-qp", str(int(value)), "-preset", options["preset"],
                "-qpa", qpa, "-vvenc-params", "IntraQPOffset=0"]  # fmt: skip
        # vvenc fails on very small pictures (16x16 does, 24x24 does not).
        return ffmpeg_encode(pad_to_at_least(rgb, 32, 32), args, pix_fmt="yuv420p10le", muxer="vvc")

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pyav_decode(data, "vvc", side)
