"""Optical blur: ``blur`` (defocus, Gaussian) and ``motion-blur`` (camera shake, a line).

Both are a convolution with a point-spread function. Sizes are in pixels, not fractions of the
image, because they are properties of the capture (focus, shutter time x shake) measured on the
sensor: a 3 px defocus is the same 3 px whatever the framing. Borders reflect, so the frame edge
does not bleed in as a dark rim.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from icm.degrade.base import Degradation, to_uint8, to_unit
from icm.degrade.registry import register_degradation

#: Gaussian sigma at strength 1, in pixels
MAX_SIGMA_PX = 4.0
#: motion length at strength 1, in pixels (a streak of 1 + 30 * strength)
MAX_MOTION_PX = 30.0


@register_degradation
class DefocusBlur(Degradation):
    """Defocus approximated by a Gaussian point-spread function.

    sigma = 4 * strength pixels (1 px at 0.25, 2 px at 0.5, 4 px at 1). A real defocus disc has
    a sharper edge, but the Gaussian is what restoration benchmarks use and it has no ringing
    in the spectrum to make results depend on the image size. Draws no random numbers.
    """

    name = "blur"
    summary = "Gaussian defocus blur"
    mapping = "sigma = 4*s px"
    random = False

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        sigma = MAX_SIGMA_PX * strength
        return to_uint8(ndimage.gaussian_filter(to_unit(rgb), (sigma, sigma, 0), mode="reflect"))


@register_degradation
class MotionBlur(Degradation):
    """Linear camera-shake blur: a straight streak at a seeded random angle.

    The streak is ``1 + 30 * strength`` pixels long (10 px at 0.3, 16 px at 0.5, 31 px at 1),
    its direction uniform in [0, 180) degrees from the seed, drawn anti-aliased so that
    lengths and angles between pixel steps change the result smoothly.
    """

    name = "motion-blur"
    summary = "linear motion blur at a random angle"
    mapping = "length = 1 + 30*s px, angle random"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        angle = rng.uniform(0.0, math.pi)
        kernel = line_kernel(1.0 + MAX_MOTION_PX * strength, angle)
        return to_uint8(convolve_rgb(to_unit(rgb), kernel / kernel.sum()))


def line_kernel(length: float, angle: float, width: float = 0.0) -> np.ndarray:
    """An anti-aliased straight segment of ``length`` px through the centre, values ~1 per px.

    Points every quarter pixel along the segment are splatted bilinearly, so each pixel the
    line crosses gets about 1; ``width`` > 0 softens it across with a Gaussian of that sigma.
    """
    half = math.ceil(length / 2 + 2 * width) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    count = max(2, math.ceil(4 * length) + 1)
    steps = np.linspace(-length / 2, length / 2, count)
    ys = half + steps * math.sin(angle)
    xs = half + steps * math.cos(angle)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    weight = length / count
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                      (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w * weight)
    return ndimage.gaussian_filter(kernel, width) if width > 0 else kernel


def convolve_rgb(unit: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel`` (odd square), reflecting at the borders.

    FFT convolution, because shake kernels reach 31 px and a direct one would cost
    ~1000 multiply-adds per pixel on a full photo.
    """
    pad = kernel.shape[0] // 2
    padded = np.pad(unit, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    from scipy import signal  # 0.3 s to import: only when a kernel is applied

    return signal.fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))
