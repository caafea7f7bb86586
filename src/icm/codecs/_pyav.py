"""Shared plumbing for video codecs run in-process through PyAV (FFmpeg's libavcodec).

One RGB frame is encoded as a single intra picture and the packets are concatenated into the
raw elementary stream (Annex-B for H.264/H.265, low-overhead OBUs for AV1), which is exactly
what a standard decoder reads. Decoding goes the other way with PyAV's parser and decoder.

Colour: RGB <-> YUV uses the BT.601 matrix with limited ("TV", 16-235) range on both sides, set
explicitly so encode and decode always agree; it is also what FFmpeg's swscale picks by default
for untagged video, so the ffmpeg-binary codecs convert the same way. The PyAV encoders tag the
stream's VUI / sequence header with it too, so any other decoder reads the colours right.

Region offsets (x264 and x265 in CRF mode): a delta-QP block map becomes a list of
:class:`Region` rectangles (:func:`delta_qp_regions`) that :func:`pyav_encode` attaches to the
frame as ``AV_FRAME_DATA_REGIONS_OF_INTEREST`` side data, through a PyAV filter graph of
``addroi`` filters; FFmpeg's libx264 / libx265 wrappers turn that side data into the encoder's
per-16x16-block ``quant_offsets`` / ``quantOffsets``. The wrappers' rules, which the regions are
built around: a rectangle is widened outwards to whole 16x16 blocks, the first region listed
wins where regions overlap, blocks outside every region get offset 0, and a region's
``qoffset`` (a rational in [-1, 1]) is multiplied by the encoder's QP range, 51 + 6 * (bit
depth - 8), to give the block's QP offset. So :func:`delta_qp_regions` resamples the map to the
16x16 block grid (each block takes the rounded mean of the map over its pixels), merges equal
neighbours into rectangles aligned to that grid, and emits only the blocks that differ from the
map's most common value, followed by one whole-frame region for that value when it is not 0.
The chain is bounded by :data:`MAX_REGIONS` (2048): a map that would need more is resampled
onto 32x32, 64x64... blocks until it fits (addroi copies the region list once per filter, so a
chain of n costs O(n^2): about 25 ms at 1000 regions, 0.5 s at 4000). A 768x512 picture has
1536 blocks, so it is never coarsened; a smooth 32x32 importance map on it takes about 150
regions, a random one about 1100 (building that graph: about 40 ms).

PyAV is imported inside the functions: a missing PyAV disables only these codecs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from icm.codecs.base import Knob, Picture
from icm.errors import IcmError, UndecodableError
from icm.limits import DecodeSide

#: The colour conversion shared by every video codec here (see the module docstring).
#: (chroma, bit depth) -> the planar YUV format every video codec here codes
YUV_FORMATS = {("420", 8): "yuv420p", ("444", 8): "yuv444p",
               ("420", 10): "yuv420p10le", ("444", 10): "yuv444p10le"}  # fmt: skip
#: x264 and x265 share their preset names (kvazaar accepts the same)
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")  # fmt: skip
#: x264 / x265 in CRF mode read region offsets only with adaptive quantisation on, and turn it
#: off at strength 0: this strength keeps it on while its own offsets (< 0.05 QP) round away
X26X_CRF_AQ = "aq-mode=1:aq-strength=0.001"

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


def pyav_filter_unavailable(*filters: str) -> str | None:
    """None when PyAV's libavfilter has every filter in ``filters``, else a short reason."""
    try:
        import av.filter
    except ImportError:
        return "PyAV is not installed"
    missing = [name for name in filters if name not in av.filter.filters_available]
    return f"this PyAV build has no {', '.join(missing)} filter" if missing else None


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


