"""Bjøntegaard deltas: how much two rate-quality curves differ, as one number.

Both metrics interpolate each curve through its measured points, integrate the two
interpolants over the interval the curves share, and report the mean gap.

* :func:`bd_rate` interpolates **log-rate as a function of the metric** and averages
  ``log(rate_test) - log(rate_anchor)`` over the shared metric interval; the mean log ratio is
  turned back into a percentage, ``(exp(mean) - 1) * 100``. **Negative means the test codec
  needs fewer bits** for the same quality (-30 = saves 30 %); +25 = needs 25 % more.
* :func:`bd_metric` interpolates **the metric as a function of log-rate** and averages
  ``metric_test - metric_anchor`` over the shared log-rate interval, in the metric's own unit
  (BD-PSNR in dB). **Positive means the test codec gives better quality** at the same rate, for
  metrics where larger is better (PSNR, MS-SSIM, accuracy).

The natural logarithm is used; the base cancels out of BD-rate and only stretches the abscissa
of BD-metric, which every interpolant below follows exactly, so results equal those computed
with log10.

Interpolations (``method``):

* ``"cubic"``: one cubic polynomial fitted to all points by least squares (``np.polyfit`` degree 3),
  integrated analytically. This is Bjøntegaard's original method, G. Bjøntegaard, "Calculation
  of average PSNR differences between RD-curves", ITU-T SG16/Q6 VCEG-M33, Austin, 2001. It needs
  at least 4 points and can oscillate between them.
* ``"pchip"``: piecewise cubic Hermite interpolation (``scipy.interpolate.PchipInterpolator``),
  which preserves monotonicity and cannot overshoot. The polynomial fit gave misleading numbers
  for some curves during HEVC standardisation, so the JCT-VC common-test-conditions Excel sheet
  switched to it (F. Bossen, "Common HM test conditions and software reference
  configurations", JCTVC-L1100, 2013).
* ``"akima"``: Akima's piecewise cubic (``scipy.interpolate.Akima1DInterpolator``), found the
  most accurate of the three against densely measured curves by C. Herglotz, M. Kränzler,
  R. Mons, A. Kaup, "Beyond Bjøntegaard: limits of video compression performance comparisons",
  ICIP 2022 (arXiv:2202.12565), and offered by their ``bjontegaard`` package. The default.

The piecewise methods pass exactly through every point and never extrapolate here (the shared
interval lies inside both curves); with 2 points they are the straight line between them.

Warnings (:class:`BDWarning`) flag results that should not be trusted blindly:

* a curve whose metric does not strictly increase with rate. Both directions of interpolation
  assume a monotonic curve: BD-metric reads the metric off a rate, BD-rate reads a rate off the
  metric, and a non-monotonic curve has several rates for one metric value.
* a shared interval shorter than half the span of the shorter curve (``MIN_OVERLAP = 0.5``),
  measured along the axis that is integrated (the metric for BD-rate, log-rate for BD-metric).
  The average then describes only the edge of one curve. Curves that do not overlap at all
  raise ``ValueError``: there is nothing to average.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BD_METHODS = ("cubic", "pchip", "akima")
MIN_OVERLAP = 0.5
_MIN_POINTS = {"cubic": 4, "pchip": 2, "akima": 2}

ArrayLike = Sequence[float] | np.ndarray


class BDWarning(UserWarning):
    """A Bjøntegaard delta was computed, but on curves that make it unreliable."""


@dataclass(frozen=True)
class _Curve:
    """One codec's operating points, sorted by rate, with the rate already on a log scale."""

    name: str
    log_rate: np.ndarray
    metric: np.ndarray


def bd_rate(
    rate_anchor: ArrayLike,
    metric_anchor: ArrayLike,
    rate_test: ArrayLike,
    metric_test: ArrayLike,
    *,
    method: str = "akima",
) -> float:
    """Mean bitrate difference of test vs anchor at equal quality, in percent.

    Negative means the test codec saves bits (-50.0: half the rate for the same metric).
    """
    anchor = _curve("anchor", rate_anchor, metric_anchor, method)
    test = _curve("test", rate_test, metric_test, method)
    mean_log_ratio = _mean_gap(anchor, test, along="metric", method=method)
    return float(math.expm1(mean_log_ratio) * 100.0)


