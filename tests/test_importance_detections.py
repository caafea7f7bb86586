"""The ``detections`` importance provider: a detector's own boxes as a block map."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import icm.machines.detect as detect_module
from icm.image import sample_photo
from icm.importance.providers.detections import (
    MARGIN,
    SCORE_THRESHOLD,
    DetectionsProvider,
    box_map,
    box_value,
)
from icm.importance.registry import PROVIDERS, UnknownImportanceError, get_importance
from icm.machines import get_machine

GREY = 128


# -- without the model ----------------------------------------------------------------------------
def test_registered_with_its_default_machine():
    assert PROVIDERS["detections"] is DetectionsProvider
    provider = DetectionsProvider()
    assert provider.argument == "detect:nanodet"
    assert provider.full_name == "detections=detect:nanodet"
    assert DetectionsProvider("detect:nanodet@/x").full_name == "detections=detect:nanodet@/x"


def test_box_value_is_full_from_the_machine_threshold():
    assert box_value(0.9, 0.4) == 1.0
    assert box_value(0.4, 0.4) == 1.0
    assert box_value(0.3, 0.4) == pytest.approx(0.75)
    assert box_value(0.2, 0.4) == pytest.approx(0.5)


def test_box_map_covers_touched_blocks_with_the_max():
    # 64 x 96 image, 16-px blocks: 4 rows x 6 cols
    boxes = [[20, 20, 40, 30, 0.8, 0], [30, 25, 70, 60, 0.3, 1]]
    values = box_map(boxes, 64, 96, 16, 0.0, 0.4)
    expected = np.zeros((4, 6), dtype=np.float32)
    expected[1:4, 1:5] = 0.75  # x 30..70 -> cols 1..4, y 25..60 -> rows 1..3
    expected[1, 1:3] = 1.0  # x 20..40 -> cols 1..2, y 20..30 -> row 1; the higher value wins
    np.testing.assert_allclose(values, expected)
    # a 25 % margin pushes the first box to x 15..45, y 17.5..32.5: col 0 and row 2 join
    wider = box_map(boxes[:1], 64, 96, 16, 0.25, 0.4)
    assert wider[1:3, 0:3].min() == 1.0 and wider.sum() == 6
    # margins are clipped to the image
    edge = box_map([[0, 0, 95, 63, 0.5, 0]], 64, 96, 16, MARGIN, 0.4)
    assert edge.shape == (4, 6) and edge.min() == 1.0
    assert box_map([], 64, 96, 16, MARGIN, 0.4).max() == 0.0


def test_unavailable_reasons():
    assert "not a detector" in DetectionsProvider.unavailable_reason("classify:squeezenet")
    assert "unknown machine family" in DetectionsProvider.unavailable_reason("nosuch:model")
    assert DetectionsProvider.unavailable_reason("nanodet") is not None  # not family:model


def test_reason_names_the_missing_model_folder(tmp_path):
    reason = DetectionsProvider.unavailable_reason(f"detect:nanodet@{tmp_path}")
    assert isinstance(reason, str) and str(tmp_path) in reason
    with pytest.raises(UnknownImportanceError, match="is unavailable"):
        get_importance(f"detections=detect:nanodet@{tmp_path}")


def test_reason_with_an_empty_models_dir(tmp_path, monkeypatch):
    """``$ICM_MODELS_DIR/ncnn`` is searched first; the checkout's sibling folder may still hold
    the model, and then the provider runs, else the reason names both places."""
    monkeypatch.setenv("ICM_MODELS_DIR", str(tmp_path))
    sibling = detect_module.ncnn_search_dirs(None)[-1]
    reason = DetectionsProvider.unavailable_reason(None)
    if detect_module.importable("ncnn") and (sibling / "nanodet_m.bin").is_file():
        assert reason is None
    else:
        assert isinstance(reason, str)
        if detect_module.importable("ncnn"):
            assert str(tmp_path / "ncnn") in reason and str(sibling) in reason


def test_reason_without_ncnn(monkeypatch):
    monkeypatch.setattr(detect_module, "importable", lambda _name: False)
    assert DetectionsProvider.unavailable_reason(None) == (
        "the Python package 'ncnn' is not installed"
    )


# -- with NanoDet ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def provider() -> DetectionsProvider:
    reason = DetectionsProvider.unavailable_reason(None)
    if reason:
        pytest.skip(f"detect:nanodet: {reason}")
    return get_importance("detections")


@pytest.fixture(scope="module")
def cat_on_grey() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Chelsea (the cat) shrunk to 240x160 and pasted near the top-left of a 720x480 grey
    canvas: one clear object, and a large empty area far from it."""
    cat = Image.fromarray(sample_photo("chelsea")).resize((240, 160), Image.Resampling.BILINEAR)
    canvas = np.full((480, 720, 3), GREY, dtype=np.uint8)
    x0, y0 = 48, 32
    canvas[y0 : y0 + 160, x0 : x0 + 240] = np.asarray(cat)
    return canvas, (x0, y0, x0 + 240, y0 + 160)


