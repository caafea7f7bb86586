"""Bjøntegaard deltas: exact cases, agreement with the ``bjontegaard`` package, and input checks.

The reference package (FAU-LMS ``bjontegaard`` 1.3) agrees with ``icm.metrics.bd`` to float
precision (about 1e-7 for the cubic fit, whose conditioning differs slightly between our natural
log and its log10; 1e-10 for the piecewise methods) on every curve below and on thousands of
random monotonic curves tried while writing this. The differences found are in behaviour, not in
numbers, and each is a deliberate choice here:

* disjoint curves: the reference warns and returns NaN; we raise ``ValueError``, since a NaN
  travels silently into tables;
* point order: the reference only reverses fully descending input, so shuffled points make
  SciPy's Akima/PCHIP raise; we sort by rate (see ``test_point_order_does_not_matter``);
* overlap warning: the reference warns below 75 % of the *union* of both intervals, which fires
  on ordinary curves from different codecs; we warn below 50 % of the *shorter* curve's span;
* the cubic fit: the reference accepts 3 points (``np.polyfit`` then warns of a rank-deficient
  fit); we require the 4 that a cubic needs.
"""

from __future__ import annotations

import math
import warnings

import bjontegaard as reference
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icm.metrics import BD_METHODS, BDWarning, bd_metric, bd_rate

# Realistic (bpp, PSNR dB) and (bpp, MS-SSIM) curves, low rate first.
JPEG = ([0.25, 0.42, 0.68, 1.05, 1.60, 2.60], [25.6, 28.1, 30.4, 32.5, 34.7, 37.6])
HEVC = ([0.12, 0.22, 0.40, 0.70, 1.20], [27.0, 29.6, 32.3, 35.1, 38.0])
JPEG_4 = ([0.30, 0.60, 1.10, 2.00], [26.9, 30.0, 32.6, 35.6])
AV1_4 = ([0.15, 0.30, 0.55, 1.05], [27.4, 30.1, 32.9, 35.9])
X265_PRESETS = (  # the bjontegaard README's libx265 example: two presets, nearly equal
    [1358.24, 2486.44, 4593.60, 9487.76],
    [34.851, 36.845, 38.615, 40.037],
)
X265_FAST = ([1356.24, 2451.52, 4469.00, 9787.80], [34.987, 36.970, 38.651, 40.121])
# Shares 31.4-37.6 dB with JPEG: 70 % of its own span, but only 42 % of the union of both.
HEVC_HIGH = ([0.35, 0.5, 0.8, 1.3, 2.1], [31.4, 33.5, 35.6, 37.9, 40.2])
MSSSIM_A = ([0.1, 0.2, 0.4, 0.8, 1.6], [0.900, 0.940, 0.965, 0.980, 0.989])
MSSSIM_B = ([0.08, 0.15, 0.3, 0.6, 1.2], [0.905, 0.944, 0.968, 0.982, 0.990])

PAIRS = {
    "jpeg-vs-hevc": (JPEG, HEVC),
    "hevc-vs-jpeg": (HEVC, JPEG),
    "jpeg4-vs-av1": (JPEG_4, AV1_4),
    "x265-presets": (X265_PRESETS, X265_FAST),
    "jpeg-vs-hevc-high": (JPEG, HEVC_HIGH),
    "ms-ssim": (MSSSIM_A, MSSSIM_B),
}