def bd_metric(
    rate_anchor: ArrayLike,
    metric_anchor: ArrayLike,
    rate_test: ArrayLike,
    metric_test: ArrayLike,
    *,
    method: str = "akima",
) -> float:
    """Mean metric difference of test vs anchor at equal rate, in the metric's unit (BD-PSNR)."""
    anchor = _curve("anchor", rate_anchor, metric_anchor, method)
    test = _curve("test", rate_test, metric_test, method)
    return float(_mean_gap(anchor, test, along="log_rate", method=method))


def _curve(name: str, rates: ArrayLike, metrics: ArrayLike, method: str) -> _Curve:
    """Check one curve's points and sort them by rate; warn if quality does not rise with rate."""
    if method not in BD_METHODS:
        raise ValueError(f"unknown BD method {method!r}; choose from {', '.join(BD_METHODS)}")
    rate = np.asarray(rates, dtype=np.float64)
    metric = np.asarray(metrics, dtype=np.float64)
    if rate.ndim != 1 or metric.ndim != 1:
        raise ValueError(f"{name}: rates and metric values must be 1-D sequences")
    if rate.size != metric.size:
        raise ValueError(f"{name}: {rate.size} rates but {metric.size} metric values")
    if rate.size < _MIN_POINTS[method]:
        need = _MIN_POINTS[method]
        raise ValueError(f"{name}: method {method!r} needs at least {need} points, got {rate.size}")
    if not (np.all(np.isfinite(rate)) and np.all(rate > 0)):
        raise ValueError(f"{name}: rates must be positive and finite, got {rate.tolist()}")
    if not np.all(np.isfinite(metric)):
        raise ValueError(f"{name}: metric values must be finite, got {metric.tolist()}")
    order = np.argsort(rate, kind="stable")
    rate, metric = rate[order], metric[order]
    if np.any(np.diff(metric) <= 0):
        warnings.warn(
            f"{name}: the metric does not increase strictly with rate "
            f"(rates {rate.tolist()}, metric {metric.tolist()}); "
            "Bjøntegaard interpolation assumes a monotonic curve",
            BDWarning,
            stacklevel=3,
        )
    return _Curve(name, np.log(rate), metric)


def _mean_gap(anchor: _Curve, test: _Curve, *, along: str, method: str) -> float:
    """Mean of test minus anchor, of the other coordinate, over the shared ``along`` interval."""
    other = "metric" if along == "log_rate" else "log_rate"
    xa, xt = getattr(anchor, along), getattr(test, along)
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    axis = "metric" if along == "metric" else "log-rate"
    if hi <= lo:
        raise ValueError(
            f"the curves do not overlap in {axis}: anchor spans [{xa.min():g}, {xa.max():g}], "
            f"test spans [{xt.min():g}, {xt.max():g}]"
        )
    shorter = min(np.ptp(xa), np.ptp(xt))
    if hi - lo < MIN_OVERLAP * shorter:
        warnings.warn(
            f"the curves share only {100 * (hi - lo) / shorter:.0f}% of the shorter curve's "
            f"{axis} span (below {100 * MIN_OVERLAP:.0f}%); the delta describes the edge only",
            BDWarning,
            stacklevel=3,
        )
    area_test = _integral(test, along, other, lo, hi, method)
    area_anchor = _integral(anchor, along, other, lo, hi, method)
    return (area_test - area_anchor) / (hi - lo)


def _integral(curve: _Curve, along: str, other: str, lo: float, hi: float, method: str) -> float:
    """Integral over [lo, hi] of ``other`` interpolated as a function of ``along``."""
    order = np.argsort(getattr(curve, along), kind="stable")
    x, y = getattr(curve, along)[order], getattr(curve, other)[order]
    if np.any(np.diff(x) == 0):
        axis = "metric value" if along == "metric" else "rate"
        raise ValueError(f"{curve.name}: two points share the same {axis}; cannot interpolate")
    if method == "cubic":
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))
    # scipy.interpolate takes 0.3 s to import: loaded when a curve is integrated, not with
    # every ``icm`` command
    from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

    if method == "akima" and x.size > 2:
        return float(Akima1DInterpolator(x, y).integrate(lo, hi))
    # PCHIP with two points is the straight line between them, which is also what Akima means
    # for two points (and older SciPy's Akima refuses fewer than three).
    return float(PchipInterpolator(x, y).integrate(lo, hi))