def pyav_encode(
    rgb: np.ndarray,
    encoder: str,
    pix_fmt: str,
    options: Mapping[str, str],
    regions: Sequence[Region] = (),
) -> bytes:
    """Encode one RGB frame as one intra picture; return the raw elementary bitstream.

    ``options`` are the encoder's AVOptions (``{"x265-params": "qp=30", "preset": "slow"}``).
    ``regions`` are attached to the frame as region-of-interest side data (see the module
    docstring); with none the frame goes to the encoder untouched. The encoder is flushed, so
    encoders with a look-ahead still emit the frame.
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
    if regions:
        frame = add_regions(frame, regions)
    try:
        packets = [*context.encode(frame), *context.encode(None)]
    except av.error.FFmpegError as exc:
        raise IcmError(f"{encoder} failed to encode a {width}x{height} frame: {exc}") from None
    data = b"".join(bytes(packet) for packet in packets)
    if not data:
        raise IcmError(f"{encoder} produced no bitstream for a {width}x{height} frame")
    return data


#: the block side of x264's macroblocks and of libx265.c's quantOffsets grid (x265 qg-size >= 16)
ROI_BLOCK = 16
#: the most addroi regions one frame gets (see the module docstring)
MAX_REGIONS = 2048


@dataclass(frozen=True)
class Region:
    """One ``addroi`` rectangle, in pixels, and its ``qoffset`` (fraction of the QP range)."""

    x: int
    y: int
    width: int
    height: int
    qoffset: Fraction

    def filter_args(self) -> str:
        """``addroi``'s arguments; the qoffset goes as an exact ``num/den``."""
        offset = f"{self.qoffset.numerator}/{self.qoffset.denominator}"
        return f"x={self.x}:y={self.y}:w={self.width}:h={self.height}:qoffset={offset}"


def delta_qp_regions(
    delta_qp: np.ndarray,
    width: int,
    height: int,
    qp_range: int,
    *,
    block: int = ROI_BLOCK,
    max_regions: int = MAX_REGIONS,
) -> list[Region]:
    """The ``addroi`` regions that code each block of a ``width x height`` frame at ``+delta``.

    ``delta_qp`` (rows x cols of ints, any grid size) is scaled to the frame, and each
    ``block`` square takes its area-weighted mean, rounded (the cell's value when the block
    lies in one cell, as it does when the grid divides the frame into multiples of 16 pixels).
    ``qp_range`` is the encoder wrapper's multiplier for ``qoffset`` (51 + 6 * (bit depth - 8)
    for x264 and x265), so ``qoffset = delta / qp_range``; deltas must lie within
    +-``qp_range``. The most common block value is the background: 0 gets no region at all (an
    all-zero map gives an empty list), anything else one whole-frame region listed last, which
    the regions before it override. The rest are merged into rectangles (runs along rows, then
    equal runs down columns). More than ``max_regions`` and the block side doubles until the
    list fits.
    """
    grid = np.asarray(delta_qp, dtype=np.int64)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError("a delta-QP map is a non-empty 2-D array")
    if np.abs(grid).max() > qp_range:
        raise ValueError(f"delta-QP values must lie within +-{qp_range}")
    while True:
        blocks = _block_means(grid, width, height, block)
        background = _most_common(blocks)
        rectangles = _merge_rectangles(blocks, background)
        if len(rectangles) + (background != 0) <= max_regions or block >= max(width, height):
            break
        block *= 2
    regions = [
        Region(
            x0 * block,
            y0 * block,
            min(x1 * block, width) - x0 * block,
            min(y1 * block, height) - y0 * block,
            Fraction(value, qp_range),
        )
        for x0, y0, x1, y1, value in rectangles
    ]
    if background:
        regions.append(Region(0, 0, width, height, Fraction(background, qp_range)))
    return regions


def x26x_regions(
    delta_qp: np.ndarray, width: int, height: int, crf: int, bit_depth: int, lowest_qp: int
) -> list[Region]:
    """x264 / x265 regions that code each block at QP ``crf + delta`` (a picture coded at crf).

    Both wrappers scale ``qoffset`` by 51 + 6 * (bit depth - 8), so ``qoffset = delta / 51``
    at 8 bits and ``delta / 63`` at 10. Block QPs are clipped to ``lowest_qp..51`` first (the
    range the encoder clamps to anyway), so a delta beyond it costs no region of its own.
    """
    grid = np.clip(np.asarray(delta_qp, dtype=np.int64), lowest_qp - crf, 51 - crf)
    return delta_qp_regions(grid, width, height, 51 + 6 * (bit_depth - 8))


