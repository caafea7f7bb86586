"""Machine-aware coding end to end: point tools, resampling, tags, stock decoders, CLI, bench.

Every file made here must stay a standard bitstream that a decoder without icm opens, and every
byte of side information must count in the reported bpp.
"""

from __future__ import annotations

import importlib.util
import io
import json

import av
import numpy as np
import pytest
from PIL import Image
from tests.test_cli import assert_one_line_error, icm

from icm import container
from icm.errors import IcmError
from icm.machines import InputProfile, get_machine
from icm.pipeline import (
    Recipe,
    RecipeError,
    Tool,
    decode_bytes,
    encode_image,
    machine_tools,
    parse_point,
)
from icm.pipeline import parse_points as expand_points

torch_classifier = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None,
    reason="EfficientNet-Lite0 (icm[bench]) is not installed",
)


# -- names -----------------------------------------------------------------------------------
def test_points_carry_tools_in_order_and_keep_at_signs_in_arguments():
    point = parse_point("jpeg+prompt=a cat@ViT-B-32@openai+fit=classify@q40")
    assert point.codec == "jpeg" and point.level == "q40"
    assert tuple(map(str, point.tools)) == ("prompt=a cat@ViT-B-32@openai", "fit=classify")
    assert str(point) == "jpeg+prompt=a cat@ViT-B-32@openai+fit=classify@q40"
    assert point.curve == "jpeg+prompt=a cat@ViT-B-32@openai+fit=classify"
    assert parse_point("hevc-kvazaar+saliency~8@0.1bpp").bpp == 0.1


def test_tools_parse_and_refuse_nonsense():
    assert Tool.parse("sensitivity=detect:nanodet~4") == Tool("sensitivity", "detect:nanodet", 4)
    assert str(Tool.parse("tags~3")) == "tags~3"
    for bad, message in [(("saliency", "text"), "one importance map"),
                         (("fit",), "needs =MACHINE"), (("saliency~x",), "not a number"),
                         (("fit=classify", "fit=detect"), "twice"), (("nope",), "unknown")]:
        with pytest.raises(IcmError, match=message):
            Recipe(bad)


def test_bench_grid_expands_tools_over_the_ladder_and_checks_them_first():
    points = expand_points(["jpeg+saliency", "jpeg@q30"])
    assert [str(p) for p in points[:2]] == ["jpeg+saliency@q10", "jpeg+saliency@q20"]
    assert {p.curve for p in points} == {"jpeg+saliency", "jpeg"}
    with pytest.raises(IcmError, match="unknown importance provider"):
        expand_points(["jpeg+nope"])


def test_input_profiles_fit_without_losing_what_the_model_reads():
    crop = InputProfile(224, "shorter-side+center-crop")
    assert crop.fit(768, 512) == (336, 224)
    assert crop.fit(200, 100) == (200, 100)  # never upscales
    assert InputProfile(320, "letterbox").fit(768, 512) == (320, 213)
    assert InputProfile(None, "native", max_pixels=10_000).fit(400, 100) == (200, 50)
    assert InputProfile(None, "native").fit(400, 100) == (400, 100)


# -- coding ----------------------------------------------------------------------------------
def test_prefiltered_webp_is_a_plain_webp_with_fewer_bytes(photo):
    # webp takes no delta-QP map, so importance reaches it as a prefilter (jpeg takes maps)
    plain = encode_image(photo, parse_point("webp@q70"), as_container=False)
    aware = encode_image(photo, parse_point("webp+saliency~3@q70"), as_container=False)
    assert aware.prepared.applier == "prefilter"
    assert len(aware.data) < len(plain.data)
    stock = np.asarray(Image.open(io.BytesIO(aware.data)).convert("RGB"))
    assert stock.shape == photo.shape


def test_delta_qp_hevc_opens_in_a_stock_decoder(photo, tmp_path):
    encoded = encode_image(photo, parse_point("hevc-kvazaar+saliency~6@qp32"), as_container=False)
    assert encoded.prepared.applier == "delta-qp"
    assert encoded.bitstream.params["delta_qp"].startswith("12x8 ")
    path = tmp_path / "aware.265"
    path.write_bytes(encoded.data)
    with av.open(str(path), format="hevc") as stream:  # FFmpeg's own demuxer and decoder
        frame = next(stream.decode(video=0))
    assert (frame.height, frame.width) == photo.shape[:2]


