"""The icm command: happy paths, --json, batches, and every bad input as one line + exit 2."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from icm.cli.main import run
from icm.image import SAMPLE_PHOTOS, load_image
from icm.metrics import psnr as psnr_of


def icm(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point in-process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["icm", *map(str, args)])
    code = 0
    try:
        run()
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_encode_decode_info_round_trip(monkeypatch, capsys, png, photo, tmp_path):
    out = tmp_path / "photo.icm"
    code, stdout, _ = icm(monkeypatch, capsys, "encode", png, "-c", "jpeg@q60", "-o", out, "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["point"] == "jpeg@q60"
    assert record["bytes"] == out.stat().st_size
    assert record["bpp"] == 8 * out.stat().st_size / (192 * 128)

    code, stdout, _ = icm(monkeypatch, capsys, "info", out, "--json")
    info = json.loads(stdout)
    assert (info["width"], info["height"], info["crc"]) == (192, 128, "ok")
    assert info["bytes"] == info["payload_bytes"] + info["overhead_bytes"]

    decoded = tmp_path / "back.png"
    code, stdout, _ = icm(monkeypatch, capsys, "decode", out, "-o", decoded, "--json")
    assert code == 0 and json.loads(stdout)["point"] == "jpeg@q60"
    assert psnr_of(photo, load_image(decoded)) == pytest.approx(record["psnr_db"])


def test_bpp_target_counts_the_whole_container(monkeypatch, capsys, png, tmp_path):
    out = tmp_path / "r.icm"
    code, stdout, _ = icm(monkeypatch, capsys, "encode", png, "-c", "webp", "--bpp", "0.8",
                          "-o", out, "--json")
    record = json.loads(stdout)
    assert code == 0
    assert 0.85 * 0.8 < record["bpp"] <= 0.8
    assert out.stat().st_size * 8 / (192 * 128) == record["bpp"]
    assert record["rate_control"]["encodes"] <= 8


def test_raw_flag_and_standard_suffix_write_plain_files(monkeypatch, capsys, png, tmp_path):
    code, _, _ = icm(monkeypatch, capsys, "encode", png, "-c", "jpeg@q50", "-o",
                     tmp_path / "x.icm", "--raw")
    assert code == 0
    with Image.open(tmp_path / "x.jpg") as plain:  # a stock decoder opens it without icm
        assert plain.size == (192, 128)
    code, _, _ = icm(monkeypatch, capsys, "encode", png, "-c", "webp@q50", "-o",
                     tmp_path / "y.webp")
    assert code == 0 and (tmp_path / "y.webp").read_bytes()[8:12] == b"WEBP"
    code, _, err = icm(monkeypatch, capsys, "encode", png, "-c", "webp@q50", "-o",
                       tmp_path / "y.jpg")
    assert_one_line_error(code, err, "y.jpg", "standard file (.webp)")


def test_decode_reads_standard_files_by_suffix(monkeypatch, capsys, png, tmp_path):
    icm(monkeypatch, capsys, "encode", png, "-c", "jpeg@q50", "-o", tmp_path / "z.jpg")
    code, stdout, _ = icm(monkeypatch, capsys, "info", tmp_path / "z.jpg", "--json")
    assert code == 0 and json.loads(stdout)["codec"] == "jpeg"


def test_codecs_lists_every_family_with_versions(monkeypatch, capsys):
    code, stdout, _ = icm(monkeypatch, capsys, "codecs", "--json")
    rows = {row["codec"]: row for row in json.loads(stdout)}
    assert code == 0 and {"jpeg", "hevc", "vvc", "av1"} <= set(rows)
    assert all(row["library_version"] for row in rows.values() if row["available"])


def test_batch_encode_skips_bad_files_and_goes_on(monkeypatch, capsys, png, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.open(png).save(folder / "a.png")
    Image.open(png).save(folder / "sub" / "b.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    code, stdout, err = icm(monkeypatch, capsys, "encode", folder, "-c", "jpeg@q40", "-o", out,
                            "--json")
    assert code == 2  # something was skipped: scripts must notice
    payload = json.loads(stdout)
    assert len(payload["results"]) == 2 and len(payload["skipped"]) == 1
    assert "broken.png" in payload["skipped"][0]
    assert (out / "a.icm").exists() and (out / "sub" / "b.icm").exists()
    assert "skipped" in err


def test_input_is_never_overwritten(monkeypatch, capsys, tmp_path, photo):
    source = tmp_path / "same.jpg"
    Image.fromarray(photo).save(source)
    before = source.read_bytes()
    code, _, err = icm(monkeypatch, capsys, "encode", source, "-c", "jpeg@q10", "-o", source)
    assert_one_line_error(code, err, "overwrite the input")
    assert source.read_bytes() == before


@pytest.mark.parametrize("setup, args, needles", [
    (lambda d: None, ["encode", "{d}/missing.png", "-c", "jpeg@q50"], ["missing.png", "not found"]),
    (lambda d: (d / "e.png").write_bytes(b""), ["encode", "{d}/e.png", "-c", "jpeg@q50"],
     ["e.png", "empty file"]),
    (lambda d: (d / "t.txt").write_text("hi"), ["encode", "{d}/t.txt", "-c", "jpeg@q50"],
     ["t.txt", "not an image"]),
    (None, ["encode", "{png}", "-c", "jpeg@q50", "--max-pixels", "100"], ["pixel limit"]),
    (None, ["encode", "{png}", "-c", "mpeg2@q5"], ["unknown codec 'mpeg2'"]),
    (None, ["encode", "{png}", "-c", "jpeg@qp30"], ["jpeg: level 'qp30'"]),
    (None, ["encode", "{png}", "-c", "jpeg"], ["no level"]),
    (None, ["encode", "{png}", "-c", "jpeg@q30", "-O", "speed"], ["KEY=VALUE"]),
    (None, ["encode", "{png}", "-c", "jpeg", "--bpp", "0.0001"], ["cannot reach"]),
    (lambda d: (d / "empty").mkdir(), ["encode", "{d}/empty", "-c", "jpeg@q50"],
     ["empty", "no image files"]),
])
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, png, setup, args,
                                          needles):
    if setup:
        setup(tmp_path)
    argv = [a.format(d=tmp_path, png=png) for a in args]
    code, _, err = icm(monkeypatch, capsys, *argv)
    assert_one_line_error(code, err, *needles)


def test_corrupt_or_truncated_container_is_refused(monkeypatch, capsys, png, tmp_path):
    out = tmp_path / "c.icm"
    icm(monkeypatch, capsys, "encode", png, "-c", "jpeg@q50", "-o", out)
    data = out.read_bytes()
    (tmp_path / "cut.icm").write_bytes(data[:-7])
    code, _, err = icm(monkeypatch, capsys, "decode", tmp_path / "cut.icm")
    assert_one_line_error(code, err, "cut.icm", "truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flip.icm").write_bytes(bytes(flipped))
    code, _, err = icm(monkeypatch, capsys, "info", tmp_path / "flip.icm")
    assert_one_line_error(code, err, "flip.icm", "CRC mismatch")
    assert not (tmp_path / "flip.png").exists() and not (tmp_path / "cut.png").exists()


def test_unavailable_codec_says_how_to_install(monkeypatch, capsys, png):
    from icm.codecs import CODECS

    monkeypatch.setattr(CODECS["heic"], "unavailable_reason",
                        classmethod(lambda cls: "pillow-heif is not installed"))
    code, _, err = icm(monkeypatch, capsys, "encode", png, "-c", "heic@q50")
    assert_one_line_error(code, err, "heic is unavailable", "pip install pillow-heif")


def test_unknown_suffix_is_refused_for_decode(monkeypatch, capsys, tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 10)
    code, _, err = icm(monkeypatch, capsys, "decode", tmp_path / "x.bin")
    assert_one_line_error(code, err, "x.bin", "neither an .icm file")


def test_demo_runs_on_bundled_photos(monkeypatch, capsys):
    code, stdout, _ = icm(monkeypatch, capsys, "demo", "--codecs", "jpeg,webp", "--json")
    rows = json.loads(stdout)
    assert code == 0 and len(rows) == 2 * len(SAMPLE_PHOTOS)
    assert all(r["bpp"] <= 0.4 and r["psnr_db"] > 20 and 0 < r["ms_ssim"] <= 1 for r in rows)
    assert np.mean([r["bpp"] for r in rows]) > 0.3
