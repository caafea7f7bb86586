"""The recogniser's features: hand-crafted statistics, each moved in a known direction by one
family of damage.

* **noise** raises the spread of the finest wavelet coefficients (robustly: their median);
  measured per brightness band it separates additive noise (flat) from shot noise after a
  tone curve, whose few photons also leave a comb of levels in the histogram;
* **blur** drains the top of the power spectrum; **motion blur** drains it along one direction
  only, so the spectrum turns anisotropic;
* **haze** lifts the dark channel (a clear photo has some near-black pixel in every patch),
  and lowers contrast and saturation, more at the top of the frame;
* **low light** pulls every brightness percentile down and leaves shot noise;
* **JPEG** makes jumps across the 8x8 block grid larger than inside blocks and quantises the
  block-DCT coefficients onto a lattice;
* **rain** adds thin bright lines that stay coherent along one near-vertical direction;
* **raindrops** leave round patches with no fine detail among sharp surroundings.

Pixel-level statistics (noise, blur, blocks) are taken on a native-resolution centre crop
whose corner sits on the 8x8 grid, since resampling would change them; scene-level ones (haze,
light, rain, drops, which the degradations size as fractions of the frame) on a view whose
shorter side is at most 256.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
from scipy import fft, ndimage

from icm.degrade.base import check_rgb
from icm.degrade.blur import line_kernel

#: bump whenever :func:`image_features` changes: a model fitted on other features is refused
FEATURE_VERSION = 1
#: side of the native-resolution centre crop for pixel-level statistics (a multiple of 16)
CROP_SIDE = 320
#: the scene-level view's shorter side (images are only ever shrunk to it, never enlarged)
VIEW_SIDE = 256
#: images smaller than this are padded by edge replication so every filter has room
MIN_SIDE = 32

_LOG_EPS = 1e-6


def image_features(rgb: np.ndarray) -> np.ndarray:
    """The recogniser's feature vector for an ``(H, W, 3)`` uint8 image: finite, fixed length.

    Any size works: tiny images are padded, large ones cropped (pixel-level statistics) and
    shrunk (scene-level ones). The order is :func:`feature_names`.
    """
    return np.array(list(_named_features(rgb).values()), dtype=np.float64)


def _named_features(rgb: np.ndarray) -> dict[str, float]:
    rgb = _padded(check_rgb(rgb, "the recogniser"))
    crop = _native_crop(rgb).astype(np.float64)
    view = _view(rgb).astype(np.float64) / 255.0
    features: dict[str, float] = {}
    grey = crop @ np.array([0.299, 0.587, 0.114])
    features.update(_noise_features(crop, grey))
    features.update(_histogram_features(rgb))
    features.update(_sharpness_features(grey))
    features.update(_spectrum_features(grey))
    features.update(_block_features(crop, grey))
    features.update(_light_and_haze_features(view))
    features.update(_rain_features(view))
    features.update(_drop_features(view, grey))
    return {name: float(np.nan_to_num(value, nan=0.0, posinf=50.0, neginf=-50.0))
            for name, value in features.items()}


def _padded(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    if height >= MIN_SIDE and width >= MIN_SIDE:
        return rgb
    pad = ((0, max(0, MIN_SIDE - height)), (0, max(0, MIN_SIDE - width)), (0, 0))
    return np.pad(rgb, pad, mode="edge")


def _native_crop(rgb: np.ndarray) -> np.ndarray:
    """The centre ``CROP_SIDE`` square (or less), its corner on the 16-px grid of JPEG MCUs."""
    height, width = rgb.shape[:2]
    top = max(0, (height - CROP_SIDE) // 2) // 16 * 16
    left = max(0, (width - CROP_SIDE) // 2) // 16 * 16
    return rgb[top:top + CROP_SIDE, left:left + CROP_SIDE]


def _view(rgb: np.ndarray) -> np.ndarray:
    """The whole frame, shrunk (area average) so the shorter side is at most ``VIEW_SIDE``."""
    height, width = rgb.shape[:2]
    scale = VIEW_SIDE / min(height, width)
    if scale >= 1.0:
        return rgb
    from PIL import Image

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.BOX))


def _log(value: float | np.ndarray) -> float | np.ndarray:
    return np.log(np.maximum(value, 0.0) + _LOG_EPS)


def _haar_hh(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finest diagonal Haar detail and the 2x2 mean it sits on (noise lives in the former)."""
    height, width = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    a, b = plane[0:height:2, 0:width:2], plane[0:height:2, 1:width:2]
    c, d = plane[1:height:2, 0:width:2], plane[1:height:2, 1:width:2]
    return (a - b - c + d) / 2.0, (a + b + c + d) / 4.0


