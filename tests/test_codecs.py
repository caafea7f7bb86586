"""Every registered codec, through the one interface (as timm tests every registered model)."""

from __future__ import annotations

import numpy as np
import pytest

from icm.codecs import CODECS, Bitstream, get_codec, list_codecs
from icm.codecs.rate import encode_to_bpp
from icm.errors import CodecUnavailableError, RateControlError, UnknownCodecError
from icm.metrics import psnr as psnr_of
from icm.pipeline import parse_point

ALL_CODECS = list_codecs()


@pytest.fixture(params=ALL_CODECS)
def codec(request):
    cls = CODECS[request.param]
    reason = cls.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{request.param} unavailable here: {reason}")
    if getattr(cls, "weights_by_download", False):  # CompressAI's zoo: tested in test_learned
        pytest.skip(f"{request.param}: pretrained weights download at first use")
    return get_codec(request.param)


def test_registry_has_every_family():
    expected = {"jpeg", "jpegli", "webp", "jpeg2000", "avif", "jxl", "heic",
                "hevc", "hevc-kvazaar", "avc", "av1", "av1-aom", "vvc"}
    assert expected <= set(ALL_CODECS)


#: full-resolution PSNR a typical level must beat; a codec made for a machine that reads a
#: downscaled view (icm-lic-lite0: 0.4375 x) blurs what that view cannot see, by design
PSNR_FLOOR = {"icm-lic-lite0": 24.0}


def test_round_trip_keeps_size_and_counts_exact_bits(codec, odd_photo):
    bitstream = codec.encode(odd_photo, codec.typical_level)
    decoded = codec.decode(bitstream)
    assert decoded.shape == odd_photo.shape and decoded.dtype == np.uint8
    assert psnr_of(odd_photo, decoded) > PSNR_FLOOR.get(codec.name, 28.0)
    assert bitstream.bpp == 8 * len(bitstream.data) / (101 * 67)
    assert bitstream.point == f"{codec.name}@{codec.typical_level}"
    assert bitstream.library_version


def test_metadata_is_complete(codec, photo):
    described = codec.encode(photo, codec.typical_level).describe()
    assert described["width"] == 192 and described["height"] == 128
    assert described["chroma"] in {"420", "422", "444"}
    assert described["bit_depth"] in {8, 10}
    assert codec.knob.prefix in described["params"]


def test_more_quality_costs_more_bits(codec, photo):
    knob = codec.knob
    low_rate, high_rate = (knob.lo, knob.hi) if knob.rate_rises else (knob.hi, knob.lo)

    def between(fraction: float) -> float:  # continuous knobs act geometrically on rate
        if knob.integer:
            return round(low_rate + fraction * (high_rate - low_rate))
        return low_rate * (high_rate / low_rate) ** fraction

    coarse = codec.encode(photo, between(0.3))
    fine = codec.encode(photo, between(0.7))
    assert len(fine.data) > len(coarse.data)
    assert psnr_of(photo, codec.decode(fine)) > psnr_of(photo, codec.decode(coarse))


def test_encoding_is_deterministic(codec, photo):
    """Bitstreams are cached by content; an encoder must give the same bytes every time."""
    first = codec.encode(photo, codec.typical_level)
    assert codec.encode(photo, codec.typical_level).data == first.data


@pytest.mark.parametrize("target", [0.5, 1.5])
def test_rate_control_lands_just_under_target(codec, photo, target):
    knob = codec.knob
    finest = codec.encode(photo, knob.format(knob.hi if knob.rate_rises else knob.lo)).bpp
    target = min(target, 0.9 * finest)  # a codec whose finest level spends less (icm-lic-lite0)
    result = encode_to_bpp(codec, photo, target)
    assert 0.85 * target < result.achieved_bpp <= target
    assert result.encodes <= 8
    assert result.achieved_bpp == result.bitstream.bpp


def test_rate_control_counts_what_size_of_measures(photo):
    jpeg = get_codec("jpeg")
    overhead = 400
    result = encode_to_bpp(jpeg, photo, 1.0, size_of=lambda b: len(b.data) + overhead)
    assert result.achieved_bpp <= 1.0
    overhead_bpp = 8 * overhead / photo[..., 0].size
    assert result.bitstream.bpp == pytest.approx(result.achieved_bpp - overhead_bpp)


