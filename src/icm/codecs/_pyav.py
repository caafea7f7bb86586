"""Shared plumbing for video codecs run in-process through PyAV (FFmpeg's libavcodec).

One RGB frame is encoded as a single intra picture and the packets are concatenated into the
raw elementary stream (Annex-B for H.264/H.265, low-overhead OBUs for AV1), which is exactly
what a standard decoder reads. Decoding goes the other way with PyAV's parser and decoder.

Colour: RGB <-> YUV uses the BT.601 matrix with limited ("TV", 16-235) range on both sides, set
explicitly so encode and decode always agree; it is also what FFmpeg's swscale picks by default
for untagged video, so the ffmpeg-binary codecs convert the same way. The PyAV encoders tag the
stream's VUI / sequence header with it too, so any other decoder reads the colours right.

PyAV is imported inside the functions: a missing PyAV disables only these codecs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from fractions import Fraction

import numpy as np

from icm.errors import IcmError

#: The colour conversion shared by every video codec here (see the module docstring).
#: (chroma, bit depth) -> the planar YUV format every video codec here codes
YUV_FORMATS = {("420", 8): "yuv420p", ("444", 8): "yuv444p",
               ("420", 10): "yuv420p10le", ("444", 10): "yuv444p10le"}  # fmt: skip
#: x264 and x265 share their preset names (kvazaar accepts the same)
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")  # fmt: skip

COLORSPACE = "ITU601"
COLOR_RANGE = "MPEG"
# The same as AVCodecContext enums: AVCOL_SPC_SMPTE170M (BT.601) and AVCOL_RANGE_MPEG.
_SPC_SMPTE170M, _RANGE_MPEG = 6, 1


def pyav_unavailable(*codecs: tuple[str, str]) -> str | None:
    """None when PyAV imports and has every ``(name, 'w' | 'r')`` codec, else a short reason."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed"
    for name, mode in codecs:
        try:
            av.codec.Codec(name, mode)
        except Exception:  # av raises UnknownCodecError, not exported under one stable name
            role = "encoder" if mode == "w" else "decoder"
            return f"this PyAV build has no {name} {role}"
    return None


def pyav_version() -> str:
    """``'libavcodec 62.28.102, PyAV 18.1.0'``."""
    import av

    major, minor, micro = av.library_versions["libavcodec"]
    return f"libavcodec {major}.{minor}.{micro}, PyAV {av.__version__}"


def pad_to_at_least(rgb: np.ndarray, min_height: int, min_width: int) -> np.ndarray:
    """Edge-replicate the right and bottom so the frame is at least ``min_height x min_width``.

    Some encoders refuse (or, worse, hang on) tiny frames; the extra pixels are cropped away by
    ``Codec.decode`` like the block padding is.
    """
    pad_h, pad_w = max(0, min_height - rgb.shape[0]), max(0, min_width - rgb.shape[1])
    if not (pad_h or pad_w):
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def pyav_encode(rgb: np.ndarray, encoder: str, pix_fmt: str, options: Mapping[str, str]) -> bytes:
    """Encode one RGB frame as one intra picture; return the raw elementary bitstream.

    ``options`` are the encoder's AVOptions (``{"x265-params": "qp=30", "preset": "slow"}``).
    The encoder is flushed, so encoders with a look-ahead still emit the frame.
    """
    import av

    height, width = rgb.shape[:2]
    context = av.CodecContext.create(encoder, "w")
    context.width, context.height = width, height
    context.pix_fmt = pix_fmt
    context.time_base = Fraction(1, 25)
    context.framerate = Fraction(25, 1)
    context.colorspace = _SPC_SMPTE170M
    context.color_range = _RANGE_MPEG
    context.options = dict(options)
    frame = to_yuv(rgb, pix_fmt)
    frame.pts = 0
    try:
        packets = [*context.encode(frame), *context.encode(None)]
    except av.error.FFmpegError as exc:
        raise IcmError(f"{encoder} failed to encode a {width}x{height} frame: {exc}") from None
    data = b"".join(bytes(packet) for packet in packets)
    if not data:
        raise IcmError(f"{encoder} produced no bitstream for a {width}x{height} frame")
    return data


def pyav_decode(data: bytes, decoder: str) -> np.ndarray:
    """Decode a raw elementary bitstream; return its first picture as RGB uint8.

    Raises :class:`IcmError` when the bytes do not decode to a picture (truncated or corrupt).
    The decoder runs on one thread: a single picture gains little from more (measured: within
    1-2 ms on 768x512), and FFmpeg 8's native VVC decoder, threaded, now and then returns a
    garbage picture for the same bytes (seen on narrow pictures such as 129x17).
    """
    import av

    context = av.CodecContext.create(decoder, "r")
    context.thread_count = 1
    frames = []
    try:
        for packet in [*context.parse(bytes(data)), *context.parse(None)]:
            frames.extend(context.decode(packet))
        frames.extend(context.decode(None))
    except (av.error.FFmpegError, ValueError) as exc:
        raise IcmError(f"bitstream does not decode with {decoder}: {exc}") from None
    if not frames:
        raise IcmError(f"bitstream does not decode with {decoder}: no picture in {len(data)} bytes")
    return to_rgb(frames[0])


def to_yuv(rgb: np.ndarray, pix_fmt: str):
    """An ``av.VideoFrame`` in ``pix_fmt`` from RGB, with the BT.601 limited-range matrix."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format=pix_fmt, dst_colorspace=COLORSPACE, dst_color_range=COLOR_RANGE)


def to_rgb(frame) -> np.ndarray:
    """RGB uint8 from a decoded ``av.VideoFrame``, with the BT.601 limited-range matrix."""
    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=COLORSPACE,
        src_color_range=COLOR_RANGE,
        dst_colorspace=COLORSPACE,
        dst_color_range="JPEG",
    )
    return np.ascontiguousarray(rgb.to_ndarray())


@functools.cache
def encoder_banner(
    encoder: str, pix_fmt: str, options: tuple[tuple[str, str], ...], marker: bytes, end: bytes
) -> str:
    """The version banner an encoder writes into its stream (x264/x265 SEI), or ``''``.

    Encodes one tiny grey frame with ``options`` and returns the text from ``marker`` up to the
    first ``end`` byte string. Cached: it runs once per process.
    """
    try:
        data = pyav_encode(np.full((16, 16, 3), 128, np.uint8), encoder, pix_fmt, dict(options))
    except Exception:
        return ""
    start = data.find(marker)
    if start < 0:
        return ""
    stop = data.find(end, start)
    text = data[start : stop if stop > start else start + 80]
    return text.decode("ascii", "replace").strip()