def test_map_marks_the_detected_cat_and_nothing_far_away(provider, cat_on_grey):
    image, (x0, y0, x1, y1) = cat_on_grey
    machine = provider.machine()
    cats = [box for box in machine.detect(image) if box[5] == 15]
    assert cats, "NanoDet no longer finds the cat"
    bx0, by0, bx1, by1, score, _ = max(cats, key=lambda box: box[4])
    assert score >= machine.score_threshold
    # the detected box is the pasted photo's, give or take a block
    assert abs(bx0 - x0) < 16 and abs(bx1 - x1) < 32 and abs(by0 - y0) < 16 and by1 > y1 - 16

    importance = provider.compute(image)
    assert importance.shape == (30, 45) and importance.provider == "detections=detect:nanodet"
    values = importance.values
    inside = values[int(by0) // 16 : int(by1) // 16 + 1, int(bx0) // 16 : int(bx1) // 16 + 1]
    assert inside.min() == 1.0  # a box over the machine's threshold keeps full quality
    # the margin reaches one block beyond the box on every side it has room
    assert values[int(by1 + 0.1 * (by1 - by0)) // 16, int(bx1 + 0.1 * (bx1 - bx0)) // 16] == 1.0
    # blocks well clear of every box (right half, bottom half) are 0
    assert values[:, 24:].max() == 0.0 and values[18:, :].max() == 0.0
    assert 0.05 < float((values > 0).mean()) < 0.35
    assert importance.params["threshold"] == SCORE_THRESHOLD
    assert importance.params["margin"] == MARGIN


def test_map_is_deterministic(provider, cat_on_grey):
    image, _ = cat_on_grey
    first = provider.compute(image)
    second = get_importance("detections=detect:nanodet").compute(image.copy())
    np.testing.assert_array_equal(first.values, second.values)
    assert first.describe() == second.describe()
    coarse = provider.compute(image, block=32)
    assert coarse.shape == (15, 23)
    rows, cols = np.nonzero(first.values)  # a coarser grid covers wherever the fine one does
    assert np.all(coarse.values[rows // 2, cols // 2] > 0)


def test_flat_grey_gives_an_all_zero_map(provider):
    flat = np.full((240, 360, 3), GREY, dtype=np.uint8)
    importance = provider.compute(flat)
    assert importance.shape == (15, 23)
    assert importance.values.max() == 0.0 and importance.params["boxes"] == 0


def test_low_threshold_only_adds_boxes(provider):
    machine = provider.machine()
    image = sample_photo("motorcycle")
    default = machine.detect(image)
    low = machine.detect(image, threshold=SCORE_THRESHOLD)
    assert default == machine.detect(image, threshold=machine.score_threshold)
    assert default == machine.predict([image])[0]["boxes"]
    assert [box for box in low if box[4] >= machine.score_threshold] == default
    assert len(low) > len(default) and min(box[4] for box in low) >= SCORE_THRESHOLD


def test_fingerprint_names_machine_threshold_and_margin(provider):
    text = provider.fingerprint()
    assert provider.machine().fingerprint() in text
    assert f"thr={SCORE_THRESHOLD}" in text and f"margin={MARGIN}" in text


def test_nanodet_defaults_to_this_provider(provider):
    machine = get_machine("detect:nanodet")
    assert machine.default_importance() == "detections=detect:nanodet"
    assert isinstance(get_importance(machine.default_importance()), DetectionsProvider)
