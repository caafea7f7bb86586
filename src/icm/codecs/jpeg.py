"""JPEG through Pillow's libjpeg-turbo: the anchor every other codec is compared with.

Per-block quantisation (``delta_qp``)
-------------------------------------
Baseline JPEG has one quantisation table per component for the whole image, so no block can
be coded with a step of its own. The codec emulates one anyway, and the file stays a plain
baseline JPEG (SOF0) that any decoder opens:

* **What an offset asks for.** In H.264/HEVC/VVC the quantiser step is ``2 ** ((QP - 4) / 6)``:
  6 QPs double it. An offset ``d`` on a block therefore asks for a step ``m = 2 ** (d / 6)``
  times the step the level's table gives that frequency (+6 doubles it, +12 quadruples it).
* **What a coarser step would do.** libjpeg quantises a coefficient ``c`` to
  ``round(c / Q)`` (``Q`` the table entry for that frequency), which is 0 exactly when
  ``|c| < Q / 2``. A step ``m * Q`` would zero every coefficient with ``|c| < m * Q / 2``.
  Zeroed coefficients are where a coarser quantiser saves almost all of its bits (the
  entropy coder's zero runs and end-of-block codes), so in each 8x8 block with ``d > 0``
  every AC coefficient below that threshold is set to zero before libjpeg sees the block;
  the coefficients that survive are still coded at the table's precision. DC is always kept,
  so a block whose AC is all dropped keeps its mean and becomes flat (``d = +60``, a step of
  1024 Q, does that to any block).
* **Offsets <= 0 leave a block untouched.** The table is the finest step the file has, and
  JPEG cannot refine one block beyond it: a map that asks some blocks for better quality only
  lowers the others (choose the level for the finest blocks).
* **Where it is done.** In the pixel domain, before Pillow's encoder: RGB is converted to
  JFIF YCbCr with libjpeg's own matrix, each plane cut into the blocks libjpeg will code
  (8x8 luma blocks; chroma on the 2x2-averaged planes at 4:2:0, so one chroma block covers
  16x16 pixels, 2x1-averaged at 4:2:2, 16 wide by 8 tall, and full resolution at 4:4:4),
  aligned with the MCU grid from the top-left, the image edge-padded to whole MCUs as libjpeg
  pads it. The orthonormal 2-D DCT-II (``scipy.fft.dctn(norm='ortho')``) is JPEG's FDCT
  (``F(u, v) = C(u) C(v) / 4 * sum ...``), and the level shift by 128 only moves DC, which is
  kept. The dropped coefficients' inverse DCT is subtracted from the plane (chroma changes
  are repeated over the pixels they average), taken back to RGB with the inverse matrix and
  rounded to uint8; blocks with nothing dropped keep their pixels exactly. The result goes
  through the normal Pillow encode at the same quality and options.
* **Tables.** The thresholds use the tables libjpeg writes at that quality: the Annex K
  tables scaled by libjpeg's ``jpeg_quality_scaling`` (``5000 / q`` below 50, else
  ``200 - 2q``), each entry ``(base * scale + 50) // 100`` clamped to 1..255 (Pillow asks for
  baseline tables), checked against what Pillow writes in the tests.
* **The map** (rows x cols of ints, any grid size) covers the image: each block takes the cell
  under its centre (nearest), the cell grid scaled to the image's width and height.

Not exact, and said so: libjpeg recomputes the DCT of the rounded pixels with its integer
FDCT, so a dropped coefficient comes back as rounding noise (about 0.3 standard deviation:
it still quantises to 0 except, now and then, where the table entry is 1, at q93 and above);
and an edge block's padding is taken from the changed edge pixels, not from the padded block
thresholded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from icm.codecs._pillow import pillow_decode, pillow_encode, pillow_version
from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.limits import DecodeSide

# Pillow's subsampling argument: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
_SUBSAMPLING = {"444": 0, "422": 1, "420": 2}
# Chroma subsampling factors (vertical, horizontal) of each choice.
_CHROMA_FACTORS = {"444": (1, 1), "422": (1, 2), "420": (2, 2)}

#: JPEG Annex K (Table K.1), luminance, natural (row-major) order
LUMA_BASE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)  # fmt: skip
#: JPEG Annex K (Table K.2), chrominance, natural (row-major) order
CHROMA_BASE = np.full((8, 8), 99)
CHROMA_BASE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

#: libjpeg's RGB -> YCbCr (jccolor.c, JFIF full range), without the +128 on Cb and Cr
RGB_TO_YCC = np.array([
    [0.29900, 0.58700, 0.11400],
    [-0.16874, -0.33126, 0.50000],
    [0.50000, -0.41869, -0.08131],
])  # fmt: skip
_YCC_TO_RGB = np.linalg.inv(RGB_TO_YCC)  # the exact inverse, so a pixel change maps back whole


@register_codec
class JpegCodec(Codec):
    """Baseline JPEG; takes a delta-QP map by dropping coefficients (module docstring).

    ``delta_qp`` (rows x cols of ints, any grid size) is scaled to the frame; in each block
    with offset ``d > 0`` the AC coefficients a step ``2 ** (d / 6)`` times coarser would zero
    are zeroed. ``params["delta_qp"]`` records the map as given.
    """

    name = "jpeg"
    knob = Knob("q", 1, 95, meaning="quality, higher is better")
    raw_suffix = ".jpg"
    typical_level = "q75"
    ladder = ("q10", "q20", "q35", "q50", "q70", "q85")
    library = "libjpeg-turbo (Pillow)"
    summary = "baseline JPEG, Huffman-coded, optimised tables"
    options = {
        "chroma": Option("420", ("420", "422", "444"), "chroma subsampling"),
        "optimize": Option(True, (True, False), "optimised Huffman tables"),
    }
    supports_delta_qp = True

    @classmethod
    def library_version(cls) -> str:
        from PIL import features

        return f"libjpeg-turbo {features.version('jpg')}, Pillow {pillow_version()}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        delta_qp = options.get("delta_qp")
        if delta_qp is not None and np.max(delta_qp) > 0:  # offsets <= 0 change nothing
            rgb = drop_coefficients(rgb, int(value), delta_qp, options["chroma"])
        return pillow_encode(
            rgb,
            "JPEG",
            quality=int(value),
            subsampling=_SUBSAMPLING[options["chroma"]],
            optimize=bool(options["optimize"]),
        )

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        return pillow_decode(data, side, "JPEG")


def quant_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """(luma, chroma) 8x8 tables in natural order, as libjpeg's ``jpeg_set_quality`` makes
    them for Pillow: the thresholds must use the steps the file will really be coded with."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    luma, chroma = ((base * scale + 50) // 100 for base in (LUMA_BASE, CHROMA_BASE))
    return np.clip(luma, 1, 255), np.clip(chroma, 1, 255)  # 255: baseline (8-bit) tables


