"""Shared plumbing for encoders only the imageio-ffmpeg static binary has (vvenc, kvazaar, aom).

The frame goes to ``ffmpeg`` as raw ``rgb24`` on stdin and the raw elementary bitstream comes
back on stdout (``-f hevc`` / ``vvc`` / ``obu``); no file touches the disk. The binary's
swscale converts RGB to YUV with its default for untagged input, BT.601 limited range, and the
output is tagged BT.601 as well, which is the matrix ``icm.codecs._pyav`` decodes with.

imageio-ffmpeg is imported inside the functions: without it only these codecs are unavailable.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icm.errors import IcmError


@functools.cache
def ffmpeg_exe() -> str | None:
    """Path of the imageio-ffmpeg binary, or None when it is not installed or not there."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # ImportError, or RuntimeError when the binary is missing
        return None
    return exe if exe and Path(exe).is_file() else None


@functools.cache
def ffmpeg_encoders() -> frozenset[str]:
    """Names of the encoders the binary lists in ``-encoders`` (empty if it does not run)."""
    exe = ffmpeg_exe()
    if exe is None:
        return frozenset()
    try:
        listing = subprocess.run(
            [exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    names = set()
    for line in listing.splitlines():
        fields = line.split()
        # rows look like " V....D libx265   libx265 H.265 / HEVC"; the header ends with "------"
        if len(fields) >= 2 and len(fields[0]) == 6 and fields[0][0] in "VAS":
            names.add(fields[1])
    return frozenset(names)


def ffmpeg_unavailable(encoder: str) -> str | None:
    """None when the binary exists and has ``encoder``, else a short reason."""
    if ffmpeg_exe() is None:
        return "the imageio-ffmpeg binary is not installed"
    if encoder not in ffmpeg_encoders():
        return f"this ffmpeg binary has no {encoder} encoder"
    return None


@functools.cache
def ffmpeg_version() -> str:
    """``'ffmpeg version n9.0.2-... (imageio-ffmpeg 0.8.1)'``: the first line of ``-version``."""
    exe = ffmpeg_exe()
    if exe is None:
        return ""
    try:
        first = subprocess.run(
            [exe, "-version"], capture_output=True, text=True, timeout=60
        ).stdout.partition("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return ""
    line = first.partition(" Copyright")[0].strip()
    try:
        import imageio_ffmpeg

        return f"{line} (imageio-ffmpeg {imageio_ffmpeg.__version__})"
    except ImportError:  # pragma: no cover - ffmpeg_exe() needed it already
        return line


def ffmpeg_encode(
    rgb: np.ndarray,
    codec_args: Sequence[str],
    *,
    pix_fmt: str,
    muxer: str,
    cwd: str | Path | None = None,
) -> bytes:
    """Encode one RGB frame with the ffmpeg binary; return the raw bitstream from stdout.

    ``codec_args`` are the output options (``["-c:v", "libvvenc", "-qp", "32"]``), ``pix_fmt``
    the YUV format the encoder gets, ``muxer`` the raw muxer (``hevc``, ``vvc``, ``obu``).
    ``cwd`` lets an encoder read side files (kvazaar's ROI map) by a plain relative name. A
    non-zero exit raises :class:`IcmError` with ffmpeg's last line of stderr.
    """
    exe = ffmpeg_exe()
    if exe is None:
        raise IcmError("the imageio-ffmpeg binary is not installed (pip install imageio-ffmpeg)")
    height, width = rgb.shape[:2]
    command = [
        exe, "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-i", "-",
        "-frames:v", "1", "-pix_fmt", pix_fmt,
        "-colorspace", "smpte170m", "-color_primaries", "smpte170m",
        "-color_trc", "smpte170m", "-color_range", "tv",
        *codec_args,
        "-f", muxer, "-",
    ]  # fmt: skip
    result = subprocess.run(
        command, input=np.ascontiguousarray(rgb).tobytes(), capture_output=True, cwd=cwd
    )
    if result.returncode != 0 or not result.stdout:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1].strip() if lines else f"exit status {result.returncode}, no output"
        encoder = _encoder_name(codec_args)
        raise IcmError(f"ffmpeg {encoder} failed on a {width}x{height} frame: {last}")
    return result.stdout


def _encoder_name(codec_args: Sequence[str]) -> str:
    args = list(codec_args)
    for flag in ("-c:v", "-codec:v", "-vcodec"):
        if flag in args[:-1]:
            return args[args.index(flag) + 1]
    return "encoder"
