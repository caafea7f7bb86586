"""PSNR, SSIM and MS-SSIM: exact cases, scikit-image's SSIM, and an independent MS-SSIM."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.signal import convolve2d
from skimage import data
from skimage.metrics import structural_similarity

from icm.metrics import ms_ssim, psnr, ssim

# Written out rather than imported, so that a wrong constant in the module fails here.
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003
MIN_SIDE = 161  # ceil(161 / 16) = 11, one 11x11 window at the fifth scale; 160 gives 10


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # 512x512 RGB, bundled with scikit-image


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return data.camera()  # 512x512 grey


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )


# -- PSNR ------------------------------------------------------------------------------------
def test_psnr_identical_is_inf(astronaut):
    assert psnr(astronaut, astronaut.copy()) == math.inf


def test_psnr_of_constant_offset_is_exact(astronaut):
    base = (astronaut // 2).astype(np.uint8)  # 0..127, so +5 never clips
    assert psnr(base, base + 5) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)
    assert psnr(base + 5, base) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-12)


def test_psnr_is_over_all_channels_and_respects_peak():
    """Error in one of three channels: the MSE is averaged over all samples, so it is 1/3."""
    reference = np.full((4, 6, 3), 100, np.uint8)
    test = reference.copy()
    test[..., 1] += 6  # squared error 36 on a third of the samples -> MSE 12
    assert psnr(reference, test) == pytest.approx(10 * math.log10(255**2 / 12))
    assert psnr(reference, test, peak=1023.0) == pytest.approx(10 * math.log10(1023**2 / 12))


def test_psnr_takes_no_uint8_wraparound():
    """uint8 subtraction would wrap 0 - 1 to 255; the difference must be taken in float."""
    a, b = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255))


def test_psnr_shape_mismatch_raises(astronaut):
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(astronaut, astronaut[:-1])


# -- SSIM ------------------------------------------------------------------------------------
def test_ssim_identical_is_one(camera):
    assert ssim(camera, camera) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sigma", [3.0, 15.0])
def test_ssim_matches_scikit_image_on_grey(camera, sigma):
    noisy = _noisy(camera, sigma)
    assert ssim(camera, noisy) == pytest.approx(_skimage_ssim(camera, noisy), abs=1e-10)


def test_ssim_channels_match_scikit_image(astronaut):
    noisy = _noisy(astronaut, 10.0)
    per_channel = [_skimage_ssim(astronaut[..., c], noisy[..., c]) for c in range(3)]
    assert ssim(astronaut, noisy, channel="rgb") == pytest.approx(np.mean(per_channel), abs=1e-10)
    weights = np.array([0.299, 0.587, 0.114])
    luma = structural_similarity(
        astronaut @ weights,
        noisy @ weights,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(astronaut, noisy) == pytest.approx(luma, abs=1e-10)


def test_ssim_of_flat_images_is_the_luminance_term():
    """No variance anywhere: contrast-structure is C2 / C2 = 1 and SSIM is the luminance term."""
    a, b = np.full((40, 50), 100, np.uint8), np.full((40, 50), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    luminance = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert ssim(a, b) == pytest.approx(luminance, abs=1e-12)


# -- MS-SSIM ---------------------------------------------------------------------------------
def test_ms_ssim_identical_is_one(astronaut):
    assert ms_ssim(astronaut, astronaut) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(astronaut, astronaut, channel="rgb") == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("channel", ["y", "rgb"])
def test_ms_ssim_falls_as_noise_rises(astronaut, channel):
    scores = [ms_ssim(astronaut, _noisy(astronaut, s), channel=channel) for s in (2, 8, 20)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    assert scores[0] > 0.98 and scores[2] < 0.95  # a visible difference, not rounding


def test_ms_ssim_of_flat_images_is_the_weighted_luminance_term():
    """Flat images: every contrast-structure term is 1, leaving luminance ** 0.1333 (scale 5)."""
    side = MIN_SIDE
    a, b = np.full((side, side), 100, np.uint8), np.full((side, side), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    luminance = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert ms_ssim(a, b) == pytest.approx(luminance ** WEIGHTS[-1], abs=1e-12)


def _independent_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM written differently: a 2-D window, convolve2d 'valid', explicit odd-edge copies."""
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = x.astype(np.float64), y.astype(np.float64)
    result = 1.0
    for scale in range(5):
        mx, my = (convolve2d(im, window, mode="valid") for im in (x, y))
        sxx = convolve2d(x * x, window, mode="valid") - mx**2
        syy = convolve2d(y * y, window, mode="valid") - my**2
        sxy = convolve2d(x * y, window, mode="valid") - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if scale < 4:
            result *= cs.mean() ** WEIGHTS[scale]
            if x.shape[0] % 2:
                x, y = np.vstack([x, x[-1:]]), np.vstack([y, y[-1:]])
            if x.shape[1] % 2:
                x, y = np.hstack([x, x[:, -1:]]), np.hstack([y, y[:, -1:]])
            x = (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4
            y = (y[0::2, 0::2] + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]) / 4
        else:
            luminance = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            result *= (luminance * cs).mean() ** WEIGHTS[scale]
    return result


def test_ms_ssim_matches_independent_implementation(camera):
    """Odd sides (173 x 201) exercise the edge replication at several scales."""
    reference = camera[100:273, 150:351]
    test = _noisy(reference, 12.0, seed=3)
    assert ms_ssim(reference, test) == pytest.approx(
        _independent_ms_ssim(reference, test), abs=1e-12
    )


def test_ms_ssim_of_inverted_image_is_zero_not_nan(camera):
    """Anti-correlated images have a negative contrast-structure term, clamped to 0."""
    assert ms_ssim(camera, 255 - camera) == 0.0


def test_ms_ssim_minimum_size():
    rng = np.random.default_rng(1)
    ok = rng.integers(0, 256, (MIN_SIDE, 300, 3), dtype=np.uint8)
    assert 0.0 <= ms_ssim(ok, _noisy(ok, 5.0)) <= 1.0
    small = ok[:-1]
    with pytest.raises(ValueError, match=r"300x160; this metric needs both sides >= 161"):
        ms_ssim(small, small)
    with pytest.raises(ValueError, match=">= 11"):
        ssim(ok[:10], ok[:10])


def test_bad_inputs_raise(astronaut):
    with pytest.raises(ValueError, match="differ in shape"):
        ms_ssim(astronaut, astronaut[:, :-1])
    with pytest.raises(TypeError, match="uint8"):
        ms_ssim(astronaut.astype(np.float64), astronaut.astype(np.float64))
    with pytest.raises(ValueError, match="channel"):
        ms_ssim(astronaut, astronaut, channel="lab")
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        ssim(astronaut[..., :2], astronaut[..., :2])


def test_ms_ssim_is_fast_on_a_768x512_image():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (512, 768, 3), dtype=np.uint8)
    noisy = _noisy(image, 10.0)
    ms_ssim(image, noisy)  # warm-up
    start = time.perf_counter()
    ms_ssim(image, noisy)
    assert time.perf_counter() - start < 1.0
