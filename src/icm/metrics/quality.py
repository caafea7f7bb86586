"""Full-reference image quality: PSNR, SSIM and MS-SSIM on 8-bit images.

**PSNR** is computed over all three RGB channels at once (one mean squared error over every
sample), the convention of learned-image-compression papers; identical images give ``inf``.

**SSIM** follows Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 2004: an 11-tap Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, dynamic range L = 255, population (not sample) statistics, and "valid"
filtering, so only windows lying wholly inside the image count. It matches
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)``.

**MS-SSIM** follows Wang, Simoncelli, Bovik, "Multi-scale structural similarity for image
quality assessment", Asilomar 2003, and its reference MATLAB code (``msssim.m``): five scales
with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); the contrast-structure term of scales
1-4 and the full SSIM of scale 5, each raised to its weight and multiplied. Between scales each
image is 2x2 average-pooled; an odd row or column is first replicated, as MATLAB's symmetric
``imfilter`` padding does, so a side ``n`` becomes ``ceil(n / 2)``. The coarsest scale must
still hold one 11x11 window, so the smaller image side must be at least
``MS_SSIM_MIN_SIDE = 161`` pixels (161 -> 81 -> 41 -> 21 -> 11). A negative contrast-structure
term (anti-correlated images; MATLAB would return a complex number) is clamped to 0, as
``pytorch_msssim`` does, giving MS-SSIM 0.

**Channels.** SSIM was defined on grey-level images. By default (``channel="y"``) both SSIM
metrics are computed on BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B`` kept in floating point
on the 0-255 scale, which is what MS-SSIM figures in video coding mean and what the eye weighs
most. Many image-compression papers instead average the metric over R, G and B
(``channel="rgb"``); the two differ, so say which one a table reports. Grey-level (H, W)
inputs are used as they are.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
MS_SSIM_MIN_SIDE = 161
CHANNELS = ("y", "rgb")
_BT601 = np.array([0.299, 0.587, 0.114])
_BAND_SAMPLES = 1 << 20


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over every sample of both images; ``inf`` if identical.

    The squared error is summed in bands of rows (exactly, in int64, for uint8 images), so a
    100 MP pair costs a few MB of temporaries, not two float64 copies (48 bytes a pixel)."""
    ref, tst = (np.atleast_1d(a) for a in _same_shape(reference, test))
    total = sum(_squared_error(ref[rows], tst[rows]) for rows in _row_bands(ref))
    mse = float(total) / ref.size
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _row_bands(image: np.ndarray) -> list[slice]:
    """Slices of the first axis holding about ``_BAND_SAMPLES`` samples each."""
    rows = max(1, _BAND_SAMPLES // max(1, image.size // image.shape[0]))
    return [slice(top, top + rows) for top in range(0, image.shape[0], rows)]


def _squared_error(ref: np.ndarray, tst: np.ndarray) -> int | float:
    """Sum of squared differences of one band: exact in int64 for integer samples of up to
    16 bits, float64 otherwise."""
    exact = all(a.dtype.kind in "ui" and a.dtype.itemsize <= 2 for a in (ref, tst))
    diff = np.subtract(ref, tst, dtype=np.int64 if exact else np.float64)
    return int(np.vdot(diff, diff)) if exact else float(np.vdot(diff, diff))


def ssim(reference: np.ndarray, test: np.ndarray, *, channel: str = "y") -> float:
    """Single-scale SSIM (mean of the SSIM map), on luma or averaged over RGB channels."""
    planes = _planes(reference, test, channel, min_side=WINDOW_SIZE)
    return float(np.mean([_ssim_terms(x, y)[0] for x, y in planes]))


def ms_ssim(reference: np.ndarray, test: np.ndarray, *, channel: str = "y") -> float:
    """Five-scale MS-SSIM, on luma or averaged over RGB channels; 1.0 for identical images."""
    planes = _planes(reference, test, channel, min_side=MS_SSIM_MIN_SIDE)
    return float(np.mean([_ms_ssim_plane(x, y) for x, y in planes]))


def _ms_ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM of one float64 plane pair: product of per-scale terms raised to their weights."""
    value = 1.0
    last = len(MS_SSIM_WEIGHTS) - 1
    for scale, weight in enumerate(MS_SSIM_WEIGHTS):
        full, contrast_structure = _ssim_terms(x, y)
        term = full if scale == last else contrast_structure
        value *= max(term, 0.0) ** weight
        if scale < last:
            x, y = _downsample(x), _downsample(y)
    return value


def _ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term over all whole 11x11 windows."""
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    mu_x, mu_y = _window_mean(x), _window_mean(y)
    var_x = _window_mean(x * x) - mu_x * mu_x
    var_y = _window_mean(y * y) - mu_y * mu_y
    cov = _window_mean(x * y) - mu_x * mu_y
    contrast_structure = (2.0 * cov + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return float(np.mean(luminance * contrast_structure)), float(np.mean(contrast_structure))


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(WINDOW_SIZE, dtype=np.float64) - (WINDOW_SIZE - 1) / 2
    window = np.exp(-(offsets**2) / (2.0 * WINDOW_SIGMA**2))
    return window / window.sum()


_WINDOW = _gaussian_window()


def _window_mean(plane: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local mean at every position where the window fits ("valid").

    The separable filter runs over the whole plane and the border is then cut off, so the
    boundary mode never reaches the result.
    """
    smoothed = correlate1d(correlate1d(plane, _WINDOW, axis=0), _WINDOW, axis=1)
    edge = WINDOW_SIZE // 2
    return smoothed[edge:-edge, edge:-edge]


def _downsample(plane: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd last row or column is replicated first (ceil(n / 2) out)."""
    height, width = plane.shape
    padded = np.pad(plane, ((0, height % 2), (0, width % 2)), mode="edge")
    rows, cols = padded.shape[0] // 2, padded.shape[1] // 2
    return padded.reshape(rows, 2, cols, 2).mean(axis=(1, 3))


def _planes(
    reference: np.ndarray, test: np.ndarray, channel: str, *, min_side: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check a pair of uint8 images and return the float64 plane pairs to score."""
    ref, tst = _same_shape(reference, test)
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    for image in (ref, tst):
        if image.dtype != np.uint8:
            raise TypeError(f"SSIM takes uint8 images (range 0-255), got {image.dtype}")
    if not (ref.ndim == 2 or (ref.ndim == 3 and ref.shape[2] == 3)):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {ref.shape}")
    if min(ref.shape[:2]) < min_side:
        raise ValueError(
            f"image is {ref.shape[1]}x{ref.shape[0]}; this metric needs both sides "
            f">= {min_side} pixels"
        )
    if ref.ndim == 2:
        return [(ref.astype(np.float64), tst.astype(np.float64))]
    if channel == "y":
        return [(ref @ _BT601, tst @ _BT601)]
    return [(ref[..., c].astype(np.float64), tst[..., c].astype(np.float64)) for c in range(3)]


def _same_shape(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, tst = np.asarray(reference), np.asarray(test)
    if ref.shape != tst.shape:
        raise ValueError(f"images differ in shape: {ref.shape} vs {tst.shape}")
    if ref.size == 0:
        raise ValueError("images are empty")
    return ref, tst
