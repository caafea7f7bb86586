"""x265 and x264 in CRF mode with delta-QP maps as ``addroi`` regions: ``hevc-crf``, ``avc-crf``.

The interface tests every codec gets are in test_codecs.py; these check what the maps do: a
delta of +d is d QP steps (exactly, on the per-macroblock QPs an H.264 decoder exports; by
rate and PSNR against the fixed-QP encoder for x265), only where asked, an all-zero map is no
map, and the streams stay standard. And how a map becomes regions.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from icm.codecs import CODECS, get_codec
from icm.codecs._ffmpeg import ffmpeg_exe
from icm.codecs._pyav import Region, delta_qp_regions, pyav_encode, x26x_regions
from icm.image import sample_photo
from icm.metrics import psnr

#: codec -> (its fixed-QP sibling, the FFmpeg decoder a plain PyAV user would pick)
ROI_CODECS = {"hevc-crf": ("hevc", "hevc"), "avc-crf": ("avc", "h264")}
LEFT, RIGHT = np.s_[:, :64], np.s_[:, 64:]


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """128x96: 8x6 blocks of 16, the two halves split on a block edge."""
    return np.ascontiguousarray(sample_photo("astronaut")[40:136, 120:248])


@pytest.fixture(params=list(ROI_CODECS))
def codec(request):
    reason = CODECS[request.param].unavailable_reason()
    if reason is not None:
        pytest.skip(f"{request.param} unavailable here: {reason}")
    return get_codec(request.param)


def plain_pyav_decode(data: bytes, decoder: str, **options: str):
    """A stock decode, written without icm: parse the raw stream, decode, flush."""
    import av

    context = av.CodecContext.create(decoder, "r")
    context.thread_count = 1
    context.options = options
    frames = []
    for packet in context.parse(data) + context.parse(None):
        frames.extend(context.decode(packet))
    frames.extend(context.decode(None))
    assert len(frames) == 1
    return frames[0]


def h264_macroblock_qps(data: bytes) -> np.ndarray:
    """The QP of each macroblock, as FFmpeg's h264 decoder exports it (8-bit scale + 6*(bd-8))."""
    frame = plain_pyav_decode(data, "h264", export_side_data="venc_params")
    side_data = frame.side_data
    for index in range(len(side_data)):  # PyAV's container iterates badly; index it
        if hasattr(side_data[index], "qp_map"):
            return np.asarray(side_data[index].qp_map())
    raise AssertionError("the h264 decoder exported no encoding parameters")


