"""The video-codec families coding one intra picture: x265, kvazaar, x264, SVT-AV1, libaom, vvenc.

Beyond the interface tests every codec gets (test_codecs.py), these check what is particular to
raw video bitstreams: a stock decoder reads them without icm, the level is the quantiser really
coded, the 4:4:4 / 10-bit variants, kvazaar's delta-QP maps, corrupt input, and silence.
"""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

from icm.codecs import CODECS, get_codec
from icm.codecs._ffmpeg import ffmpeg_encode, ffmpeg_exe
from icm.codecs._pyav import pyav_unavailable
from icm.codecs.avc import strip_sei_containing
from icm.codecs.hevc import KvazaarCodec, write_roi_file
from icm.errors import IcmError, UnknownCodecError
from icm.image import sample_photo
from icm.metrics import psnr

#: codec -> the FFmpeg decoder a plain PyAV user would pick for its raw stream
DECODERS = {"hevc": "hevc", "hevc-kvazaar": "hevc", "avc": "h264",
            "av1": "libdav1d", "av1-aom": "libdav1d", "vvc": "vvc"}  # fmt: skip
VIDEO_CODECS = list(DECODERS)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """128x96: a multiple of every codec's block size, so the coded size is the image size."""
    return np.ascontiguousarray(sample_photo("astronaut")[40:136, 120:248])


@pytest.fixture(scope="module")
def odd() -> np.ndarray:
    return np.ascontiguousarray(sample_photo("astronaut")[60:127, 150:251])


@pytest.fixture(params=VIDEO_CODECS)
def codec(request):
    reason = CODECS[request.param].unavailable_reason()
    if reason is not None:
        pytest.skip(f"{request.param} unavailable here: {reason}")
    return get_codec(request.param)


def plain_pyav_decode(data: bytes, decoder: str):
    """A stock decode, written without icm: parse the raw stream, decode, flush."""
    import av

    context = av.CodecContext.create(decoder, "r")
    context.thread_count = 1
    frames = []
    for packet in context.parse(data) + context.parse(None):
        frames.extend(context.decode(packet))
    frames.extend(context.decode(None))
    assert len(frames) == 1
    return frames[0]


def test_odd_size_round_trips_to_the_original_shape(codec, odd):
    bitstream = codec.encode(odd, codec.typical_level)
    decoded = codec.decode(bitstream)
    assert decoded.shape == odd.shape == (67, 101, 3) and decoded.dtype == np.uint8
    assert psnr(odd, decoded) > 28


def test_finer_level_costs_bytes_and_buys_psnr(codec, small):
    coarse, fine = (codec.encode(small, level) for level in (codec.ladder[1], codec.ladder[-2]))
    assert len(fine.data) > len(coarse.data)
    assert psnr(small, codec.decode(fine)) > psnr(small, codec.decode(coarse)) + 2


def test_raw_bytes_decode_with_a_stock_decoder(codec, small):
    """Standard compliance: plain PyAV reads the raw elementary stream, no icm involved."""
    data = codec.encode(small, codec.typical_level).data
    if codec.name.startswith("av1"):
        assert data[:2] == b"\x12\x00"  # OBU stream: a temporal delimiter first
    else:
        assert data[:4] == b"\x00\x00\x00\x01"  # Annex-B start code
    frame = plain_pyav_decode(data, DECODERS[codec.name])
    assert (frame.height, frame.width) == small.shape[:2]
    assert psnr(small, frame.to_ndarray(format="rgb24")) > 28


def _trace(data: bytes, demuxer: str) -> dict[str, int]:
    """Last value of each syntax element, from ffmpeg's trace_headers bitstream filter."""
    exe = ffmpeg_exe()
    result = subprocess.run(
        [exe, "-hide_banner", "-f", demuxer, "-i", "-", "-c", "copy",
         "-bsf:v", "trace_headers", "-f", "null", "-"],
        input=data, capture_output=True, text=False, check=True,
    )  # fmt: skip
    fields = {}
    for line in result.stderr.decode("utf-8", "replace").splitlines():
        tokens = line.split("]", 1)[-1].split()
        if len(tokens) >= 4 and tokens[-2] == "=":
            fields[tokens[1]] = int(tokens[-1])
    return fields