def _reference(func, anchor, test, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its 75 %-of-union overlap warning
        return func(*anchor, *test, method, require_matching_points=False)


@pytest.mark.parametrize("method", BD_METHODS)
@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_agrees_with_bjontegaard_package(pair, method):
    anchor, test = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error", BDWarning)  # all these curves are well-behaved
        ours_rate = bd_rate(*anchor, *test, method=method)
        ours_metric = bd_metric(*anchor, *test, method=method)
    assert ours_rate == pytest.approx(_reference(reference.bd_rate, anchor, test, method), abs=1e-4)
    theirs = _reference(reference.bd_psnr, anchor, test, method)
    assert ours_metric == pytest.approx(theirs, abs=1e-5)


def test_realistic_magnitudes():
    """HEVC saves roughly half of JPEG's bits: a sanity check on sign and size."""
    for method in BD_METHODS:
        assert -65 < bd_rate(*JPEG, *HEVC, method=method) < -40
        assert 2.5 < bd_metric(*JPEG, *HEVC, method=method) < 5.0


@pytest.mark.parametrize("method", BD_METHODS)
def test_identical_curves_give_zero(method):
    assert bd_rate(*JPEG, *JPEG, method=method) == pytest.approx(0.0, abs=1e-12)
    assert bd_metric(*JPEG, *JPEG, method=method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", BD_METHODS)
def test_half_the_rate_everywhere_is_minus_50_percent(method):
    rates, psnrs = JPEG
    assert bd_rate(rates, psnrs, np.divide(rates, 2), psnrs, method=method) == pytest.approx(-50.0)


@pytest.mark.parametrize("method", BD_METHODS)
def test_exact_on_curves_linear_in_log_rate(method):
    """psnr = c + 4 ln(rate) is reproduced exactly by every interpolant, so the deltas are known.

    Test is 1 dB better at every rate: BD-PSNR is 1, and equal PSNR needs exp(-1/4) of the rate.
    """
    rates = np.array([0.1, 0.25, 0.5, 1.0, 2.0])
    anchor, test = 30 + 4 * np.log(rates), 31 + 4 * np.log(rates)
    assert bd_metric(rates, anchor, rates, test, method=method) == pytest.approx(1.0)
    expected = (math.exp(-0.25) - 1) * 100
    assert bd_rate(rates, anchor, rates, test, method=method) == pytest.approx(expected)
    # Halving the rate is then worth 4 ln 2 dB.
    gain = bd_metric(rates, anchor, rates / 2, anchor, method=method)
    assert gain == pytest.approx(4 * math.log(2))


@pytest.mark.parametrize("method", BD_METHODS)
@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_swapping_anchor_and_test(pair, method):
    """BD-rate inverts the mean rate ratio; BD-metric just changes sign."""
    anchor, test = pair
    forward = bd_rate(*anchor, *test, method=method)
    backward = bd_rate(*test, *anchor, method=method)
    assert (1 + backward / 100) == pytest.approx(1 / (1 + forward / 100))
    forward_metric = bd_metric(*anchor, *test, method=method)
    assert bd_metric(*test, *anchor, method=method) == pytest.approx(-forward_metric)


@pytest.mark.parametrize("method", BD_METHODS)
def test_point_order_does_not_matter(method):
    """Points are sorted by rate; the reference package would raise on this shuffled input."""
    order = [3, 0, 5, 1, 4, 2]
    rates, psnrs = np.array(JPEG[0])[order], np.array(JPEG[1])[order]
    assert bd_rate(rates, psnrs, *HEVC, method=method) == pytest.approx(
        bd_rate(*JPEG, *HEVC, method=method)
    )
    assert bd_metric(rates, psnrs, *HEVC, method=method) == pytest.approx(
        bd_metric(*JPEG, *HEVC, method=method)
    )


@st.composite
def rd_curves(draw):
    """A strictly increasing (rate, metric) curve with 4-6 points."""
    n = draw(st.integers(4, 6))
    steps = draw(st.lists(st.floats(0.1, 1.0), min_size=n - 1, max_size=n - 1))
    gains = draw(st.lists(st.floats(0.3, 4.0), min_size=n - 1, max_size=n - 1))
    log_rates = np.log(draw(st.floats(0.02, 1.0))) + np.concatenate([[0], np.cumsum(steps)])
    metric = draw(st.floats(20, 35)) + np.concatenate([[0], np.cumsum(gains)])
    return np.exp(log_rates), metric


@settings(max_examples=60, deadline=None)
@given(curve=rd_curves(), k=st.floats(0.2, 5.0), method=st.sampled_from(BD_METHODS))
def test_scaling_rates_by_k_gives_k_minus_1(curve, k, method):
    rates, metric = curve
    # The cubic goes through np.polyfit, whose rounding on these ill-conditioned fits reaches
    # about 1e-8 of the result (hypothesis found 1.2e-8); the interpolants stay within 1e-8.
    tolerance = 1e-6 if method == "cubic" else 1e-8
    assert bd_rate(rates, metric, rates * k, metric, method=method) == pytest.approx(
        (k - 1) * 100, rel=tolerance, abs=tolerance)


@settings(max_examples=60, deadline=None)
@given(curve=rd_curves(), shift=st.floats(-3, 3), method=st.sampled_from(BD_METHODS))
def test_shifting_the_metric_shifts_bd_metric(curve, shift, method):
    rates, metric = curve
    assert bd_metric(rates, metric, rates, metric + shift, method=method) == pytest.approx(
        shift, abs=1e-8
    )


@pytest.mark.parametrize("func", [bd_rate, bd_metric])
def test_non_monotonic_curve_warns(func):
    bumpy = ([0.1, 0.2, 0.4, 0.8, 1.6], [28.0, 31.0, 30.5, 34.0, 37.0])
    with pytest.warns(BDWarning, match="anchor: the metric does not increase"):
        func(*bumpy, *HEVC, method="pchip")
    with pytest.warns(BDWarning, match="test: the metric does not increase"):
        func(*HEVC, *bumpy, method="cubic")


def test_small_overlap_warns():
    """The test spans 22-30 dB and shares only 27-30 dB (3 of its 8 dB) with the anchor."""
    low = ([0.02, 0.04, 0.07, 0.12], [22.0, 24.5, 27.0, 30.0])
    with pytest.warns(BDWarning, match="share only 38%"):
        bd_rate(*HEVC, *low)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BDWarning)
        bd_rate(*JPEG, *HEVC_HIGH)  # 70 %: no warning here (the reference package warns)


@pytest.mark.parametrize("func", [bd_rate, bd_metric])
def test_disjoint_curves_raise(func):
    low = ([0.01, 0.02, 0.04, 0.08], [18.0, 20.0, 22.0, 24.0])
    with pytest.raises(ValueError, match="do not overlap"):
        func(*low, *HEVC_HIGH)
    touching = ([1.2, 2.0, 3.5, 6.0], [38.0, 40.0, 42.0, 44.0])  # meets HEVC at 1.2 bpp, 38 dB
    with pytest.raises(ValueError, match="do not overlap"):
        func(*HEVC, *touching)


BAD_INPUTS = {
    "lengths": (([0.1, 0.2, 0.4, 0.8], [30, 32, 34]), "4 rates but 3 metric values"),
    "too-few": (([0.1, 0.2, 0.4], [30, 32, 34]), "needs at least 4 points"),
    "zero-rate": (([0.0, 0.2, 0.4, 0.8], [30, 32, 34, 36]), "positive and finite"),
    "negative-rate": (([-0.1, 0.2, 0.4, 0.8], [30, 32, 34, 36]), "positive and finite"),
    "inf-rate": (([0.1, 0.2, 0.4, math.inf], [30, 32, 34, 36]), "positive and finite"),
    "nan-metric": (([0.1, 0.2, 0.4, 0.8], [30, 32, math.nan, 36]), "must be finite"),
    "inf-metric": (([0.1, 0.2, 0.4, 0.8], [30, 32, 34, math.inf]), "must be finite"),
    "2-d": (([[0.1, 0.2], [0.4, 0.8]], [[30, 32], [34, 36]]), "1-D"),
}


@pytest.mark.parametrize("func", [bd_rate, bd_metric])
@pytest.mark.parametrize("bad", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises(func, bad):
    curve, message = bad
    with pytest.raises(ValueError, match=message):
        func(*curve, *HEVC, method="cubic")
    with pytest.raises(ValueError, match=message):
        func(*HEVC, *curve, method="cubic")


def test_point_counts_per_method():
    three = ([0.1, 0.2, 0.4], [30.0, 32.0, 34.0])
    two = ([0.15, 0.3], [31.0, 33.0])
    for method in ("pchip", "akima"):
        assert math.isfinite(bd_rate(*three, *two, method=method))
        with pytest.raises(ValueError, match="at least 2 points"):
            bd_rate(*three, [0.2], [32.0], method=method)


def test_duplicate_abscissa_raises():
    flat = ([0.1, 0.2, 0.4, 0.8], [30.0, 32.0, 32.0, 34.0])  # two rates give 32 dB
    with pytest.warns(BDWarning), pytest.raises(ValueError, match="same metric value"):
        bd_rate(*flat, *HEVC, method="akima")
    with pytest.warns(BDWarning):  # BD-PSNR reads PSNR off rate, which is still fine
        assert math.isfinite(bd_metric(*flat, *HEVC, method="akima"))
    with pytest.raises(ValueError, match="same rate"):
        bd_metric([0.1, 0.2, 0.2, 0.8], [30.0, 32.0, 33.0, 34.0], *HEVC, method="pchip")


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown BD method 'linear'"):
        bd_rate(*JPEG, *HEVC, method="linear")