def _mad_sigma(values: np.ndarray) -> float:
    """Donoho's robust noise sigma: edges are rare, so the median ignores them."""
    return float(np.median(np.abs(values)) / 0.6745) if values.size else 0.0


#: brightness bands (0..255) over which noise is measured separately
_BANDS = (0.0, 40.0, 90.0, 150.0, 256.0)


def _noise_features(crop: np.ndarray, grey: np.ndarray) -> dict[str, float]:
    hh, local = _haar_hh(grey)
    sigma = _mad_sigma(hh)
    features = {"noise_luma": _log(sigma + 0.25)}
    for low, high in itertools.pairwise(_BANDS):
        inside = hh[(local >= low) & (local < high)]
        band = _mad_sigma(inside) if inside.size >= 64 else sigma
        features[f"noise_band_{int(low)}"] = _log(band + 0.25)
    for name, plane in (("r", crop[..., 0] - grey), ("b", crop[..., 2] - grey)):
        features[f"noise_chroma_{name}"] = _log(_mad_sigma(_haar_hh(plane)[0]) + 0.25)
    # Immerkaer's operator over the flatter half of the picture: another noise estimate, less
    # robust than the median but sensitive where the median rounds to quantisation steps.
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = np.abs(ndimage.convolve(grey, kernel, mode="reflect"))
    gradient = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
    flat = response[gradient <= np.median(gradient)]
    features["noise_flat"] = _log(math.sqrt(math.pi / 2) * flat.mean() / 6 + 0.25)
    return features


def _histogram_features(rgb: np.ndarray) -> dict[str, float]:
    """Clipping and a comb of levels: shot noise of a few photons leaves discrete levels."""
    counts = np.bincount(rgb.reshape(-1), minlength=256).astype(np.float64)
    total = counts.sum()
    smooth = ndimage.gaussian_filter1d(counts, 2.0, mode="nearest")
    dark = slice(0, 128)
    return {
        "hist_comb": float(np.abs(counts - smooth).sum() / total),
        "hist_comb_dark": float(np.abs(counts - smooth)[dark].sum()
                                / max(counts[dark].sum(), 1.0)),
        "hist_levels": float(np.count_nonzero(counts) / 256.0),
        "clip_black": _log(counts[0] / total + 1e-4),
        "clip_white": _log(counts[255] / total + 1e-4),
    }


def _sharpness_features(grey: np.ndarray) -> dict[str, float]:
    gy, gx = ndimage.sobel(grey, 0) / 8.0, ndimage.sobel(grey, 1) / 8.0
    magnitude = np.hypot(gx, gy)
    p50, p90, p99 = np.percentile(magnitude, (50, 90, 99))
    fine = grey - ndimage.gaussian_filter(grey, 1.0)
    middle = ndimage.gaussian_filter(grey, 1.0) - ndimage.gaussian_filter(grey, 3.0)
    # structure-tensor coherence over the whole crop: 1 when every gradient points one way
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    coherence = math.hypot(jxx - jyy, 2 * jxy) / (jxx + jyy + _LOG_EPS)
    return {
        "laplacian": _log(np.abs(ndimage.laplace(grey)).mean()),
        "gradient_p50": _log(p50), "gradient_p90": _log(p90), "gradient_p99": _log(p99),
        "fine_to_middle": _log(fine.std()) - _log(middle.std()),
        "edge_peak": _log(p99) - _log(np.percentile(grey, 99) - np.percentile(grey, 1) + 1),
        "coherence": coherence,
    }


#: radial frequency band edges, cycles per pixel
_RADIAL = (0.02, 0.05, 0.09, 0.14, 0.2, 0.26, 0.32, 0.38, 0.44, 0.5)
_ANGLE_BINS = 12


def _spectrum_features(grey: np.ndarray) -> dict[str, float]:
    """Radial power profile (blur, noise) and its anisotropy (motion blur)."""
    height, width = grey.shape
    window = np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(fft.rfft2((grey - grey.mean()) * window)) ** 2
    fy = fft.fftfreq(height)[:, None]
    fx = fft.rfftfreq(width)[None, :]
    radius = np.hypot(fy, fx) + np.zeros_like(power)
    angle = np.mod(np.arctan2(fy, fx), np.pi) + np.zeros_like(power)
    total = power[(radius >= _RADIAL[0]) & (radius < _RADIAL[-1])].sum() + _LOG_EPS
    features: dict[str, float] = {}
    for low, high in itertools.pairwise(_RADIAL):
        ring = (radius >= low) & (radius < high)
        share = power[ring].sum() / total if ring.any() else 0.0
        features[f"spectrum_{low:.2f}"] = _log(share + 1e-9)
    bins = np.minimum((angle / np.pi * _ANGLE_BINS).astype(int), _ANGLE_BINS - 1)
    for label, (low, high) in (("mid", (0.05, 0.15)), ("high", (0.15, 0.4))):
        ring = (radius >= low) & (radius < high)
        energy = np.bincount(bins[ring], weights=power[ring], minlength=_ANGLE_BINS)
        counts = np.bincount(bins[ring], minlength=_ANGLE_BINS)
        per_bin = _log(energy / np.maximum(counts, 1) + 1e-9)
        # neighbouring bins smoothed circularly, so one lucky bin is not "a direction"
        per_bin = (np.roll(per_bin, 1) + 2 * per_bin + np.roll(per_bin, -1)) / 4
        features[f"anisotropy_{label}"] = float(per_bin.max() - per_bin.min())
        features[f"anisotropy_{label}_std"] = float(per_bin.std())
    return features