@pytest.mark.parametrize(
    ("name", "demuxer", "coded_qp"),
    [
        ("hevc", "hevc", lambda f: 26 + f["init_qp_minus26"] + f["slice_qp_delta"]),
        ("hevc-kvazaar", "hevc", lambda f: 26 + f["init_qp_minus26"] + f["slice_qp_delta"]),
        ("avc", "h264", lambda f: 26 + f["pic_init_qp_minus26"] + f["slice_qp_delta"]),
        ("vvc", "vvc", lambda f: 26 + f["pps_init_qp_minus26"] + f["sh_qp_delta"]),
        ("av1", "obu", lambda f: f["base_q_idx"] / 4),
        ("av1-aom", "obu", lambda f: f["base_q_idx"] / 4),
    ],
)
def test_the_level_is_the_quantiser_coded(name, demuxer, coded_qp, small):
    """``qp30`` is QP 30 in the bitstream (AV1: base_q_idx 120), not 30 minus an intra offset."""
    if CODECS[name].unavailable_reason() is not None or ffmpeg_exe() is None:
        pytest.skip(f"{name} or the ffmpeg binary is unavailable")
    data = get_codec(name).encode(small, "qp30").data
    assert coded_qp(_trace(data, demuxer)) == 30


def test_hevc_444_and_10_bit_variants(small):
    hevc = get_codec("hevc")
    for options, pix_fmt in [({"chroma": "444"}, "yuv444p"), ({"bit_depth": 10}, "yuv420p10le")]:
        bitstream = hevc.encode(small, "qp30", **options)
        assert plain_pyav_decode(bitstream.data, "hevc").format.name == pix_fmt
        assert psnr(small, hevc.decode(bitstream)) > 30
    assert hevc.encode(small, "qp30", chroma="444").chroma == "444"
    assert hevc.encode(small, "qp30", bit_depth="10").bit_depth == 10


def test_avc_444_and_10_bit_variants(small):
    avc = get_codec("avc")
    for options, pix_fmt in [({"chroma": "444"}, "yuv444p"), ({"bit_depth": 10}, "yuv420p10le")]:
        bitstream = avc.encode(small, "qp30", **options)
        assert plain_pyav_decode(bitstream.data, "h264").format.name == pix_fmt
        assert psnr(small, avc.decode(bitstream)) > 30


def test_av1_aom_444_variant(small):
    aom = get_codec("av1-aom")
    bitstream = aom.encode(small, "qp30", chroma="444")
    assert plain_pyav_decode(bitstream.data, "libdav1d").format.name == "yuv444p"
    assert psnr(small, aom.decode(bitstream)) > 30


def test_vvc_is_10_bit(small):
    bitstream = get_codec("vvc").encode(small, "qp30")
    assert bitstream.bit_depth == 10
    assert plain_pyav_decode(bitstream.data, "vvc").format.name == "yuv420p10le"


def test_encoder_banners_are_not_counted(small):
    """x265's options SEI is ~2 kB and x264's ~600 B: neither is in the stream."""
    assert b"x265 (build" not in get_codec("hevc").encode(small, "qp30").data
    assert b"x264 - core" not in get_codec("avc").encode(small, "qp30").data
    assert b"Kvazaar" not in get_codec("hevc-kvazaar").encode(small, "qp30").data


def test_strip_sei_keeps_every_other_unit():
    sps, sei, idr = b"\x67\x64\x00\x0a", b"\x06\x05\x10x264 - core 1\x80", b"\x65\x88\x84\x00"
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + sei + b"\x00\x00\x00\x01" + idr
    assert strip_sei_containing(stream, b"x264 - core") == (
        b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + idr
    )
    assert strip_sei_containing(stream, b"absent") == stream
    assert strip_sei_containing(b"no start code", b"x") == b"no start code"


