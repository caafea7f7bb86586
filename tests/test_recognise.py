"""The degradation recogniser: finite fixed-length features at any size, a model that learns
from a few photos and generalises to a held-out one, files that round-trip and fail in one
line, the shipped model, and ``icm recognise``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.test_cli import assert_one_line_error, icm

from icm.degrade import DEGRADATIONS, get_degradation
from icm.degrade.recognise import (
    CLEAN,
    FEATURE_NAMES,
    BadModelError,
    Recogniser,
    get_recogniser,
    image_features,
    train_recogniser,
    training_samples,
)
from icm.errors import IcmError
from icm.image import sample_photo
from icm.image.datasets import open_dataset

HELD_OUT = "samples/chelsea"
CROP = 128


@pytest.fixture(scope="module")
def photos():
    images = list(open_dataset("samples").of_kind("photo"))[:4]  # three to train, one held out
    assert len(images) == 4 and HELD_OUT in [image.id for image in images]
    return images


@pytest.fixture(scope="module")
def model(photos) -> Recogniser:
    """Trained here, on crops of three of the four bundled photos (never the held-out one)."""
    train = [image for image in photos if image.id != HELD_OUT]
    return train_recogniser(train, strengths=(0.35, 0.75), seed=0, crop=CROP, crops_per_image=3)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (31, 17), (97, 203), (333, 129)])
def test_features_have_a_fixed_length_and_are_finite(shape):
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    features = image_features(rgb)
    assert features.shape == (len(FEATURE_NAMES),)
    assert np.isfinite(features).all()
    flat = np.zeros((*shape, 3), np.uint8)
    assert np.isfinite(image_features(flat)).all()


def test_features_refuse_what_is_not_an_rgb_image():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        image_features(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        image_features(np.zeros((8, 8, 3), np.float32))


def test_training_is_deterministic_for_a_seed(photos):
    one = [photos[0]]
    first = training_samples(one, (0.5,), seed=3, names=["noise", "rain"], crop=64)
    second = training_samples(one, (0.5,), seed=3, names=["noise", "rain"], crop=64)
    other = training_samples(one, (0.5,), seed=4, names=["noise", "rain"], crop=64)
    assert np.array_equal(first[0], second[0]) and first[1:] == second[1:]
    assert first[1] == [CLEAN, "noise", "rain"]
    assert not np.array_equal(first[0], other[0])


def test_rescaled_views_add_downscaled_copies_of_each_photo(photos):
    from icm.degrade.recognise import train as module

    one = [photos[0]]
    plain = training_samples(one, (0.5,), seed=3, names=["noise"])
    grown = training_samples(one, (0.5,), seed=3, names=["noise"], rescaled_views=2)
    assert grown[1] == [CLEAN, "noise"] * 3
    assert np.array_equal(grown[0][:2], plain[0])  # the original comes first, unchanged
    assert not np.array_equal(grown[0][2:4], plain[0])  # the copies are other pictures
    pixels = photos[0].load()
    sources = list(module._rescaled([("a", lambda: pixels)], 2, seed=3))
    sizes = [load().shape[:2] for _, load in sources]
    height, width = pixels.shape[:2]
    assert sizes[0] == (height, width)
    assert all(0.45 * height <= h <= 0.95 * height and 0.45 * width <= w <= 0.95 * width
               for h, w in sizes[1:])


def test_unknown_class_names_and_strengths_are_icm_errors(photos):
    with pytest.raises(IcmError, match="unknown degradation 'fog'"):
        train_recogniser([photos[0]], names=["fog"], crop=64)
    with pytest.raises(IcmError, match="strength"):
        train_recogniser([photos[0]], strengths=(0.0,), crop=64)


def test_a_recogniser_trained_on_three_photos_recognises_the_fourth(model, photos):
    assert model.classes == (CLEAN, *sorted(DEGRADATIONS))
    held_out = next(image for image in photos if image.id == HELD_OUT)
    features, labels, strengths = training_samples([held_out], (0.35, 0.75), seed=99,
                                                   crop=CROP, crops_per_image=2)
    probabilities = model.probabilities(features)
    predicted = [model.classes[k] for k in probabilities.argmax(axis=1)]
    accuracy = np.mean([p == t for p, t in zip(predicted, labels, strict=True)])
    chance = 1 / len(model.classes)
    assert accuracy > 3 * chance, (accuracy, list(zip(labels, predicted, strict=True)))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    # the strength readout is in [0, 1] and on average tracks the truth
    read = model.strengths(features)[np.arange(len(labels)), probabilities.argmax(axis=1)]
    assert ((read >= 0) & (read <= 1)).all()
    weak = [r for r, s, t in zip(read, strengths, labels, strict=True) if t != CLEAN and s < 0.5]
    strong = [r for r, s, t in zip(read, strengths, labels, strict=True) if s > 0.5]
    assert np.mean(strong) > np.mean(weak)


def test_save_and_load_give_identical_predictions(model, tmp_path):
    path = model.save(tmp_path / "model.npz")
    loaded = Recogniser.load(path)
    assert loaded.classes == model.classes
    rgb = get_degradation("blur").apply(sample_photo("coffee")[:160, :200], 0.6, seed=1)
    assert loaded.predict(rgb) == model.predict(rgb)
    assert path.stat().st_size < 200_000


def test_corrupt_or_foreign_model_files_are_one_line_errors(model, tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a model at all")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(model.to_bytes()[:300])
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    for path in (garbage, truncated, other, tmp_path / "missing.npz"):
        with pytest.raises(BadModelError) as caught:
            Recogniser.load(path)
        message = str(caught.value)
        assert path.name in message and "\n" not in message
    with np.load(model.save(tmp_path / "good.npz")) as archive:
        arrays = dict(archive)
    arrays["feature_version"] = np.array(999)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(BadModelError, match="feature version 999"):
        Recogniser.load(tmp_path / "future.npz")


@pytest.mark.parametrize("name", ["noise", "haze"])
def test_the_shipped_model_recognises_strong_damage(name):
    recogniser = get_recogniser()
    assert recogniser is get_recogniser()  # loaded once
    assert set(recogniser.classes) == {CLEAN, *DEGRADATIONS}
    damaged = get_degradation(name).apply(sample_photo("astronaut"), 0.7, seed=5)
    result = recogniser.predict(damaged)
    assert result.name == name, result.top()
    assert 0.3 <= result.strength <= 1.0
    assert result.top(1)[0][0] == name


def test_cli_prints_json(monkeypatch, capsys, png):
    code, stdout, _ = icm(monkeypatch, capsys, "recognise", png, "--json")
    assert code == 0
    record = json.loads(stdout)
    assert {"input", "name", "strength", "top", "probabilities"} <= set(record)
    assert len(record["top"]) == 3 and record["name"] == record["top"][0]["name"]
    assert sum(record["probabilities"].values()) == pytest.approx(1.0)
    code, stdout, _ = icm(monkeypatch, capsys, "recognise", png)
    assert code == 0 and len(stdout.strip().splitlines()) == 1 and "top 3" in stdout


def test_cli_accepts_a_model_file(monkeypatch, capsys, png, model, tmp_path):
    path = model.save(tmp_path / "mine.npz")
    code, stdout, _ = icm(monkeypatch, capsys, "recognise", png, "--model", path, "--json")
    assert code == 0 and json.loads(stdout)["model"] == str(path)


def test_cli_bad_inputs_are_one_line(monkeypatch, capsys, png, tmp_path):
    code, _, err = icm(monkeypatch, capsys, "recognise", tmp_path / "missing.png")
    assert_one_line_error(code, err, "missing.png")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"nope")
    code, _, err = icm(monkeypatch, capsys, "recognise", png, "--model", garbage)
    assert_one_line_error(code, err, "garbage.npz", "not a recogniser model")