def block_offsets(
    delta_qp: np.ndarray, blocks: tuple[int, int], block_size: tuple[int, int],
    image_size: tuple[int, int],
) -> np.ndarray:
    """Each block's offset: the map cell under the block's centre, the map stretched over the
    image (``image_size`` = height, width), so any grid size covers the picture."""
    grid = np.asarray(delta_qp, dtype=np.int64)
    axes = zip(blocks, block_size, grid.shape, image_size, strict=True)
    index = [_nearest_cells(count, size, cells, extent) for count, size, cells, extent in axes]
    return grid[np.ix_(*index)]


def _nearest_cells(count: int, size: int, cells: int, extent: int) -> np.ndarray:
    """Along one axis: the cell holding each block's centre, ``cells`` spread over ``extent``
    pixels (blocks of the padding past the edge take the last cell)."""
    centres = (np.arange(count) + 0.5) * size
    return np.minimum((centres * cells / extent).astype(np.int64), cells - 1)


def dropped_change(plane: np.ndarray, table: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The change to ``plane`` (whole 8x8 blocks) that zeroes, in each block, the AC
    coefficients a step ``2 ** (d / 6)`` times the table's would zero; exactly 0 where
    ``d <= 0`` (only the blocks with ``d > 0`` are transformed: most of the cost)."""
    from scipy.fft import dctn, idctn

    rows, cols = offsets.shape
    blocks = plane.reshape(rows, 8, cols, 8).swapaxes(1, 2)
    coarser = offsets > 0
    coefficients = dctn(blocks[coarser], axes=(-2, -1), norm="ortho")
    step = 2.0 ** (np.minimum(offsets[coarser], 96) / 6.0)  # +96: already every AC, no overflow
    drop = np.abs(coefficients) < step[:, None, None] * table / 2.0
    drop[:, 0, 0] = False  # DC is kept: a dropped block keeps its mean
    change = np.zeros_like(blocks)
    change[coarser] = -idctn(np.where(drop, coefficients, 0), axes=(-2, -1), norm="ortho")
    return change.swapaxes(1, 2).reshape(plane.shape)


def drop_coefficients(
    rgb: np.ndarray, quality: int, delta_qp: np.ndarray, chroma: str
) -> np.ndarray:
    """``rgb`` with each block's small AC coefficients dropped as its offset asks (module
    docstring), in the blocks libjpeg will code at this chroma subsampling."""
    height, width = rgb.shape[:2]
    sub_y, sub_x = _CHROMA_FACTORS[chroma]
    mcu_y, mcu_x = 8 * sub_y, 8 * sub_x
    padded = np.pad(rgb.astype(np.float32),
                    ((0, -height % mcu_y), (0, -width % mcu_x), (0, 0)), mode="edge")
    ycc = padded @ RGB_TO_YCC.T.astype(np.float32)  # float32: ample for 8-bit samples
    change = np.zeros_like(ycc)
    luma, chroma_table = quant_tables(quality)
    for channel, table in enumerate((luma, chroma_table, chroma_table)):
        factors = (1, 1) if channel == 0 else (sub_y, sub_x)
        change[..., channel] = _plane_change(ycc[..., channel], table, delta_qp, factors,
                                             (height, width))
    out = np.rint(padded + change @ _YCC_TO_RGB.T.astype(np.float32))
    return np.clip(out, 0, 255).astype(np.uint8)[:height, :width]


def _plane_change(
    full: np.ndarray, table: np.ndarray, delta_qp: np.ndarray, factors: tuple[int, int],
    image_size: tuple[int, int],
) -> np.ndarray:
    """One component's change at full resolution: averaged down by ``factors`` as libjpeg
    subsamples, thresholded, and each change repeated over the pixels it averaged (so the
    plane libjpeg averages again moves by exactly that change)."""
    fy, fx = factors
    plane = full
    if factors != (1, 1):
        plane = full.reshape(full.shape[0] // fy, fy, full.shape[1] // fx, fx).mean(axis=(1, 3))
    blocks = (plane.shape[0] // 8, plane.shape[1] // 8)
    offsets = block_offsets(delta_qp, blocks, (8 * fy, 8 * fx), image_size)
    change = dropped_change(plane, table, offsets)
    if factors == (1, 1):
        return change
    return np.repeat(np.repeat(change, fy, axis=0), fx, axis=1)