def test_kvazaar_delta_qp_coarsens_only_where_asked():
    image = np.ascontiguousarray(sample_photo("astronaut")[40:168, 120:376])  # 256x128: 4x2 CTUs
    kvazaar = get_codec("hevc-kvazaar")
    plain = kvazaar.encode(image, "qp30")
    mapped = kvazaar.encode(image, "qp30", delta_qp=np.array([[10, 0]]))
    assert len(mapped.data) < len(plain.data)
    assert mapped.params["delta_qp"].startswith("2x1 crc32=")
    plain_rgb, mapped_rgb = kvazaar.decode(plain), kvazaar.decode(mapped)
    left, right = np.s_[:, :128], np.s_[:, 128:]
    assert psnr(image[left], mapped_rgb[left]) < psnr(image[left], plain_rgb[left]) - 2
    assert abs(psnr(image[right], mapped_rgb[right]) - psnr(image[right], plain_rgb[right])) < 0.5


def test_kvazaar_delta_qp_is_clipped_to_what_kvazaar_codes(small, tmp_path):
    """QPs stay in 0..51 and within 25 of each other (kvazaar aborts on bigger steps)."""
    write_roi_file(tmp_path / "roi.txt", np.array([[-10, 5], [0, 14]]), qp=45)
    assert (tmp_path / "roi.txt").read_text() == "2 2\n-10 5\n0 6\n"  # only 45+14 > 51 moves
    write_roi_file(tmp_path / "roi.txt", np.array([[-40, 0, 40]]), qp=30)
    assert (tmp_path / "roi.txt").read_text() == "3 1\n-15 0 10\n"  # -30..21, then 25 wide
    kvazaar = get_codec("hevc-kvazaar")
    for qp, grid in [(48, [[20], [-60]]), (30, [[-26, 0]]), (30, [[21, 0, 0, -21]])]:
        bitstream = kvazaar.encode(small, qp, delta_qp=np.array(grid))
        assert psnr(small, kvazaar.decode(bitstream)) > 20


def test_delta_qp_needs_a_codec_that_takes_it(small):
    assert KvazaarCodec.supports_delta_qp
    for name in ("hevc", "avc", "av1", "vvc"):
        with pytest.raises(UnknownCodecError, match="does not take a delta-QP map"):
            get_codec(name).encode(small, "qp30", delta_qp=np.zeros((2, 2), np.int64))


def test_corrupt_bitstreams_raise_icm_errors(codec, small):
    bitstream = codec.encode(small, codec.typical_level)
    junk = np.random.default_rng(7).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    for data in (bitstream.data[:10], junk, b""):
        with pytest.raises(IcmError, match="does not decode"):
            codec.decode(dataclasses.replace(bitstream, data=data))


def test_encoders_print_nothing(codec, small, capfd, monkeypatch):
    """SVT-AV1 prints banners from C unless silenced; the CLI's --json output must stay clean."""
    monkeypatch.delenv("SVT_LOG", raising=False)
    codec.encode(small, codec.typical_level)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_versions_and_unavailability_explain_themselves(monkeypatch):
    for name in VIDEO_CODECS:
        if CODECS[name].unavailable_reason() is None:
            assert CODECS[name].library_version(), name
    monkeypatch.setattr("icm.codecs._ffmpeg.ffmpeg_exe", lambda: None)
    for name in ("hevc-kvazaar", "av1-aom", "vvc"):
        assert "imageio-ffmpeg" in CODECS[name].unavailable_reason()
    monkeypatch.setitem(__import__("sys").modules, "av", None)
    assert pyav_unavailable(("libx265", "w")) == "PyAV is not installed"
    assert CODECS["hevc"].unavailable_reason() == "PyAV is not installed"


def test_ffmpeg_failures_carry_ffmpeg_s_message(small):
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg binary")
    with pytest.raises(IcmError, match=r"no-such-encoder failed on a 128x96 frame: .*not found"):
        ffmpeg_encode(small, ["-c:v", "no-such-encoder"], pix_fmt="yuv420p", muxer="hevc")


def test_hevc_tune_reaches_the_encoder():
    """``tune`` is an ffmpeg encoder option; inside x265-params x265 silently ignored it."""
    image = np.ascontiguousarray(sample_photo("astronaut")[:128, :192])
    hevc = get_codec("hevc")
    plain = hevc.encode(image, "qp30")
    tuned = hevc.encode(image, "qp30", tune="psnr")
    assert tuned.data != plain.data and tuned.params["tune"] == "psnr"