@torch_classifier
def test_fit_codes_the_machine_size_and_decode_restores_the_original(photo):
    big = np.asarray(Image.fromarray(photo).resize((576, 384), Image.Resampling.LANCZOS))
    encoded = encode_image(big, parse_point("jpeg+fit=classify@q80"))
    assert (encoded.bitstream.width, encoded.bitstream.height) == (336, 224)
    assert encoded.prepared.resample == container.Resample(336, 224, "lanczos")
    restored = decode_bytes(encoded.data)
    assert restored.shape == big.shape
    plain = encode_image(big, parse_point("jpeg@q80"))
    assert len(encoded.data) < 0.5 * len(plain.data)


@torch_classifier
def test_rate_control_counts_fitted_bits_over_the_original_pixels(photo):
    big = np.asarray(Image.fromarray(photo).resize((576, 384), Image.Resampling.LANCZOS))
    encoded = encode_image(big, parse_point("jpeg+fit=classify@0.3bpp"))
    achieved = 8 * len(encoded.data) / (576 * 384)
    assert encoded.rate.achieved_bpp == pytest.approx(achieved)
    assert 0.2 < achieved <= 0.3


@torch_classifier
def test_tags_round_trip_and_count_in_bpp(photo):
    plain = encode_image(photo, parse_point("jpeg@q50"))
    tagged = encode_image(photo, parse_point("jpeg+tags~3@q50"))
    assert tagged.bitstream.data == plain.bitstream.data
    header, _ = container.unpack(tagged.data)
    assert header.tags.vocabulary == "in1k" and len(header.tags.ids) == 3
    extra = len(tagged.data) - len(plain.data)
    # TLV tag + length + name length + "in1k" + three 2-byte varint ids (ids >= 128)
    assert 2 + 1 + 4 + 3 <= extra <= 2 + 1 + 4 + 6
    assert list(header.tags.ids) == get_machine("classify").tag(photo, 3)[1]


# -- command line ----------------------------------------------------------------------------
@torch_classifier
def test_encode_for_a_machine_and_decode_json_returns_tags(monkeypatch, capsys, png, tmp_path):
    out = tmp_path / "cat.icm"
    code, stdout, _ = icm(monkeypatch, capsys, "encode", png, "-c", "hevc-kvazaar@qp34",
                          "--for", "classify", "--tags", "2", "-o", out, "--json")
    assert code == 0, stdout
    record = json.loads(stdout)
    assert record["importance"]["provider"] == "for=classify:efficientnet-lite0"
    assert record["allocation"]["weights"] == "fisher8"
    assert record["applier"]["kind"] == "delta-qp"
    assert record["bytes"] == out.stat().st_size
    code, stdout, _ = icm(monkeypatch, capsys, "decode", out, "--json")
    decoded = json.loads(stdout)
    assert len(decoded["tags"]["ids"]) == 2 and len(decoded["tags"]["labels"]) == 2
    assert (decoded["width"], decoded["height"]) == (192, 128)
    code, stdout, _ = icm(monkeypatch, capsys, "info", out, "--json")
    assert json.loads(stdout)["recipe"] == "for=classify:efficientnet-lite0"


def test_machine_tools_from_flags():
    assert tuple(map(str, machine_tools(None, "saliency", 4.0))) == ("saliency~4",)
    assert machine_tools(None) == ()
    with pytest.raises(RecipeError, match="--strength needs"):
        machine_tools(None, None, 3.0)


def test_bad_importance_on_the_command_line_is_one_line(monkeypatch, capsys, png, tmp_path):
    code, _, err = icm(monkeypatch, capsys, "encode", png, "-c", "jpeg@q50",
                       "--importance", "nope", "-o", tmp_path / "x.icm")
    assert_one_line_error(code, err, "unknown importance provider 'nope'")
    code, _, err = icm(monkeypatch, capsys, "encode", png, "-c", "jpeg@q50", "--for", "nope:x",
                       "-o", tmp_path / "x.icm")
    assert_one_line_error(code, err, "nope")


def test_importance_command_writes_an_overlay_and_numbers(monkeypatch, capsys, png, tmp_path):
    out = tmp_path / "map.png"
    code, stdout, _ = icm(monkeypatch, capsys, "importance", png, "-o", out, "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["provider"] == "saliency" and record["grid"] == "12x8"
    assert np.array(record["values"]).shape == (8, 12)
    assert Image.open(out).size == (192, 128)
    code, _, err = icm(monkeypatch, capsys, "importance", png, "-o", png)
    assert_one_line_error(code, err, "photo.png")
