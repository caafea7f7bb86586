"""Importance maps, their model-free and feature-sensitivity providers, and the appliers.

The appliers are judged by what they do to real bitstreams: a map that favours one half of the
picture must cost bits and PSNR only in the other half.
"""

from __future__ import annotations

import numpy as np
import pytest

from icm.codecs import get_codec
from icm.importance import ImportanceMap, UnknownImportanceError, get_importance
from icm.importance.apply import delta_qp_map, prefilter, quality_map
from icm.importance.maps import block_means, grid_shape, normalise
from icm.metrics import psnr


def half_map(height: int, width: int, block: int = 16, important: str = "left") -> ImportanceMap:
    rows, cols = grid_shape(height, width, block)
    values = np.zeros((rows, cols), np.float32)
    half = slice(0, cols // 2) if important == "left" else slice(cols // 2, cols)
    values[:, half] = 1.0
    return ImportanceMap(values, block, width, height, "test-half")


def halves_psnr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    mid = a.shape[1] // 2
    return psnr(a[:, :mid], b[:, :mid]), psnr(a[:, mid:], b[:, mid:])


# -- the map ---------------------------------------------------------------------------------
def test_map_checks_its_grid_and_range():
    with pytest.raises(ValueError, match="does not cover"):
        ImportanceMap(np.zeros((2, 2)), 16, 40, 40, "x")  # 40 px needs 3 blocks
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImportanceMap(np.full((3, 3), 1.5), 16, 40, 40, "x")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImportanceMap(np.full((3, 3), np.nan), 16, 40, 40, "x")


def test_block_means_average_partial_edge_blocks_over_their_own_pixels():
    dense = np.arange(5 * 7, dtype=float).reshape(5, 7)
    means = block_means(dense, 4)
    assert means.shape == (2, 2)
    assert means[1, 1] == pytest.approx(dense[4:, 4:].mean())
    assert means[0, 0] == pytest.approx(dense[:4, :4].mean())


def test_normalise_is_robust_and_flat_maps_favour_nothing():
    scores = np.linspace(0, 1, 100)
    scores[0] = 1e6  # one outlier must not flatten the rest
    assert np.median(normalise(scores)) > 0.3
    assert np.all(normalise(np.full(10, 3.0)) == 1.0)


def test_resampling_a_map_keeps_where_the_importance_is():
    importance = half_map(64, 96)
    grid = importance.to_grid(2, 3)
    assert grid[:, 0].min() > 0.9 and grid[:, 2].max() < 0.1
    dense = importance.to_pixels(32, 48)
    assert dense.shape == (32, 48)
    assert dense[:, :10].min() > 0.9 and dense[:, -10:].max() < 0.1
    assert quality_map(importance, 64, 96).shape == (64, 96)


# -- providers -------------------------------------------------------------------------------
def test_saliency_is_deterministic_and_shaped_for_odd_sizes(odd_photo):
    provider = get_importance("saliency")
    first, second = provider.compute(odd_photo), provider.compute(odd_photo)
    height, width = odd_photo.shape[:2]
    assert first.shape == grid_shape(height, width, 16) == (5, 7)
    assert np.array_equal(first.values, second.values)
    assert provider.compute(odd_photo, block=8).shape == (9, 13)
    assert first.describe()["crc32"] == second.describe()["crc32"]


def test_saliency_finds_the_odd_one_out():
    """A single textured patch on a flat field is the most salient block."""
    image = np.full((128, 128, 3), 120, np.uint8)
    rng = np.random.default_rng(0)
    image[80:112, 16:48] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    values = get_importance("saliency").compute(image).values
    row, col = np.unravel_index(np.argmax(values), values.shape)
    assert 4 <= row <= 7 and 0 <= col <= 3


def test_unknown_or_unusable_providers_are_one_line_errors():
    with pytest.raises(UnknownImportanceError, match="unknown importance provider 'nope'"):
        get_importance("nope")
    with pytest.raises(UnknownImportanceError, match="empty argument"):
        get_importance("sensitivity=")
    with pytest.raises(Exception, match="unknown"):
        get_importance("sensitivity=classify:no-such-net")


def test_feature_sensitivity_follows_what_the_encoder_reads(photo):
    """An encoder that only reads the left half gives a map that is zero on the right."""
    torch = pytest.importorskip("torch")
    from icm.importance.providers.sensitivity import feature_sensitivity

    conv = torch.nn.Conv2d(3, 4, 3)
    torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(0))

    def left_only(x):
        return conv(x[..., : x.shape[-1] // 2] / 255.0)

    scores = feature_sensitivity(left_only, photo, 16)
    assert scores.shape == (8, 12)
    assert scores[:, :6].sum() > 0
    assert np.all(scores[:, 7:] == 0)  # column 6 straddles the cut through the blur
    again = feature_sensitivity(left_only, photo, 16)
    assert np.allclose(scores, again)


def test_sensitivity_of_the_offline_classifier(photo):
    pytest.importorskip("efficientnet_lite_pytorch")
    provider = get_importance("sensitivity")
    importance = provider.compute(photo)
    assert importance.shape == (8, 12)
    assert importance.provider == "sensitivity=classify:efficientnet-lite0"
    assert 0 < importance.values.mean() < 1
    assert np.array_equal(importance.values, provider.compute(photo).values)
    assert "weights=" in provider.fingerprint()


# -- appliers --------------------------------------------------------------------------------
def test_delta_qp_rule():
    importance = ImportanceMap(np.array([[0.0, 0.5, 1.0]], np.float32), 16, 48, 16, "x")
    assert delta_qp_map(importance, 6).tolist() == [[6, 0, -6]]
    assert delta_qp_map(importance, 0).tolist() == [[0, 0, 0]]
    with pytest.raises(ValueError):
        delta_qp_map(importance, -1)


def test_delta_qp_applier_moves_bits_out_of_the_unimportant_half(photo):
    codec = get_codec("hevc-kvazaar")
    height, width = photo.shape[:2]
    plain = codec.encode(photo, "qp30")
    aware = codec.encode(photo, "qp30", delta_qp=delta_qp_map(half_map(height, width), 8))
    left_plain, right_plain = halves_psnr(photo, codec.decode(plain))
    left_aware, right_aware = halves_psnr(photo, codec.decode(aware))
    assert left_aware > left_plain + 1.0  # important half: -8 QP
    assert right_aware < right_plain - 1.0  # unimportant half: +8 QP


def test_prefilter_moves_bits_out_of_the_unimportant_half(photo):
    importance = half_map(*photo.shape[:2], important="left")
    filtered = prefilter(photo, importance, 3.0)
    left, right = halves_psnr(photo, filtered)
    assert left > 40 and right < 30
    assert np.array_equal(prefilter(photo, importance, 0), photo)
    codec = get_codec("jpeg")
    plain, aware = codec.encode(photo, "q70"), codec.encode(filtered, "q70")
    assert len(aware.data) < 0.85 * len(plain.data)
    left_plain, right_plain = halves_psnr(photo, codec.decode(plain))
    left_aware, right_aware = halves_psnr(photo, codec.decode(aware))
    assert abs(left_aware - left_plain) < 0.5
    assert right_aware < right_plain - 2.0