def slice_qp(data: bytes, demuxer: str) -> int:
    """26 + init_qp_minus26 + slice_qp_delta, from ffmpeg's trace_headers bitstream filter."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-f", demuxer, "-i", "-", "-c", "copy",
         "-bsf:v", "trace_headers", "-f", "null", "-"],
        input=data, capture_output=True, check=True,
    )  # fmt: skip
    fields = {}
    for line in result.stderr.decode("utf-8", "replace").splitlines():
        tokens = line.split("]", 1)[-1].split()
        if len(tokens) >= 4 and tokens[-2] == "=":
            fields[tokens[1]] = int(tokens[-1])
    init = fields.get("init_qp_minus26", fields.get("pic_init_qp_minus26"))
    return 26 + init + fields["slice_qp_delta"]


# -- what a map does ---------------------------------------------------------------------------
def test_left_half_offset_coarsens_only_the_left_half(codec, small):
    plain = codec.encode(small, "crf30")
    mapped = codec.encode(small, "crf30", delta_qp=np.array([[10, 0]]))
    assert len(mapped.data) < 0.9 * len(plain.data)
    assert mapped.params["delta_qp"].startswith("2x1 crc32=")
    plain_rgb, mapped_rgb = codec.decode(plain), codec.decode(mapped)
    assert psnr(small[LEFT], mapped_rgb[LEFT]) < psnr(small[LEFT], plain_rgb[LEFT]) - 3
    assert abs(psnr(small[RIGHT], mapped_rgb[RIGHT]) - psnr(small[RIGHT], plain_rgb[RIGHT])) < 0.5


def test_negative_offset_refines_only_where_asked(codec, small):
    plain = codec.encode(small, "crf30")
    mapped = codec.encode(small, "crf30", delta_qp=np.array([[0, -10]]))
    assert len(mapped.data) > 1.5 * len(plain.data)
    plain_rgb, mapped_rgb = codec.decode(plain), codec.decode(mapped)
    assert psnr(small[RIGHT], mapped_rgb[RIGHT]) > psnr(small[RIGHT], plain_rgb[RIGHT]) + 3
    assert abs(psnr(small[LEFT], mapped_rgb[LEFT]) - psnr(small[LEFT], plain_rgb[LEFT])) < 0.5


def test_all_zero_map_is_no_map(codec, small):
    """A zero map makes no region; a zero region, sent anyway, changes no byte either."""
    plain = codec.encode(small, "crf30")
    assert codec.encode(small, "crf30", delta_qp=np.zeros((4, 4), np.int64)).data == plain.data
    assert x26x_regions(np.zeros((4, 4), np.int64), 128, 96, 30, 8, 0) == []
    encoder = {"hevc-crf": "libx265", "avc-crf": "libx264"}[codec.name]
    settings = {"preset": "medium"}
    if codec.name == "hevc-crf":
        params = [*codec._rate_control(30), "ipratio=1", "info=0", "log-level=error"]
        settings["x265-params"] = ":".join(params)
    else:
        settings.update(codec._rate_control(30, 8))
    bare = pyav_encode(small, encoder, "yuv420p", settings)
    zero = pyav_encode(small, encoder, "yuv420p", settings, [Region(0, 0, 128, 96, Fraction(0))])
    assert zero == bare


def test_mapped_stream_decodes_with_a_stock_decoder(codec, small):
    data = codec.encode(small, "crf30", delta_qp=np.array([[6, -4], [0, 8]])).data
    assert data[:4] == b"\x00\x00\x00\x01"  # raw Annex-B
    frame = plain_pyav_decode(data, ROI_CODECS[codec.name][1])
    assert (frame.height, frame.width) == small.shape[:2]
    assert frame.format.name == "yuv420p"
    assert psnr(small, frame.to_ndarray(format="rgb24")) > 28


def test_mapped_encoding_is_deterministic(codec, small):
    grid = np.random.default_rng(3).integers(-8, 9, (5, 7))
    first = codec.encode(small, "crf28", delta_qp=grid)
    assert codec.encode(small, "crf28", delta_qp=grid).data == first.data


def test_10_bit_and_444_take_maps(codec, small):
    for options in ({"bit_depth": 10}, {"chroma": "444"}):
        plain = codec.encode(small, "crf30", **options)
        mapped = codec.encode(small, "crf30", delta_qp=np.array([[10, 0]]), **options)
        assert len(mapped.data) < 0.9 * len(plain.data)
        mapped_rgb, plain_rgb = codec.decode(mapped), codec.decode(plain)
        assert psnr(small[LEFT], mapped_rgb[LEFT]) < psnr(small[LEFT], plain_rgb[LEFT]) - 3


def test_out_of_range_deltas_are_clipped_not_refused(codec, small):
    for level, grid in [("crf30", [[60, -60]]), ("crf2", [[-40, 0]]), ("crf50", [[9, 0]])]:
        bitstream = codec.encode(small, level, delta_qp=np.array(grid))
        assert psnr(small, codec.decode(bitstream)) > 15


def test_map_encodes_print_nothing(codec, small, capfd):
    codec.encode(small, "crf30", delta_qp=np.array([[10, 0]]))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# -- the level and the mapping -----------------------------------------------------------------
def test_the_level_is_the_slice_qp(codec, small):
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg binary for trace_headers")
    demuxer = ROI_CODECS[codec.name][1]
    for level, bit_depth in [("crf30", 8), ("crf17", 10)]:
        data = codec.encode(small, level, bit_depth=bit_depth).data
        assert slice_qp(data, demuxer) == int(level[3:])


def test_avc_crf_without_a_map_is_avc_at_that_qp(small):
    if CODECS["avc-crf"].unavailable_reason() is not None:
        pytest.skip("x264 through PyAV unavailable")
    for bit_depth in (8, 10):
        crf = get_codec("avc-crf").encode(small, "crf30", bit_depth=bit_depth)
        assert crf.data == get_codec("avc").encode(small, "qp30", bit_depth=bit_depth).data


@pytest.mark.parametrize(("delta", "expected"), [(1, 31), (-1, 29), (7, 37), (-10, 20),
                                                 (20, 50), (25, 51), (-40, 0)])  # fmt: skip
def test_x264_delta_is_qp_steps(delta, expected, small):
    """Every macroblock of a whole-frame map is coded at crf + delta, clamped to 0..51."""
    if CODECS["avc-crf"].unavailable_reason() is not None:
        pytest.skip("x264 through PyAV unavailable")
    data = get_codec("avc-crf").encode(small, "crf30", delta_qp=np.array([[delta]])).data
    assert (h264_macroblock_qps(data) == expected).all()


def test_x264_delta_is_qp_steps_at_10_bits(small):
    """qoffset is delta/63 at 10 bits; the decoder reports QP + 12, and -12 is the floor."""
    avc = get_codec("avc-crf")
    for level, delta, expected in [("crf30", 10, 40), ("crf30", -40, -10), ("crf5", -30, -12)]:
        data = avc.encode(small, level, bit_depth=10, delta_qp=np.array([[delta]])).data
        assert (h264_macroblock_qps(data) - 12 == expected).all()


def test_x264_offsets_land_on_the_macroblocks_asked(small):
    """A 2x3 map on 8x6 macroblocks (columns of 42.7 pixels: the blocks across an edge mix).

    A macroblock with no coded residual reports the predicted QP, so a few may differ.
    """
    grid = np.array([[5, 5, 0], [5, -3, 5]])
    data = get_codec("avc-crf").encode(small, "crf30", delta_qp=grid).data
    qps = h264_macroblock_qps(data)
    wanted = 30 + block_means(grid, 128, 96)[::16, ::16]
    assert wanted[:, 2].tolist() == [35, 35, 35, 33, 33, 33]  # 11 pixels of 5, 5 of -3
    assert (qps == wanted).mean() > 0.85
    assert (qps[3:, 3:5] == 27).all()  # the -3 cell: textured, every macroblock coded


@pytest.mark.parametrize("delta", [-6, 4, 10])
def test_x265_delta_is_qp_steps(delta, small):
    """A whole-frame +d at crf30 is, by rate and PSNR, hevc at QP 30 + d and at no other QP."""
    if CODECS["hevc-crf"].unavailable_reason() is not None:
        pytest.skip("x265 through PyAV unavailable")
    hevc, crf = get_codec("hevc"), get_codec("hevc-crf")
    mapped = crf.encode(small, "crf30", delta_qp=np.array([[delta]]))
    finer, same, coarser = (hevc.encode(small, 30 + delta + step) for step in (-1, 0, 1))
    assert len(coarser.data) < len(mapped.data) < len(finer.data)
    assert len(mapped.data) == pytest.approx(len(same.data), rel=0.05)
    quality = [psnr(small, hevc.decode(b)) for b in (coarser, finer)]
    assert quality[0] < psnr(small, crf.decode(mapped)) < quality[1]


# -- how a map becomes regions -----------------------------------------------------------------
def paint(regions: list[Region], width: int, height: int, qp_range: int) -> np.ndarray:
    """Per-pixel offsets as the wrappers apply them: later regions first, so the first wins."""
    canvas = np.zeros((height, width), np.int64)
    for region in reversed(regions):
        offset = region.qoffset * qp_range
        assert offset.denominator == 1 and -1 <= region.qoffset <= 1
        assert region.x % 16 == 0 and region.y % 16 == 0  # whole blocks: nothing to widen
        canvas[region.y : region.y + region.height, region.x : region.x + region.width] = offset
    return canvas


def block_means(grid: np.ndarray, width: int, height: int, block: int = 16) -> np.ndarray:
    """The map stretched over the pixels, each block's pixels set to their mean, rounded."""
    rows, cols = grid.shape
    pixels = grid[np.ix_(np.arange(height) * rows // height, np.arange(width) * cols // width)]
    out = np.empty((height, width), np.int64)
    for y in range(0, height, block):
        for x in range(0, width, block):
            patch = pixels[y : y + block, x : x + block]
            out[y : y + block, x : x + block] = np.floor(patch.mean() + 0.5)
    return out


def test_halves_make_one_region():
    assert delta_qp_regions(np.array([[10, 0]]), 128, 96, 51) == [
        Region(0, 0, 64, 96, Fraction(10, 51))
    ]
    assert delta_qp_regions(np.array([[10, 0]]), 128, 96, 63)[0].qoffset == Fraction(10, 63)


def test_a_common_non_zero_value_becomes_one_background_region_listed_last():
    grid = np.full((6, 8), 4)
    grid[2:4, 2:5] = 0
    regions = delta_qp_regions(grid, 128, 96, 51)
    assert regions == [Region(32, 32, 48, 32, Fraction(0)), Region(0, 0, 128, 96, Fraction(4, 51))]


SHAPES_AND_SIZES = [((6, 8), (128, 96)), ((32, 32), (768, 512)), ((3, 5), (101, 67)),
                    ((50, 40), (200, 130))]  # fmt: skip


@pytest.mark.parametrize(("shape", "size"), SHAPES_AND_SIZES)
def test_regions_reproduce_the_map_block_for_block(shape, size):
    rng = np.random.default_rng(sum(shape))
    width, height = size
    rows = np.repeat(rng.integers(-9, 9, (shape[0], 1)), shape[1], axis=1)
    for grid in (rng.integers(-3, 4, shape), rows):
        regions = delta_qp_regions(grid, width, height, 51)
        assert (paint(regions, width, height, 51) == block_means(grid, width, height)).all()
        assert len(regions) <= -(-width // 16) * -(-height // 16)
    assert len(delta_qp_regions(rows, width, height, 51)) <= -(-height // 16)


def test_merging_keeps_smooth_maps_to_few_regions():
    """A 32x32 importance-like map on 768x512 needs far fewer than its 1536 blocks."""
    y, x = np.mgrid[0:32, 0:32]
    grid = np.rint(6 * np.cos(x / 10.0) * np.cos(y / 12.0)).astype(np.int64)
    regions = delta_qp_regions(grid, 768, 512, 51)
    assert len(regions) < 200
    assert (paint(regions, 768, 512, 51) == block_means(grid, 768, 512)).all()


def test_too_many_regions_coarsen_the_block_grid():
    checker = np.indices((32, 48)).sum(axis=0) % 2 * 5  # 768 regions at 16x16
    assert len(delta_qp_regions(checker, 768, 512, 51)) == 768
    capped = delta_qp_regions(checker, 768, 512, 51, max_regions=300)
    assert 0 < len(capped) <= 300
    assert all(r.x % 32 == 0 and r.y % 32 == 0 for r in capped)
    assert (paint(capped, 768, 512, 51) == block_means(checker, 768, 512, block=32)).all()


def test_deltas_are_clipped_to_the_encoders_qp_range():
    grid = np.array([[60, -60]])
    assert [r.qoffset * 51 for r in x26x_regions(grid, 128, 96, 30, 8, 0)] == [21, -30]
    assert [r.qoffset * 63 for r in x26x_regions(grid, 128, 96, 30, 10, -12)] == [21, -42]
    with pytest.raises(ValueError, match="within"):
        delta_qp_regions(grid, 128, 96, 51)
