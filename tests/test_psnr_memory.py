"""PSNR in bands: the same number as the float64 formula, without two float64 copies of a
whole image (48 bytes a pixel on a 100 MP pair; issue "hostile files and hostile disks")."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from icm.metrics import psnr
from icm.metrics import quality as module


def reference_psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255.0), (np.uint16, 65535.0),
                                         (np.float32, 1.0), (np.float64, 1.0)])
def test_bands_give_the_float64_formulas_value(monkeypatch, dtype, peak):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        a = rng.random((67, 45, 3)).astype(dtype)
        b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(dtype)
    else:
        top = np.iinfo(dtype).max
        a = rng.integers(0, top, (67, 45, 3), dtype=dtype, endpoint=True)
        b = rng.integers(0, top, (67, 45, 3), dtype=dtype, endpoint=True)
    expected = reference_psnr(a, b, peak)
    monkeypatch.setattr(module, "_BAND_SAMPLES", 100)  # many bands, one of them partial
    assert psnr(a, b, peak) == pytest.approx(expected, rel=1e-12)


def test_views_grey_and_identical_images():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert psnr(a[::2, 1:], b[::2, 1:]) == pytest.approx(reference_psnr(a[::2, 1:], b[::2, 1:]))
    assert psnr(a[..., 0], b[..., 0]) == pytest.approx(reference_psnr(a[..., 0], b[..., 0]))
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, b[:, :-1])


def test_a_big_pair_costs_no_whole_image_copy():
    a = np.zeros((2000, 2000, 3), np.uint8)  # 12 MP samples: float64 copies would be 96 MB each
    b = np.full_like(a, 3)
    tracemalloc.start()
    try:
        value = psnr(a, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value == pytest.approx(10 * math.log10(255**2 / 9))
    assert peak < 16 * 2**20
