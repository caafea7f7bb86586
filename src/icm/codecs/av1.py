"""AV1 intra: SVT-AV1 in-process through PyAV, and libaom through the ffmpeg binary.

Both write a low-overhead OBU stream (``.obu``: temporal delimiter, sequence header, one key
frame) and both decode with dav1d through PyAV.

The level of both is a fixed quantiser, ``qpN``, and it means the same thing in both: the key
frame's ``base_q_idx`` is ``4 * N`` (checked with ffmpeg's ``trace_headers``), so ``av1@qp32`` and
``av1-aom@qp32`` quantise alike and differ only in the encoder's choices.

* SVT-AV1 runs in its still-picture mode (``avif=1``) with a constant QP (FFmpeg's ``qp``
  option: rate control and adaptive quantisation off). Without ``avif=1`` SVT treats the frame
  as the base of a random-access hierarchy and quietly codes ``qp32`` at ``base_q_idx`` 37, not
  128. Preset 4 is the default: on a 768x512 photo it is about 0.2 s (preset 6 is 3x faster and
  spends about 13% more bits at equal PSNR; preset 2 is 2.5x slower and saves about 4%).
* libaom runs with ``-still-picture 1`` in constant-quality mode (``-crf N -b:v 0``, which is
  ``end-usage=q`` at ``cq-level=N``); for a single frame no rate control is left, and the key
  frame is coded at exactly ``base_q_idx = 4N``. "CRF" is only libaom's name for it; CRF
  numbers are not comparable across encoders or front ends, hence the neutral ``qp`` prefix.

SVT-AV1 writes banners from C to stderr; they are silenced with ``SVT_LOG=1`` (errors only) unless
the user has set ``SVT_LOG`` themselves, so a command printing JSON stays clean.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._ffmpeg import ffmpeg_encode, ffmpeg_unavailable, ffmpeg_version
from icm.codecs._pyav import (
    YUV_FORMATS,
    pad_to_at_least,
    pyav_decode,
    pyav_encode,
    pyav_unavailable,
    pyav_version,
)
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide


@register_codec
class SvtAv1Codec(Codec):
    name = "av1"
    knob = Knob("qp", 1, 63, rate_rises=False, meaning="quantiser, base_q_idx = 4*qp")
    raw_suffix = ".obu"
    typical_level = "qp16"
    ladder = ("qp52", "qp44", "qp36", "qp28", "qp20", "qp10")  # about 0.1 .. 1.4 bpp
    library = "SVT-AV1 (PyAV)"
    summary = "AV1 intra picture, SVT-AV1 still-picture mode at a fixed QP, raw OBUs"
    install_hint = "pip install av"
    options = {
        "bit_depth": Option(8, (8, 10), "coded bit depth"),
        "preset": Option(4, tuple(range(14)), "SVT-AV1 preset 0 (slow, small) .. 13 (fast)"),
    }
    pad_multiple = 2  # 4:2:0 needs even sizes

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return pyav_unavailable(("libsvtav1", "w"), ("libdav1d", "r"))

    @classmethod
    def library_version(cls) -> str:
        version = svt_av1_version()
        return f"SVT-AV1 {version}, {pyav_version()}" if version else pyav_version()

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        os.environ.setdefault("SVT_LOG", "1")  # read when the encoder opens
        # SVT-AV1 4.x deadlocks on frames narrower than ~26 pixels beside a long side, and
        # refuses sides under 4; 32 keeps clear of both.
        return pyav_encode(
            pad_to_at_least(rgb, 32, 32),
            "libsvtav1",
            YUV_FORMATS["420", options["bit_depth"]],
            {"qp": str(int(value)), "preset": str(options["preset"]), "svtav1-params": "avif=1"},
        )

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pyav_decode(data, "libdav1d", side)


@register_codec
class AomAv1Codec(Codec):
    name = "av1-aom"
    knob = Knob("qp", 0, 63, rate_rises=False, meaning="quantiser, base_q_idx = 4*qp")
    raw_suffix = ".obu"  # .obu files decode as "av1", the first registered; same decoder
    typical_level = "qp16"
    ladder = ("qp52", "qp44", "qp36", "qp28", "qp20", "qp12")  # about 0.1 .. 1.2 bpp
    library = "libaom (ffmpeg binary)"
    summary = "AV1 intra picture, libaom still-picture at a fixed quantiser, raw OBUs"
    install_hint = "pip install imageio-ffmpeg av"
    options = {
        "chroma": Option("420", ("420", "444"), "chroma subsampling"),
        "bit_depth": Option(8, (8, 10), "coded bit depth"),
        "cpu_used": Option(6, tuple(range(7)), "libaom speed 0 (slow, small) .. 6 (fast)"),
    }
    pad_multiple = 2

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return ffmpeg_unavailable("libaom-av1") or pyav_unavailable(("libdav1d", "r"))

    @classmethod
    def library_version(cls) -> str:
        return ffmpeg_version()

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        args = ["-c:v", "libaom-av1", "-still-picture", "1", "-cpu-used", str(options["cpu_used"]),
                "-crf", str(int(value)), "-b:v", "0"]  # fmt: skip
        pix_fmt = YUV_FORMATS[options["chroma"], options["bit_depth"]]
        return ffmpeg_encode(rgb, args, pix_fmt=pix_fmt, muxer="obu")

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pyav_decode(data, "libdav1d", side)


@functools.cache
def svt_av1_version() -> str:
    """SVT-AV1's ``svt_av1_get_version()`` from the library PyAV bundles, or ``''``."""
    import ctypes
    import glob

    import av

    package = os.path.dirname(os.path.dirname(av.__file__))
    patterns = ("av.libs/libSvtAv1Enc*", "av/.dylibs/libSvtAv1Enc*", "av.libs/SvtAv1Enc*.dll")
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(package, pattern))):
            try:
                function = ctypes.CDLL(path).svt_av1_get_version
            except (OSError, AttributeError):
                continue
            function.restype = ctypes.c_char_p
            return (function() or b"").decode("ascii", "replace")
    return ""
