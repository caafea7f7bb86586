"""JPEG's per-block quantisation: delta-QP maps emulated by dropping coefficients.

The file must stay a baseline JPEG that Pillow opens, a map that asks for nothing must change
nothing, and a coarser block must cost bits and PSNR only where the map asks for it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.fft import dctn

from icm.codecs import get_codec
from icm.codecs.jpeg import block_offsets, drop_coefficients, quant_tables
from icm.errors import UnknownCodecError
from icm.metrics import psnr


def pillow_tables(image: np.ndarray, quality: int) -> dict[int, list[int]]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return {index: list(table) for index, table in decoded.quantization.items()}


def luma_plane(data: bytes) -> np.ndarray:
    """The decoded Y plane, straight from libjpeg (no conversion back to RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("YCbCr", image.size)
        return np.asarray(image)[..., 0].astype(np.float64)


def luma_levels(data: bytes, quality: int) -> np.ndarray:
    """The quantised luma AC levels of each whole 8x8 block, recovered from the decoded plane
    (DCT of the decoded samples over the table step, rounded; DC set to 0)."""
    plane = luma_plane(data) - 128
    rows, cols = plane.shape[0] // 8, plane.shape[1] // 8
    blocks = plane[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).swapaxes(1, 2)
    levels = np.rint(dctn(blocks, axes=(-2, -1), norm="ortho") / quant_tables(quality)[0])
    levels[:, :, 0, 0] = 0
    return levels


def halves_psnr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    mid = a.shape[1] // 2
    return psnr(a[:, :mid], b[:, :mid]), psnr(a[:, mid:], b[:, mid:])


def test_tables_equal_what_pillow_writes(photo):
    # Pillow un-zigzags DQT: .quantization is natural (row-major) order, like ours
    assert pillow_tables(photo, 50)[0][:8] == [16, 11, 10, 16, 24, 40, 51, 61]
    for quality in (1, 5, 10, 25, 49, 50, 51, 75, 90, 95):
        luma, chroma = quant_tables(quality)
        written = pillow_tables(photo, quality)
        assert written[0] == luma.ravel().tolist(), quality
        assert written[1] == chroma.ravel().tolist(), quality
    assert quant_tables(1)[0].max() == 255  # baseline: 8-bit entries
    assert quant_tables(95)[0].min() == 1


def test_jpeg_takes_a_delta_qp_map():
    jpeg = get_codec("jpeg")
    assert jpeg.supports_delta_qp and jpeg.takes_delta_qp(jpeg.resolve_options({}))


@pytest.mark.parametrize("chroma", ["420", "422", "444"])
def test_maps_that_ask_nothing_are_byte_identical(photo, chroma):
    jpeg = get_codec("jpeg")
    plain = jpeg.encode(photo, "q50", chroma=chroma).data
    for grid in (np.zeros((8, 12), np.int64), np.zeros((1, 1), np.int64),
                 np.full((3, 5), -9, np.int64)):
        assert jpeg.encode(photo, "q50", chroma=chroma, delta_qp=grid).data == plain
    # below the shortcut, too: offsets <= 0 leave every pixel exactly as it was
    assert np.array_equal(drop_coefficients(photo, 50, np.array([[0, -6]]), chroma), photo)


@pytest.mark.parametrize("chroma", ["420", "444"])
def test_a_coarser_left_half_costs_bits_and_psnr_only_there(photo, chroma):
    jpeg = get_codec("jpeg")
    grid = np.zeros((8, 12), np.int64)
    grid[:, :6] = 12  # 16-pixel cells: the left 96 of 192 columns
    plain = jpeg.encode(photo, "q75", chroma=chroma)
    aware = jpeg.encode(photo, "q75", chroma=chroma, delta_qp=grid)
    assert len(aware.data) < 0.95 * len(plain.data)
    left_plain, right_plain = halves_psnr(photo, jpeg.decode(plain))
    left_aware, right_aware = halves_psnr(photo, jpeg.decode(aware))
    assert left_aware < left_plain - 1.5
    assert abs(right_aware - right_plain) < 0.3
    assert aware.params["delta_qp"].startswith("12x8 crc32=")
    # before the encoder: the right half's pixels are not touched at all
    dropped = drop_coefficients(photo, 75, grid, chroma)
    assert np.array_equal(dropped[:, 96:], photo[:, 96:])
    assert (dropped[:, :96] != photo[:, :96]).any()


def test_plus_six_zeroes_what_the_doubled_table_zeroes(photo):
    """+6 at q50 asks for twice the step: q25's table is exactly twice q50's, and the blocks
    keep about as many non-zero AC levels as a real q25 file does."""
    assert np.array_equal(quant_tables(25)[0], 2 * quant_tables(50)[0])
    jpeg = get_codec("jpeg")
    plain = np.count_nonzero(luma_levels(jpeg.encode(photo, "q50").data, 50))
    coarse = np.count_nonzero(luma_levels(jpeg.encode(photo, "q25").data, 25))
    emulated = jpeg.encode(photo, "q50", delta_qp=np.full((1, 1), 6, np.int64)).data
    count = np.count_nonzero(luma_levels(emulated, 50))
    assert count < 0.8 * plain
    assert abs(count - coarse) < 0.05 * coarse


def test_a_huge_offset_leaves_only_dc(photo):
    jpeg = get_codec("jpeg")
    grid = np.zeros((8, 12), np.int64)
    grid[3, 5] = 60  # the 16x16 MCU at rows 48..63, columns 80..95
    data = jpeg.encode(photo, "q75", delta_qp=grid).data
    levels = luma_levels(data, 75)
    assert not levels[6:8, 10:12].any()  # its four luma blocks: DC only
    assert levels[5:9, 8:14].any(axis=(-2, -1)).sum() == 24 - 4  # its neighbours keep AC
    luma = luma_plane(data)
    for top in (48, 56):
        for left in (80, 88):
            assert np.ptp(luma[top:top + 8, left:left + 8]) == 0  # flat: only its mean
    assert luma_plane(jpeg.encode(photo, "q75").data)[48:64, 80:96].std() > 5  # was textured
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on an absurd offset: every AC dropped
        flat = jpeg.encode(photo, "q75", delta_qp=np.full((1, 1), 10**9, np.int64)).data
    assert not luma_levels(flat, 75).any()


@pytest.mark.parametrize("chroma", ["420", "422", "444"])
def test_output_is_a_baseline_jpeg_pillow_opens(odd_photo, chroma):
    jpeg = get_codec("jpeg")
    grid = np.array([[20, 0, 6], [0, 30, -4]], np.int64)
    bitstream = jpeg.encode(odd_photo, "q40", chroma=chroma, delta_qp=grid)
    assert b"\xff\xc0" in bitstream.data and b"\xff\xc2" not in bitstream.data  # SOF0 only
    with Image.open(io.BytesIO(bitstream.data)) as image:
        assert image.format == "JPEG" and image.size == odd_photo.shape[1::-1]
        assert "progressive" not in image.info
        decoded = np.asarray(image.convert("RGB"))
    assert psnr(odd_photo, decoded) > 20
    assert bitstream.params["delta_qp"].startswith("3x2 crc32=")


def test_block_offsets_take_the_cell_under_each_centre():
    grid = np.array([[1, 2], [3, 4]])
    # 40x24 image, 8x8 blocks, cells of 20x12 pixels: block centres at x = 4, 12 | 20, 28, 36
    # and y = 4 | 12, 20 (a centre on a cell edge belongs to the cell after it)
    offsets = block_offsets(grid, (3, 5), (8, 8), (24, 40))
    assert offsets.tolist() == [[1, 1, 2, 2, 2], [3, 3, 4, 4, 4], [3, 3, 4, 4, 4]]
    # 33 pixels wide in 16-pixel blocks: the third block's centre (40) is past the edge
    assert block_offsets(np.array([[1, 2]]), (1, 3), (16, 16), (16, 33)).tolist() == [[1, 2, 2]]


def test_a_bad_map_is_refused(photo):
    with pytest.raises(UnknownCodecError, match="2-D int array"):
        get_codec("jpeg").encode(photo, "q50", delta_qp=np.zeros((2, 2), np.float32))
