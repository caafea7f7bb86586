"""AV1 and delta-QP maps: why ``av1`` and ``av1-aom`` take none, pinned against the bundled builds.

Neither bundled AV1 encoder exposes per-block quantiser control to icm:

* SVT-AV1 (inside the PyAV wheel): ``roi-map-file`` is an option of the SvtAv1EncApp program,
  which parses the file itself and hands the library per-picture ``ROI_MAP_EVENT`` nodes; the
  library's own parameter parser, which FFmpeg's ``svtav1-params`` reaches, does not know it
  (nor ``enable-roi-map``), and FFmpeg's libsvtav1 wrapper reads no ROI side data.
* libaom (the imageio-ffmpeg binary): FFmpeg's libaom-av1 wrapper reads no ROI side data
  (only libvpx, libx264 and libx265 do), and no ``aom-params`` key is a block QP map. (The
  nearest, ``deltaq-mode=3:enable-rate-guide-deltaq=1:rate-distribution-info=FILE``, does code
  per-superblock delta_q, but derives it from an external *rate* share against libaom's own
  rate estimates, clamped to a few steps: not a QP offset a map can ask for.)

Each test pins one of these: the attempt leaves the bitstream byte-identical, and the frame
header keeps ``delta_q_present = 0`` and segmentation off. Each has a positive control (x265 or
x264 given the same regions changes its stream), so a pass means the AV1 encoder ignored the
map, not that the map never reached it. If a future build starts honouring one of these
routes, its test fails: that is the cue to give the codec ``supports_delta_qp``.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from icm.codecs import CODECS, get_codec
from icm.codecs._ffmpeg import ffmpeg_encode, ffmpeg_exe, ffmpeg_unavailable
from icm.codecs._pyav import X26X_CRF_AQ, Region, pyav_encode, pyav_filter_unavailable
from icm.errors import UnknownCodecError
from icm.image import sample_photo

#: the left half coarser by 10 QP steps, as a codec's ``delta_qp`` map would ask
LEFT_PLUS_10 = np.array([[10, 0]])


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """128x128: two 64x64 superblocks per row, the halves split on a superblock edge."""
    return np.ascontiguousarray(sample_photo("astronaut")[40:168, 120:248])


def needs(*names: str) -> None:
    for name in names:
        reason = CODECS[name].unavailable_reason()
        if reason is not None:
            pytest.skip(f"{name} unavailable here: {reason}")


def av1_header_fields(data: bytes) -> dict[str, int]:
    """The key frame's header fields, from ffmpeg's trace_headers bitstream filter."""
    exe = ffmpeg_exe()
    if exe is None:
        pytest.skip("the imageio-ffmpeg binary is not installed")
    result = subprocess.run(
        [exe, "-hide_banner", "-loglevel", "debug", "-f", "obu", "-i", "-", "-c", "copy",
         "-bsf:v", "trace_headers", "-f", "null", "-"],
        input=data, capture_output=True, check=True,
    )  # fmt: skip
    fields: dict[str, int] = {}
    for line in result.stderr.decode("utf-8", "replace").splitlines():
        if "trace_headers" not in line:
            continue
        tokens = line.split("]", 1)[-1].split()
        if len(tokens) >= 4 and tokens[-2] == "=":
            fields.setdefault(tokens[1], int(tokens[-1]))
    return fields


def assert_no_block_quantiser(data: bytes, base_q_idx: int) -> None:
    fields = av1_header_fields(data)
    assert fields["base_q_idx"] == base_q_idx
    assert fields["delta_q_present"] == 0
    assert fields["segmentation_enabled"] == 0


@pytest.mark.parametrize("name", ["av1", "av1-aom"])
def test_av1_codecs_take_no_delta_qp_map(name: str, small: np.ndarray) -> None:
    needs(name)
    codec = get_codec(name)
    assert codec.supports_delta_qp is False
    with pytest.raises(UnknownCodecError, match="delta-QP"):
        codec.encode(small, "qp32", delta_qp=LEFT_PLUS_10)


def svt_encode(rgb: np.ndarray, params: str, regions: tuple[Region, ...] = ()) -> bytes:
    settings = {"qp": "32", "preset": "8", "svtav1-params": params}
    return pyav_encode(rgb, "libsvtav1", "yuv420p", settings, regions)


def test_svt_library_ignores_roi_map_file(small: np.ndarray, tmp_path, monkeypatch) -> None:
    """``roi-map-file`` via svtav1-params: FFmpeg logs a parse error and the stream is unchanged.

    The file is valid for SvtAv1EncApp: picture 0, then one offset per 64x64 superblock in
    raster order (q_idx units: +40 = 10 qp steps on the left column of superblocks).
    """
    needs("av1")
    monkeypatch.setenv("SVT_LOG", "1")
    roi = tmp_path / "roi.txt"
    roi.write_text("0 40 0 40 0\n")
    plain = svt_encode(small, "avif=1")
    for params in (f"avif=1:roi-map-file={roi}", "avif=1:enable-roi-map=1"):
        assert svt_encode(small, params) == plain, params
    assert_no_block_quantiser(plain, 128)


def left_half_regions(width: int, height: int, qoffset: Fraction) -> tuple[Region, ...]:
    return (Region(0, 0, width // 2, height, qoffset),)


def test_libsvtav1_wrapper_ignores_roi_side_data(small: np.ndarray, monkeypatch) -> None:
    needs("av1", "hevc-crf")
    reason = pyav_filter_unavailable("buffer", "addroi")
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setenv("SVT_LOG", "1")
    height, width = small.shape[:2]
    regions = left_half_regions(width, height, Fraction(10, 51))
    coded = svt_encode(small, "avif=1", regions)
    assert coded == svt_encode(small, "avif=1")
    assert_no_block_quantiser(coded, 128)

    # Positive control: the same side data moves x265 (hevc-crf's settings) off its plain stream.
    x265 = {"x265-params": f"crf=32:cutree=0:{X26X_CRF_AQ}:qg-size=16:ipratio=1:info=0:"
                           "log-level=error", "preset": "medium"}  # fmt: skip
    with_map = pyav_encode(small, "libx265", "yuv420p", x265, regions)
    assert with_map != pyav_encode(small, "libx265", "yuv420p", x265)
    assert len(with_map) < len(pyav_encode(small, "libx265", "yuv420p", x265))


def test_libaom_wrapper_ignores_roi_side_data(small: np.ndarray) -> None:
    """addroi before libaom-av1 in the ffmpeg binary: the same bytes; before libx264: fewer."""
    needs("av1-aom")
    for encoder in ("libaom-av1", "libx264"):
        reason = ffmpeg_unavailable(encoder)
        if reason is not None:
            pytest.skip(reason)
    height = small.shape[0]
    addroi = ["-vf", f"format=yuv420p,addroi=x=0:y=0:w=64:h={height}:qoffset=10/51"]
    aom = ["-c:v", "libaom-av1", "-still-picture", "1", "-cpu-used", "6", "-crf", "32",
           "-b:v", "0"]  # fmt: skip
    plain = ffmpeg_encode(small, aom, pix_fmt="yuv420p", muxer="obu")
    coded = ffmpeg_encode(small, [*addroi, *aom], pix_fmt="yuv420p", muxer="obu")
    assert coded == plain
    assert_no_block_quantiser(coded, 128)

    # Positive control: x264 (adaptive quantisation on, as it needs for ROI) reads the same filter.
    x264 = ["-c:v", "libx264", "-crf", "32", "-g", "1"]
    plain_avc = ffmpeg_encode(small, x264, pix_fmt="yuv420p", muxer="h264")
    coded_avc = ffmpeg_encode(small, [*addroi, *x264], pix_fmt="yuv420p", muxer="h264")
    assert len(coded_avc) < len(plain_avc)
