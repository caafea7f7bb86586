"""AVC / H.264 intra: x264 in-process through PyAV, raw Annex-B (``.264``).

The level is the slice QP actually coded: x264's I-picture offset is turned off (``ipratio=1``;
otherwise ``qp32`` codes the picture at QP 29), and for 10-bit the value is shifted by x264's
+12 so ``qp32`` is QP 32 in the standard's scale at both depths. ``qp0`` at 8 bits is lossless
(x264 switches to the High 4:4:4 Predictive profile with transform bypass).

x264 always writes its options banner as an SEI message (about 600 bytes); it is non-normative
and is dropped from the stream, so the bytes counted are the ones a decoder needs.

``avc-crf`` is x264 with the settings of ``avc`` in CRF mode, the rate control in which x264
reads region offsets (with a fixed QP FFmpeg's ROI side data is dropped silently). It takes a
delta-QP map, applied as ``addroi`` regions (see :mod:`icm.codecs._pyav`):

* The level ``crf30`` codes the picture at QP 30, as ``avc@qp30`` does, at 8 and 10 bits (x264's
  CRF is on the 8-bit scale, so no shift is needed): a lone intra picture has no history and
  x264's CRF starts it at QP = crf (``ipratio=1``). ``mbtree=0``: MB-tree would raise every
  macroblock of a lone picture by about (1 - qcomp) * 13.5 = 5.4 QP (measured: QP 35 for
  crf30, while the slice header still says 30). Unlike ``avc@qp0``, ``crf0`` is not lossless.
* x264 applies offsets only with adaptive quantisation on, and turns AQ off at strength 0, so AQ
  runs at ``aq-mode=1:aq-strength=0.001``: its own offsets stay below 0.05 QP and round away.
* Mapping: FFmpeg's libx264.c multiplies ``qoffset`` by 51 + 6 * (bit depth - 8), so a delta
  ``d`` is sent as ``qoffset = d/51`` (8 bits) or ``d/63`` (10 bits) and the macroblock is
  coded at QP ``crf + d``. Verified on the per-macroblock QPs the h264 decoder exports
  (``export_side_data=venc_params``), whole-frame regions at crf30, 8 bits: d = 1, -1, 3, 7,
  10, -10, 20, -20 give QP 31, 29, 33, 37, 40, 20, 50, 10 in every macroblock; d = 25 and -40
  give 51 and 0 (clamped). 10 bits: d = 10 and -40 (sent as 10/63, -40/63) give 40 and -10.
  x264 clamps QPs to -6 * (bit depth - 8)..51 (0..51 at 8 bits, -12..51 at 10), and deltas
  are clipped to that first. Without a map the stream is byte for byte ``avc@qp30``'s
  (checked at 8 and 10 bits).
* The decoder-side QP of a macroblock with no coded residual is the predicted one (H.264 sends
  no mb_qp_delta there), so a QP map read back from the stream shows a few such blocks at
  their neighbour's QP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pyav import (
    X26X_CRF_AQ,
    X26X_PRESETS,
    YUV_FORMATS,
    CrfRegions,
    Region,
    encoder_banner,
    pyav_decode,
    pyav_encode,
    pyav_unavailable,
    pyav_version,
)
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide

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
        data = pyav_encode(
            rgb,
            "libx264",
            YUV_FORMATS[options["chroma"], bit_depth],
            {**self._rate_control(value, bit_depth), "preset": options["preset"]},
            self._regions(rgb, value, options),
        )
        return strip_sei_containing(data, _X264_BANNER)

    def _rate_control(self, value: float, bit_depth: int) -> dict[str, str]:
        """The encoder options that set the rate control: a fixed QP."""
        x264_qp = int(value) + 6 * (bit_depth - 8)  # x264 counts high-depth QPs from -QpBdOffset
        return {"qp": str(x264_qp), "x264-params": "ipratio=1"}

    def _regions(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> list[Region]:
        """Region offsets for the frame: none at a fixed QP (x264 would ignore them)."""
        return []

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pyav_decode(data, "h264", side)


@register_codec
class AvcCrfCodec(CrfRegions, AvcCodec):
    """x264 as ``avc``, in CRF mode so that it takes a delta-QP map (module docstring).

    ``delta_qp`` (rows x cols of ints, any grid size) is scaled to the frame's macroblocks and
    each is coded at QP ``crf + delta``, clipped to x264's range. ``params["delta_qp"]`` records
    the map as given.
    """

    name = "avc-crf"
    typical_level = "crf26"
    ladder = tuple(level.replace("qp", "crf") for level in AvcCodec.ladder)
    summary = "AVC/H.264 intra picture, x264 in CRF mode, delta-QP maps as region offsets"

    @staticmethod
    def lowest_qp(bit_depth: int) -> int:
        return -6 * (bit_depth - 8)  # x264 counts high-depth QPs from -QpBdOffset

    def _rate_control(self, value: float, bit_depth: int) -> dict[str, str]:
        # CRF is on the 8-bit scale at every depth: crf30 is QP 30 at 10 bits too (measured)
        return {"crf": str(int(value)), "x264-params": f"ipratio=1:mbtree=0:{X26X_CRF_AQ}"}


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
