"""HEVC / H.265 intra: x265 in-process through PyAV; kvazaar (delta-QP maps) through ffmpeg.

All write a raw Annex-B elementary stream (``.265``) holding one IDR picture, and all decode
with FFmpeg's HEVC decoder through PyAV. The level is the slice QP actually coded (``qp32`` means
every CTU of the picture is quantised at QP 32): each encoder's intra QP offset is set to 0
(x265 ``ipratio=1``, kvazaar ``intra-qp-offset=0``), which otherwise codes an I picture about 3
QP finer than asked, and adaptive quantisation is off (x265 turns it off for a fixed QP).

Non-normative SEI messages are not written (x265 ``info=0``; kvazaar ``info=0,hash=none``): the
x265 options banner alone is about 2 kB, more than the whole picture at low rates.

``hevc-crf`` is x265 with the settings of ``hevc`` in CRF mode, the rate control in which x265
reads region offsets (with a fixed QP FFmpeg's ROI side data is dropped silently). It takes a
delta-QP map, applied as ``addroi`` regions (see :mod:`icm.codecs._pyav`):

* The level ``crf32`` codes the picture at QP 32, as ``hevc@qp32`` does: for a lone intra
  picture CRF has no history, and x265 starts at QP = crf (``ipratio=1``; checked in the slice
  header and x265's per-frame QP). ``cutree=0``: cutree would raise every block of a lone
  picture by about (1 - qcomp) * 13.5 = 5.4 QP, with no later frame to hand it back to.
* x265 applies offsets only with adaptive quantisation on, and turns AQ off at strength 0, so
  AQ runs at ``aq-mode=1:aq-strength=0.001``: its own offsets stay below 0.05 QP and round away,
  and the map is the only thing moving QPs. (So ``tune=psnr`` and ``tune=ssim``, which differ
  only in their AQ settings, give the same stream here.) ``qg-size=16`` gives each 16x16 block
  (the grid FFmpeg fills) its own QP; at x265's default of 32, four blocks share their mean.
* Mapping: FFmpeg's libx265.c multiplies ``qoffset`` by 51 + 6 * (bit depth - 8), so a delta
  ``d`` is sent as ``qoffset = d/51`` (8 bits) or ``d/63`` (10 bits) and the block is coded at
  QP ``crf + d``. Verified with one-cell maps (a whole-frame region) at crf30 on x265's
  per-frame average QP (``csv-log-level=2``): d = 1, -1, 3, 10, -10, 25, -26, -40 give 31, 29,
  33, 40, 20, 51, 4, 0 at 8 bits and the same at 10 bits; a +10 left half gives 35.00. x265
  clamps block QPs to 0..51 at both depths, and deltas are clipped to that first. The map-free
  picture differs from ``hevc@qp30``'s by the cu_qp_delta syntax: 0.3% more bytes on a 512x512
  photo, 1-2% on a 128x96 crop.
* A CU larger than 16x16 that straddles blocks of different deltas is coded at their rounded
  mean, and (as in any HEVC stream) a CU with no residual keeps the predicted QP: a +8 column
  one block wide on a 128x96 crop averages 30.61 where 31.0 is the ideal.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from icm.codecs._ffmpeg import ffmpeg_encode, ffmpeg_unavailable, ffmpeg_version
from icm.codecs._pyav import (
    X26X_CRF_AQ,
    X26X_PRESETS,
    YUV_FORMATS,
    CrfRegions,
    Region,
    encoder_banner,
    pad_to_at_least,
    pyav_decode,
    pyav_encode,
    pyav_unavailable,
    pyav_version,
)
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide

#: the largest QP difference between any two blocks that kvazaar codes (see clip_delta_qp)
MAX_QP_SPREAD = 25
_QP = Knob("qp", 0, 51, rate_rises=False, meaning="slice QP, lower is better")
_LADDER = ("qp42", "qp37", "qp32", "qp28", "qp24", "qp20")  # about 0.1 .. 1.4 bpp on photos


@register_codec
class HevcCodec(Codec):
    name = "hevc"
    knob = _QP
    raw_suffix = ".265"
    typical_level = "qp24"
    ladder = _LADDER
    library = "x265 (PyAV)"
    summary = "HEVC/H.265 intra picture, x265 at a fixed QP, raw Annex-B"
    install_hint = "pip install av"
    options = {
        "chroma": Option("420", ("420", "444"), "chroma subsampling"),
        "bit_depth": Option(8, (8, 10), "coded bit depth"),
        "preset": Option("medium", X26X_PRESETS, "x265 speed preset"),
        "tune": Option("none", ("none", "psnr", "ssim"), "x265 tuning (psnr turns off psy-rd)"),
    }
    pad_multiple = 2  # 4:2:0 needs even sizes

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return pyav_unavailable(("libx265", "w"), ("hevc", "r"))

    @classmethod
    def library_version(cls) -> str:
        # x265's own SEI banner: "x265 (build 215) - 4.1+1-1d117be:[Linux][GCC ...]..."
        banner = encoder_banner(
            "libx265", "yuv420p", (("x265-params", "log-level=error"),), b"x265 (build", b":["
        )
        version = banner.partition(" - ")[2] or banner
        return f"x265 {version}, {pyav_version()}" if version else pyav_version()

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        rgb = pad_to_at_least(rgb, 16, 16)  # x265 refuses pictures under 16x16
        params = ":".join([*self._rate_control(value), "ipratio=1", "info=0", "log-level=error"])
        settings = {"x265-params": params, "preset": options["preset"]}
        if options["tune"] != "none":
            settings["tune"] = options["tune"]  # an encoder option: x265-params ignores it
        pix_fmt = YUV_FORMATS[options["chroma"], options["bit_depth"]]
        return pyav_encode(rgb, "libx265", pix_fmt, settings, self._regions(rgb, value, options))

    def _rate_control(self, value: float) -> list[str]:
        """The x265-params that set the rate control: a fixed QP."""
        return [f"qp={int(value)}"]

    def _regions(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> list[Region]:
        """Region offsets for the frame: none at a fixed QP (x265 would ignore them)."""
        return []

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pyav_decode(data, "hevc", side)


@register_codec
class HevcCrfCodec(CrfRegions, HevcCodec):
    """x265 as ``hevc``, in CRF mode so that it takes a delta-QP map (module docstring).

    ``delta_qp`` (rows x cols of ints, any grid size) is scaled to the frame's 16x16 blocks and
    each block is coded at QP ``crf + delta``, clipped to 0..51. ``params["delta_qp"]`` records
    the map as given.
    """

    name = "hevc-crf"
    typical_level = "crf24"
    ladder = tuple(level.replace("qp", "crf") for level in _LADDER)
    summary = "HEVC/H.265 intra picture, x265 in CRF mode, delta-QP maps as region offsets"

    def _rate_control(self, value: float) -> list[str]:
        return [f"crf={int(value)}", "cutree=0", X26X_CRF_AQ, "qg-size=16"]


@register_codec
class KvazaarCodec(Codec):
    """HEVC intra by kvazaar, the encoder here that takes a per-block delta-QP map.

    ``delta_qp`` (rows x cols of ints, any grid size) is written as a kvazaar ROI file, which
    kvazaar scales to the picture, and each block is coded at ``qp + delta``. Deltas are clipped
    so that ``qp + delta`` stays inside 0..51 and no two blocks differ by more than 25 QPs
    (kvazaar aborts on larger steps); see :func:`clip_delta_qp`. ``params["delta_qp"]`` records
    the map as given.
    """

    name = "hevc-kvazaar"
    knob = _QP
    raw_suffix = ".265"  # .265 files decode as "hevc", the first registered; same decoder
    typical_level = "qp24"
    ladder = _LADDER
    library = "kvazaar (ffmpeg binary)"
    summary = "HEVC/H.265 intra picture, kvazaar at a fixed QP, per-block delta-QP maps"
    install_hint = "pip install imageio-ffmpeg av"
    options = {"preset": Option("medium", X26X_PRESETS, "kvazaar speed preset")}
    pad_multiple = 8  # kvazaar refuses sizes that are not multiples of 8
    supports_delta_qp = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return ffmpeg_unavailable("libkvazaar") or pyav_unavailable(("hevc", "r"))

    @classmethod
    def library_version(cls) -> str:
        return ffmpeg_version()

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        qp = int(value)
        # The preset goes first: kvazaar applies the list in order and a preset resets others.
        params = [f"preset={options['preset']}", f"qp={qp}", "intra-qp-offset=0", "info=0",
                  "hash=none"]  # fmt: skip
        delta_qp = options.get("delta_qp")
        with tempfile.TemporaryDirectory(prefix="icm-kvazaar-") as workdir:
            if delta_qp is not None:
                # A relative name in ffmpeg's working directory: kvazaar-params is split on
                # "," and "=", which a temporary path could contain.
                write_roi_file(Path(workdir) / "roi.txt", delta_qp, qp)
                params.append("roi=roi.txt")
            return ffmpeg_encode(
                rgb,
                ["-c:v", "libkvazaar", "-b:v", "0", "-kvazaar-params", ",".join(params)],
                pix_fmt="yuv420p",
                muxer="hevc",
                cwd=workdir,
            )

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pyav_decode(data, "hevc", side)


def clip_delta_qp(delta_qp: np.ndarray, qp: int) -> np.ndarray:
    """The deltas kvazaar can code around base ``qp``.

    Each block's QP ``qp + delta`` must lie in 0..51. And kvazaar refuses (it asserts and
    aborts) a QP step above 25 between blocks, since it does not use HEVC's modular QP deltas;
    so when the deltas, with 0 for the base, span more than 25, they are clipped to a 25-wide
    window that trims both ends in proportion to how far each reaches (at qp 20, deltas
    -10..+30 keep -6..+19). A map that fits is left exactly as given.
    """
    grid = np.clip(np.asarray(delta_qp, dtype=np.int64), -qp, 51 - qp)
    low, high = min(int(grid.min()), 0), max(int(grid.max()), 0)
    if high - low > MAX_QP_SPREAD:
        start = round(low * MAX_QP_SPREAD / (high - low))
        grid = np.clip(grid, start, start + MAX_QP_SPREAD)
    return grid


def write_roi_file(path: Path, delta_qp: np.ndarray, qp: int) -> None:
    """kvazaar's ROI format: ``"cols rows"`` then the deltas in raster order (clipped as above)."""
    grid = clip_delta_qp(delta_qp, qp)
    rows, cols = grid.shape
    lines = [f"{cols} {rows}"] + [" ".join(str(int(v)) for v in row) for row in grid]
    path.write_text("\n".join(lines) + "\n")