def _block_means(grid: np.ndarray, width: int, height: int, block: int) -> np.ndarray:
    """Each ``block`` square's area-weighted mean of the map scaled to the frame, rounded.

    Map cell ``(r, c)`` covers the pixels ``y * rows // height == r``, ``x * cols // width ==
    c``; a block inside one cell takes its value exactly, one across a cell edge a rounded
    (half up) mix, and a map finer than the blocks is averaged rather than aliased.
    """

    def weights(size: int, count: int) -> np.ndarray:  # (blocks, cells): pixels in common
        table = np.zeros((-(-size // block), count))
        pixels = np.arange(size)
        np.add.at(table, (pixels // block, pixels * count // size), 1.0)
        return table

    down, across = weights(height, grid.shape[0]), weights(width, grid.shape[1])
    area = down.sum(axis=1)[:, None] * across.sum(axis=1)[None, :]
    return np.floor(down @ grid @ across.T / area + 0.5).astype(np.int64)


def _most_common(blocks: np.ndarray) -> int:
    """The most common value; 0 when it ties for most common, else the lowest of the tied."""
    values, counts = np.unique(blocks, return_counts=True)
    if counts[values == 0].sum() == counts.max():
        return 0
    return int(values[counts.argmax()])


def _merge_rectangles(blocks: np.ndarray, background: int) -> list[tuple[int, int, int, int, int]]:
    """Rectangles covering each block not equal to ``background`` exactly once.

    ``(x0, y0, x1, y1, value)`` in blocks, ends excluded: runs of equal values along each row,
    stacked while the rows below repeat the same run; listed top to bottom, left to right.
    """
    rows, cols = blocks.shape
    open_runs: dict[tuple[int, int, int], int] = {}  # (x0, x1, value) -> first row
    rectangles = []
    for y in range(rows + 1):
        runs = set()
        if y < rows:
            row = blocks[y].tolist()
            x = 0
            while x < cols:
                end = x + 1
                while end < cols and row[end] == row[x]:
                    end += 1
                if row[x] != background:
                    runs.add((x, end, row[x]))
                x = end
        for run in [run for run in open_runs if run not in runs]:
            x0, x1, value = run
            rectangles.append((x0, open_runs.pop(run), x1, y, value))
        for run in runs:
            open_runs.setdefault(run, y)
    return sorted(rectangles, key=lambda r: (r[1], r[0]))


def add_regions(frame, regions: Sequence[Region]):
    """``frame`` with ``regions`` as ROI side data, from a chain of ``addroi`` filters."""
    import av.filter

    graph = av.filter.Graph()
    node = graph.add_buffer(
        width=frame.width, height=frame.height, format=frame.format.name, time_base=Fraction(1, 25)
    )
    for region in regions:
        roi = graph.add("addroi", region.filter_args())
        node.link_to(roi)
        node = roi
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    graph.push(frame)
    return graph.pull()


def pyav_decode(data: bytes, decoder: str, side: DecodeSide) -> Picture:
    """Decode a raw elementary bitstream; return its first picture as RGB uint8, with the
    chroma and bit depth it was coded at.

    Raises :class:`IcmError` when the bytes do not decode to a whole picture: corrupt,
    truncated (see :func:`_depends_on_bytes_past_end`), or over the side's pixel limit, which
    is checked on the size the parser reads from the sequence header, before the decoder
    allocates a frame (FFmpeg's own ``max_pixels`` is the backstop, with room for padding).
    The decoder runs on one thread: a single picture gains little from more (measured: within
    1-2 ms on 768x512), and FFmpeg 8's native VVC decoder, threaded, now and then returns a
    garbage picture for the same bytes (seen on narrow pictures such as 129x17).
    """
    frame = _first_frame(data, decoder, side)
    if frame.is_corrupt:  # h264 marks a picture whose slices ran out of data
        raise UndecodableError(
            f"bitstream is truncated or corrupt: {decoder} reports a damaged picture")
    if decoder in _SILENT_ON_TRUNCATION and _depends_on_bytes_past_end(data, decoder, side,
                                                                      frame):
        raise UndecodableError(f"bitstream is truncated: its picture depends on bytes past its end "
                       f"({len(data)} bytes)")
    return Picture(to_rgb(frame), *sampling_of(frame.format.name))


def sampling_of(pix_fmt: str) -> tuple[str, int]:
    """(chroma, bit depth) of an FFmpeg pixel format: ``yuv420p10le`` -> ("420", 10)."""
    found = re.fullmatch(r"(?:yuvj?(\d{3})|(gray))p?(\d+)?(?:le|be)?", pix_fmt)
    if found is None:
        return pix_fmt, 0  # a format no icm encoder writes: never equal to a header's
    chroma = found.group(1) or "400"
    return chroma, int(found.group(3) or 8)


#: decoders that conceal a truncated slice without a sign (FFmpeg's HEVC reads zeros past the
#: end); h264 flags the frame corrupt, and dav1d and VVC fail outright (measured on cuts at
#: 30..99.9% of x265, kvazaar, x264, SVT-AV1 and VVenC streams)
_SILENT_ON_TRUNCATION = frozenset({"hevc"})
#: what the truncation probe appends: no start code can form in it
_PAST_END = b"\xff" * 32


def _depends_on_bytes_past_end(data: bytes, decoder: str, side: DecodeSide, frame) -> bool:
    """Whether the picture changes when junk follows the stream.

    An arithmetic-coded slice that is whole ends with a flush that makes its last bins
    decodable whatever follows (that is what the stop bit after the flush is for), so a
    complete stream decodes to the same picture with junk appended. A truncated slice makes
    the decoder read past the end, and what it finds there changes the picture: measured, every
    cut of x265 and kvazaar streams (28 per stream, 5 rates each) is caught, and no whole one.
    The two decodes are compared as coded (YUV planes), before any conversion to RGB.
    """
    try:
        probe = _first_frame(data + _PAST_END, decoder, side)
    except IcmError:
        return False  # the junk itself was refused: no sign either way
    return _planes(probe) != _planes(frame)


def _planes(frame) -> list[bytes]:
    """The visible samples of each plane (rows without the decoder's line padding)."""
    sample_bytes = 2 if sampling_of(frame.format.name)[1] > 8 else 1
    visible = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        visible.append(rows[:, : plane.width * sample_bytes].tobytes())
    return visible


def _first_frame(data: bytes, decoder: str, side: DecodeSide):
    import av

    context = av.CodecContext.create(decoder, "r")
    context.thread_count = 1
    context.options = {"max_pixels": str(int(side.max_pixels * _PADDING_ROOM) + 1)}
    frames = []
    try:
        packets = [*context.parse(bytes(data)), *context.parse(None)]
        side.check_pixels(context.width, context.height, "the bitstream's picture")
        for packet in packets:
            frames.extend(context.decode(packet))
        frames.extend(context.decode(None))
    except (av.error.FFmpegError, ValueError) as exc:
        raise UndecodableError(f"bitstream does not decode with {decoder}: {exc}") from None
    if not frames:
        raise UndecodableError(
            f"bitstream does not decode with {decoder}: no picture in {len(data)} bytes")
    return frames[0]


#: FFmpeg's backstop limit over ours: coded pictures are padded to whole blocks
_PADDING_ROOM = 1.25


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


class CrfRegions:
    """What x265's and x264's CRF-mode codecs share: the CRF knob, the ``addroi`` filter they
    need, and delta-QP maps turned into region offsets (see :func:`x26x_regions`).

    Mixed in before the fixed-QP codec class, whose ``_encode`` asks ``_regions``; the codec
    says how low its QPs go (``lowest_qp``: x264 counts high-depth QPs below 0).
    """

    knob = Knob("crf", 0, 51, rate_rises=False, meaning="CRF; a lone picture codes at QP = crf")
    supports_delta_qp = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return super().unavailable_reason() or pyav_filter_unavailable("buffer", "addroi")

    @staticmethod
    def lowest_qp(bit_depth: int) -> int:
        return 0

    def _regions(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> list[Region]:
        delta_qp = options.get("delta_qp")
        if delta_qp is None:
            return []
        height, width = rgb.shape[:2]
        bit_depth = options["bit_depth"]
        return x26x_regions(delta_qp, width, height, int(value), bit_depth,
                            self.lowest_qp(bit_depth))