def _block_features(crop: np.ndarray, grey: np.ndarray) -> dict[str, float]:
    """JPEG: jumps on the 8x8 grid versus inside blocks, and the block-DCT lattice."""
    features: dict[str, float] = {}
    for axis, label in ((1, "h"), (0, "v")):
        steps = np.abs(np.diff(grey, axis=axis)).mean(axis=1 - axis)
        phases = np.array([steps[k::8].mean() if steps[k::8].size else 0.0 for k in range(8)])
        features[f"block_{label}"] = _log(phases[7] + 0.1) - _log(phases[:7].mean() + 0.1)
    chroma = crop[..., 2] - grey
    steps = np.abs(np.diff(chroma, axis=1)).mean(axis=0)
    inside = np.delete(steps, np.s_[15::16]) if steps.size > 16 else steps
    features["block_chroma"] = (_log(steps[15::16].mean() + 0.1) - _log(inside.mean() + 0.1)
                                if steps.size > 16 else 0.0)
    height, width = grey.shape[0] // 8 * 8, grey.shape[1] // 8 * 8
    blocks = grey[:height, :width].reshape(height // 8, 8, width // 8, 8)
    coefficients = fft.dctn(blocks, axes=(1, 3), norm="ortho").transpose(0, 2, 1, 3)
    coefficients = coefficients.reshape(-1, 8, 8)
    order = np.add.outer(np.arange(8), np.arange(8))
    high = np.abs(coefficients[:, order >= 8])
    middle = np.abs(coefficients[:, (order >= 3) & (order < 8)])
    features["dct_high_zero"] = float((high < 1.0).mean())
    features["dct_middle_zero"] = float((middle < 1.0).mean())
    features["dct_lattice"] = max(_lattice_score(coefficients[:, u, v])
                                  for u, v in ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0)))
    return features


def _lattice_score(values: np.ndarray) -> float:
    """How strongly coefficients sit on multiples of some step (JPEG quantisation), 0..1."""
    best = 0.0
    for step in range(3, 41):
        away = values[np.abs(values) > step / 2]
        if away.size >= 32:
            best = max(best, float(np.cos(2 * np.pi * away / step).mean()))
    return best