def test_rate_control_searches_only_its_window(photo):
    jpeg = get_codec("jpeg")
    target = jpeg.encode(photo, "q60").bpp
    result = encode_to_bpp(jpeg, photo, target, window=(70, 40), max_encodes=3)
    levels = [int(level[1:]) for level, _ in result.trials]
    assert len(levels) <= 3 and all(40 <= level <= 70 for level in levels)
    assert result.achieved_bpp <= target
    assert 40 <= int(result.bitstream.level[1:]) <= 60  # q60 itself is the largest that fits
    assert encode_to_bpp(jpeg, photo, target).bitstream.level == "q60"


def test_rate_control_refuses_unreachable_targets(photo):
    with pytest.raises(RateControlError, match=r"cannot reach 0\.001 bpp"):
        encode_to_bpp(get_codec("jpeg"), photo, 0.001)


def test_levels_and_options_are_validated(photo):
    jpeg = get_codec("jpeg")
    for bad in ("q0", "q96", "qp30", "q", "q3.5", "fast"):
        with pytest.raises(UnknownCodecError, match="jpeg: level"):
            jpeg.encode(photo, bad)
    with pytest.raises(UnknownCodecError, match="unknown option"):
        jpeg.encode(photo, "q50", colour="yes")
    with pytest.raises(UnknownCodecError, match="choose from"):
        jpeg.encode(photo, "q50", chroma="411")
    assert jpeg.encode(photo, "q50", chroma="444").chroma == "444"
    assert jpeg.encode(photo, "q50", optimize="false").params["optimize"] is False


def test_chroma_option_changes_the_bitstream(photo):
    jpeg = get_codec("jpeg")
    assert jpeg.encode(photo, "q80", chroma="444").data != jpeg.encode(photo, "q80").data


def test_unknown_and_unavailable_codecs_explain_themselves(monkeypatch):
    with pytest.raises(UnknownCodecError, match="unknown codec 'mpeg1'; known: jpeg"):
        get_codec("mpeg1")
    monkeypatch.setattr(CODECS["jxl"], "unavailable_reason", classmethod(lambda cls: "no libjxl"))
    with pytest.raises(CodecUnavailableError, match=r"jxl is unavailable: no libjxl\. pip install"):
        get_codec("jxl")


def test_points_parse_levels_and_bpp_targets():
    assert parse_point("HEVC@qp37") == parse_point("hevc@qp37")
    assert parse_point("hevc@qp37").level == "qp37"
    assert parse_point("hevc@0.1bpp").bpp == 0.1
    assert parse_point("hevc", bpp=0.2).bpp == 0.2
    assert str(parse_point("vvc@0.05bpp")) == "vvc@0.05bpp"
    for bad, message in [("hevc", "no level"), ("@q3", "empty codec"),
                         ("jpeg@xbpp", "not a number"), ("jpeg@-1bpp", "positive")]:
        with pytest.raises(UnknownCodecError, match=message):
            parse_point(bad)
    with pytest.raises(UnknownCodecError, match="not both"):
        parse_point("jpeg@q30", bpp=0.3)


def test_codecs_reject_non_rgb_input(photo):
    jpeg = get_codec("jpeg")
    with pytest.raises(TypeError, match="uint8"):
        jpeg.encode(photo.astype(np.float32), "q50")
    with pytest.raises(TypeError, match="RGB"):
        jpeg.encode(photo[..., 0], "q50")


def test_bitstream_bpp_uses_original_size():
    bitstream = Bitstream(data=b"x" * 100, codec="jpeg", level="q1", width=10, height=8)
    assert bitstream.bpp == 10.0


def test_ladders_are_valid_and_run_coarse_to_fine(codec, photo):
    values = [codec.knob.parse(level, codec.name) for level in codec.ladder]
    assert len(values) >= 5 and codec.typical_level
    steps = np.diff(values) if codec.knob.rate_rises else -np.diff(values)
    assert (steps > 0).all(), codec.ladder
