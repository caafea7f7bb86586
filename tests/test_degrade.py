"""Synthetic degradations: every registered one is deterministic, graded and shape-preserving;
the physics of each family points the right way; ``icm degrade`` writes files and fails in one
line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from tests.test_cli import assert_one_line_error, icm

from icm.degrade import (
    DEGRADATIONS,
    BadDegradationError,
    DegradationRecord,
    UnknownDegradationError,
    degrade,
    get_degradation,
    list_degradations,
)
from icm.degrade.capture import jpeg_quality
from icm.errors import IcmError
from icm.image import load_image, sample_photo
from icm.metrics import psnr

NAMES = sorted(DEGRADATIONS)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return np.ascontiguousarray(sample_photo("astronaut")[:96, :128])


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return np.full((96, 128, 3), 128, np.uint8)


def test_the_issue_families_are_registered():
    expected = {"noise", "poisson-noise", "blur", "motion-blur", "haze", "rain", "raindrops",
                "low-light", "jpeg"}
    assert expected <= set(NAMES)
    assert [cls.name for cls in list_degradations()] == NAMES
    for cls in list_degradations():
        assert cls.summary and cls.mapping and cls.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_shape_preserving(name, clean):
    degradation = get_degradation(name)
    first = degradation.apply(clean, 0.5, seed=7)
    second = get_degradation(name).apply(clean.copy(), 0.5, seed=7)
    assert first.shape == clean.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_matter_exactly_when_the_family_is_random(name, clean):
    degradation = get_degradation(name)
    a, b = degradation.apply(clean, 0.5, seed=0), degradation.apply(clean, 0.5, seed=1)
    assert (not np.array_equal(a, b)) == degradation.random


@pytest.mark.parametrize("name", NAMES)
def test_strength_zero_is_the_identity_and_input_is_untouched(name, clean):
    before = clean.copy()
    out = get_degradation(name).apply(clean, 0.0, seed=3)
    assert np.array_equal(out, clean) and out is not clean
    get_degradation(name).apply(clean, 1.0, seed=3)
    assert np.array_equal(clean, before)


@pytest.mark.parametrize("name", NAMES)
def test_psnr_falls_as_strength_rises(name, clean):
    degradation = get_degradation(name)
    mild, medium, severe = (psnr(clean, degradation.apply(clean, s, seed=0))
                            for s in (0.3, 0.5, 0.9))
    assert severe < medium < mild
    assert medium < 40.0


@pytest.mark.parametrize("name", NAMES)
def test_tiny_images_survive_every_family(name):
    tiny = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    assert get_degradation(name).apply(tiny, 1.0, seed=0).shape == tiny.shape


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan"), float("inf"), "lots"])
def test_strength_outside_zero_one_is_an_icm_error(strength, clean):
    with pytest.raises(BadDegradationError, match=r"strength must be a number in \[0, 1\]"):
        get_degradation("noise").apply(clean, strength)


def test_negative_seed_and_bad_images():
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(IcmError, match="seed"):
        get_degradation("noise").apply(rgb, 0.5, seed=-1)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        get_degradation("noise").apply(rgb.astype(np.float32), 0.5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        get_degradation("noise").apply(rgb[:, :, 0], 0.5)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownDegradationError) as caught:
        get_degradation("fog")
    message = str(caught.value)
    assert "'fog'" in message and "\n" not in message
    assert all(name in message for name in NAMES)
    assert get_degradation(" HAZE ").name == "haze"


def test_record_parses_serialises_and_replays(clean):
    record = DegradationRecord.parse("Haze@0.5", seed=3)
    assert record == DegradationRecord("haze", 0.5, 3)
    assert str(record) == "haze@0.5"
    assert DegradationRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert np.array_equal(degrade(clean, record), get_degradation("haze").apply(clean, 0.5, 3))
    for bad in ("haze", "@0.5", "haze@strong", "haze@2"):
        with pytest.raises(BadDegradationError):
            DegradationRecord.parse(bad)


# --- the physics of each family ---------------------------------------------------------------


def _mean_abs_laplacian(rgb: np.ndarray) -> float:
    grey = rgb.astype(np.float64).mean(axis=2)
    return float(np.abs(ndimage.laplace(grey))[2:-2, 2:-2].mean())


@pytest.mark.parametrize("strength", [0.2, 0.5, 1.0])
def test_gaussian_noise_has_the_documented_sigma(grey, strength):
    noisy = get_degradation("noise").apply(grey, strength, seed=0)
    residual = noisy.astype(np.float64) - grey
    assert residual.std() == pytest.approx(50 * strength, rel=0.05)
    assert abs(residual.mean()) < 1.0


def test_poisson_noise_grows_with_the_signal():
    rng_seed = 4
    dark = np.full((96, 128, 3), 10, np.uint8)
    bright = np.full((96, 128, 3), 200, np.uint8)
    poisson = get_degradation("poisson-noise")
    # in linear light the noise variance is proportional to the signal (shot noise) ...
    from icm.degrade.base import to_linear, to_unit

    def linear_std(flat: np.ndarray) -> float:
        return float(to_linear(to_unit(poisson.apply(flat, 0.5, rng_seed))).std())

    assert linear_std(bright) > 3 * linear_std(dark)
    # ... and the picture stays unbiased where nothing clips
    assert abs(poisson.apply(bright, 0.5, rng_seed).astype(float).mean() - 200) < 6


@pytest.mark.parametrize("name", ["blur", "motion-blur"])
def test_blur_removes_high_frequencies(name, clean):
    sharp = _mean_abs_laplacian(clean)
    blurred = [_mean_abs_laplacian(get_degradation(name).apply(clean, s, 0)) for s in (0.3, 0.9)]
    assert blurred[1] < blurred[0] < 0.7 * sharp


def test_blur_keeps_flat_areas_and_mean(grey, clean):
    assert np.array_equal(get_degradation("blur").apply(grey, 1.0), grey)
    blurred = get_degradation("blur").apply(clean, 0.5)
    assert abs(blurred.astype(float).mean() - clean.astype(float).mean()) < 1.0


def test_haze_brightens_and_flattens(clean):
    hazy = get_degradation("haze").apply(clean, 0.6, seed=0).astype(np.float64)
    assert hazy.mean() > clean.mean() + 20
    assert hazy.std() < 0.7 * clean.std()
    # far (top) rows are veiled more than near (bottom) ones
    gain = np.abs(hazy - clean)
    assert gain[:24].mean() > gain[-24:].mean()


def test_low_light_darkens_and_is_noisy(clean, grey):
    for strength in (0.3, 0.6, 1.0):
        dark = get_degradation("low-light").apply(clean, strength, seed=0)
        assert dark.mean() < (1 - 0.5 * strength) * clean.mean()
    flat = get_degradation("low-light").apply(grey, 0.6, seed=0)
    assert flat.std() > 1.0  # a flat scene is no longer flat: sensor noise


def test_rain_adds_bright_slanted_streaks(clean):
    rainy = get_degradation("rain").apply(clean, 0.7, seed=0).astype(np.int16)
    added = rainy - clean
    assert (added >= 0).all()  # streaks only ever add light
    streak = added.mean(axis=2) > 20
    assert 0.01 < streak.mean() < 0.5
    # streaks are long and thin: more coverage along columns than a random scatter would give
    runs = (streak[1:] & streak[:-1]).sum() / max(1, streak.sum())
    assert runs > 0.5


def test_raindrops_are_local_blobs(clean):
    drops = get_degradation("raindrops").apply(clean, 0.5, seed=0)
    changed = np.abs(drops.astype(np.int16) - clean).max(axis=2) > 8
    assert 0.02 < changed.mean() < 0.8  # some of the frame, not all of it
    assert (drops == clean).all(axis=2).mean() > 0.5  # between the drops, nothing moves
    more = get_degradation("raindrops").apply(clean, 1.0, seed=0)
    assert (more != clean).any(axis=2).mean() > (drops != clean).any(axis=2).mean()


def test_jpeg_quality_map_and_blocking(clean):
    assert [jpeg_quality(s) for s in (0.2, 0.5, 1.0)] == [77, 50, 5]
    rough = get_degradation("jpeg").apply(clean, 1.0).astype(np.float64)
    # quality 5 leaves 8x8 blocks: jumps across block edges exceed those inside blocks
    steps = np.abs(np.diff(rough.mean(axis=2), axis=1))
    on_edges = steps[:, 7::8].mean()
    inside = np.delete(steps, np.s_[7::8], axis=1).mean()
    assert on_edges > 1.5 * inside


# --- icm degrade ------------------------------------------------------------------------------


def test_cli_writes_the_degraded_image(monkeypatch, capsys, png, photo, tmp_path):
    out = tmp_path / "hazy.png"
    code, stdout, _ = icm(monkeypatch, capsys, "degrade", png, "-o", out, "--type", "haze",
                          "--strength", "0.4", "--seed", "5", "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["degradation"] == {"name": "haze", "strength": 0.4, "seed": 5}
    written = load_image(out)
    assert np.array_equal(written, get_degradation("haze").apply(photo, 0.4, seed=5))
    assert record["psnr_db"] == pytest.approx(psnr(photo, written))

    code, stdout, _ = icm(monkeypatch, capsys, "degrade", png, "--type", "noise")
    assert code == 0 and len(stdout.strip().splitlines()) == 1
    assert (tmp_path / "photo.noise-0.5.png").is_file()
    assert "noise@0.5" in stdout and "PSNR" in stdout


def test_cli_lists_degradations(monkeypatch, capsys):
    code, stdout, _ = icm(monkeypatch, capsys, "degrade", "--list", "--json")
    assert code == 0
    assert [row["name"] for row in json.loads(stdout)] == NAMES


def test_cli_unknown_type_is_one_line(monkeypatch, capsys, png, tmp_path):
    code, _, err = icm(monkeypatch, capsys, "degrade", png, "-o", tmp_path / "x.png",
                       "--type", "fog")
    assert_one_line_error(code, err, "unknown degradation 'fog'", "haze", "low-light")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("strength", ["2", "-0.5"])
def test_cli_bad_strength_is_one_line(monkeypatch, capsys, png, tmp_path, strength):
    code, _, err = icm(monkeypatch, capsys, "degrade", png, "-o", tmp_path / "x.png",
                       "--type", "blur", "--strength", strength)
    assert_one_line_error(code, err, "strength must be a number in [0, 1]")


def test_cli_bad_files_are_one_line(monkeypatch, capsys, png, tmp_path):
    missing = tmp_path / "missing.png"
    code, _, err = icm(monkeypatch, capsys, "degrade", missing, "--type", "blur")
    assert_one_line_error(code, err, "missing.png", "file not found")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    code, _, err = icm(monkeypatch, capsys, "degrade", garbage, "--type", "blur")
    assert_one_line_error(code, err, "garbage.png")
    code, _, err = icm(monkeypatch, capsys, "degrade", png, "-o", png, "--type", "blur")
    assert_one_line_error(code, err, "overwrite the input")
    code, _, err = icm(monkeypatch, capsys, "degrade", png, "-o", tmp_path / "x.nope",
                       "--type", "blur")
    assert_one_line_error(code, err, "x.nope", "suffix")
    code, _, err = icm(monkeypatch, capsys, "degrade", "--type", "blur")
    assert_one_line_error(code, err, "needs an IMAGE")