def _light_and_haze_features(view: np.ndarray) -> dict[str, float]:
    luma = view @ np.array([0.299, 0.587, 0.114])
    side = min(view.shape[:2])
    lowest, highest = view.min(axis=2), view.max(axis=2)
    dark = ndimage.minimum_filter(lowest, size=max(3, side // 32))
    third = max(1, view.shape[0] // 3)
    local = np.sqrt(np.maximum(ndimage.uniform_filter(luma * luma, 7)
                               - ndimage.uniform_filter(luma, 7) ** 2, 0.0))
    saturation = (highest - lowest) / (highest + 1e-3)
    rg = view[..., 0] - view[..., 1]
    yb = (view[..., 0] + view[..., 1]) / 2 - view[..., 2]
    features = {f"luma_p{p}": float(np.percentile(luma, p)) for p in (1, 5, 25, 50, 75, 95, 99)}
    features.update({
        "luma_mean": float(luma.mean()),
        "luma_std": _log(luma.std()),
        "dark_fraction": float((luma < 0.1).mean()),
        "dark_channel_mean": float(dark.mean()),
        "dark_channel_p10": float(np.percentile(dark, 10)),
        "dark_channel_p90": float(np.percentile(dark, 90)),
        "dark_channel_top_minus_bottom": float(dark[:third].mean() - dark[-third:].mean()),
        "black_level": float(np.percentile(lowest, 1)),
        "white_level": float(np.percentile(highest, 99)),
        "local_contrast": _log(local.mean()),
        "local_contrast_top_to_bottom": _log(local[:third].mean()) - _log(local[-third:].mean()),
        "saturation_mean": float(saturation.mean()),
        "saturation_p90": float(np.percentile(saturation, 90)),
        "colourfulness": float(math.hypot(rg.std(), yb.std())
                               + 0.3 * math.hypot(rg.mean(), yb.mean())),
    })
    return features


#: directions (degrees from vertical) along which rain streaks are looked for
_RAIN_ANGLES = (-30.0, -15.0, 0.0, 15.0, 30.0)


def _rain_features(view: np.ndarray) -> dict[str, float]:
    """Thin bright structures, and how coherent they stay along a near-vertical line."""
    luma = view @ np.array([0.299, 0.587, 0.114])
    side = min(luma.shape)
    width = max(3, side // 50)
    thin = luma - ndimage.grey_opening(luma, size=(1, width))
    energy = float((thin * thin).mean()) + 1e-9
    length = max(3.0, 0.06 * side)

    def coherence(angle_from_vertical: float) -> float:
        kernel = line_kernel(length, math.radians(90.0 + angle_from_vertical))
        from scipy import signal  # 0.3 s to import: only when features are computed

        along = signal.fftconvolve(thin, kernel / kernel.sum(), mode="same")
        return float((along * along).mean()) / energy

    vertical = max(coherence(angle) for angle in _RAIN_ANGLES)
    across = coherence(90.0)
    return {
        "thin_bright": _log(thin.mean()),
        "thin_bright_p99": _log(np.percentile(thin, 99)),
        "thin_bright_fraction": float((thin > 0.08).mean()),
        "streak_coherence": vertical,
        "streak_vertical_to_horizontal": _log(vertical) - _log(across),
    }


def _drop_features(view: np.ndarray, grey: np.ndarray) -> dict[str, float]:
    """Patches with no fine detail among sharp surroundings (defocused drops on the lens).

    Measured twice: on the scene view, in blocks of 1/32 of the frame, and on the native crop,
    where a drop's defocused inside is smoother than any textured or grainy real surface.
    """
    features: dict[str, float] = {}
    luma = view @ np.array([0.299, 0.587, 0.114])
    block = max(2, min(luma.shape) // 32)
    detail = ndimage.uniform_filter(np.abs(ndimage.laplace(luma)), block)[::block, ::block]
    log_detail = _log(detail + 1e-4)
    p5, p25, p50, p95 = np.percentile(log_detail, (5, 25, 50, 95))
    holes = log_detail - ndimage.gaussian_filter(log_detail, 3.0, mode="nearest")
    features.update({
        "detail_p5": float(p5), "detail_p25": float(p25), "detail_p50": float(p50),
        "detail_spread": float(p95 - p5),
        "detail_holes_p2": float(np.percentile(holes, 2)),
        "detail_holes_fraction": float((holes < -1.0).mean()),
        "detail_holes_blobs": _round_blobs(holes < -1.0),
    })
    fine = np.abs(ndimage.laplace(ndimage.gaussian_filter(grey, 0.7)))
    cells = ndimage.uniform_filter(fine, 4)[2::4, 2::4]
    log_cells = np.log(cells + 0.05)
    native_holes = log_cells - ndimage.gaussian_filter(log_cells, 4.0, mode="nearest")
    raw = np.abs(ndimage.laplace(grey))
    features.update({
        "native_holes_p1": float(np.percentile(native_holes, 1)),
        "native_holes_fraction": float((native_holes < -1.5).mean()),
        "native_holes_blobs": _round_blobs(native_holes < -1.0),
        "native_smooth_3": float((ndimage.uniform_filter(raw, 3) < 1.0).mean()),
        "native_smooth_6": float((ndimage.uniform_filter(raw, 6) < 1.0).mean()),
    })
    return features


def _round_blobs(mask: np.ndarray) -> float:
    """log(1 + the number of compact (disc-like) connected regions of ``mask``)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return 0.0
    sizes = np.bincount(labels.ravel())[1:]
    boxes = ndimage.find_objects(labels)
    fill = np.array([size / ((rows.stop - rows.start) * (cols.stop - cols.start))
                     for size, (rows, cols) in zip(sizes, boxes, strict=True)])
    return math.log1p(int(((sizes >= 3) & (fill > 0.5)).sum()))


@functools.cache
def feature_names() -> tuple[str, ...]:
    """The names of :func:`image_features`' entries, in order: read off a grey image the
    first time they are asked for (not on import, which would load scipy.signal, 0.3 s, on
    every ``icm`` call)."""
    return tuple(_named_features(np.full((MIN_SIDE, MIN_SIDE, 3), 128, np.uint8)))


def __getattr__(name: str) -> tuple[str, ...]:
    """``FEATURE_NAMES``, the constant :func:`feature_names` computes on first use."""
    if name == "FEATURE_NAMES":
        return feature_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

