"""Bad weather: ``haze`` (scattering), ``rain`` (streaks in the air), ``raindrops`` (on the lens).

Sizes here are fractions of the image's shorter side, not pixels: a rain streak or a drop on
the lens covers the same share of the frame whether the photo is 0.3 or 30 megapixels, so the
same strength looks the same at any resolution (unlike blur, whose size is a sensor property).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from icm.degrade.base import Degradation, luma, shorter_side, to_uint8, to_unit
from icm.degrade.blur import line_kernel
from icm.degrade.registry import register_degradation

#: scattering coefficient at strength 1, per unit of proxy depth
MAX_BETA = 2.5


@register_degradation
class Haze(Degradation):
    """Atmospheric scattering, ``I = J * t + A * (1 - t)`` with ``t = exp(-beta * d)``.

    beta = 2.5 * strength. A single photo has no depth, so ``d`` is a proxy in [0.3, 1] built
    from two cues that hold for most outdoor pictures: the top of the frame is farther than the
    bottom (a vertical ramp, weight 0.6, tilted sideways by a seeded slope up to +-0.3), and
    large bright smooth areas are sky or distance (luma blurred at 1/16 of the shorter side,
    weight 0.4). The floor of 0.3 keeps even the nearest pixel slightly veiled, as real haze
    does. The airlight ``A`` is a light grey of brightness 0.8..0.95 with a small per-channel
    tint, both from the seed.
    """

    name = "haze"
    summary = "atmospheric scattering over a depth proxy (vertical ramp + blurred luma)"
    mapping = "beta = 2.5*s, t = exp(-beta*d), d in [0.3, 1]"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        unit = to_unit(rgb)
        airlight = np.clip(rng.uniform(0.8, 0.95) + rng.normal(0.0, 0.02, 3), 0.0, 1.0)
        depth = depth_proxy(unit, tilt=rng.uniform(-0.3, 0.3))
        transmission = np.exp(-MAX_BETA * strength * depth)[:, :, None]
        return to_uint8(unit * transmission + airlight * (1.0 - transmission))


def depth_proxy(unit: np.ndarray, tilt: float = 0.0) -> np.ndarray:
    """Relative distance in [0.3, 1] (far = 1) from position and smooth brightness; see Haze."""
    height, width = unit.shape[:2]
    rows = np.linspace(1.0, 0.0, height)[:, None]
    cols = np.linspace(-0.5, 0.5, width)[None, :]
    ramp = np.clip(rows + tilt * cols, 0.0, 1.0)
    smooth = ndimage.gaussian_filter(luma(unit), min(height, width) / 16, mode="nearest")
    return 0.3 + 0.7 * (0.6 * ramp + 0.4 * smooth)


@register_degradation
class RainStreaks(Degradation):
    """Falling rain: sparse bright streaks, all at one wind angle, added to the image.

    Drops start at random pixels with probability ``0.01 * strength`` each, with random
    brightness; every drop is smeared into a line (the exposure time) of length
    ``(0.04 + 0.16 * strength)`` of the shorter side, slightly softened across, at an angle from
    the vertical drawn once per image from N(0, 15 degrees). The streak layer is added with gain
    ``0.5 + 0.4 * strength`` and clipped, as in the usual additive rain model ``O = B + S``.
    """

    name = "rain"
    summary = "rain streaks: sparse slanted motion-blurred lines"
    mapping = "density = 0.01*s per px, length = (0.04 + 0.16*s) * shorter side"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        side = shorter_side(rgb)
        tilt = float(np.clip(rng.normal(0.0, math.radians(15)), -0.6, 0.6))
        length = max(2.0, side * (0.04 + 0.16 * strength))
        kernel = line_kernel(length, math.pi / 2 + tilt, width=0.3 + side / 600)
        pad = kernel.shape[0] // 2
        # Drops are seeded on a margin around the frame so streaks enter across every edge.
        shape = (rgb.shape[0] + 2 * pad, rgb.shape[1] + 2 * pad)
        seeds = (rng.random(shape) < 0.01 * strength) * rng.uniform(0.4, 1.0, shape)
        from scipy import signal  # 0.3 s to import: only when a kernel is applied

        streaks = signal.fftconvolve(seeds, kernel, mode="valid")
        gain = 0.5 + 0.4 * strength
        return to_uint8(to_unit(rgb) + gain * np.clip(streaks, 0.0, None)[:, :, None])


@register_degradation
class Raindrops(Degradation):
    """Water drops on the lens or windscreen: round, out-of-focus, refracting blobs.

    ``round((4 + 40 * strength) * area / shorter_side**2)`` drops sit at uniform random places,
    each with a radius uniform in ``[0.02, 0.03 + 0.07 * strength]`` of the shorter side. A drop
    is a small ball lens far nearer than the focus: it shows a wider patch of the scene around
    it (twice its radius), upside down and defocused (Gaussian, 1 px + 1% of the shorter side),
    a little brighter at the centre and darker at the rim, with a soft edge.
    """

    name = "raindrops"
    summary = "lens droplets: round blurred, refracting blobs"
    mapping = "drops = 4 + 40*s (per square), radius up to (0.03 + 0.07*s) * shorter side"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        height, width = rgb.shape[:2]
        side = shorter_side(rgb)
        unit = to_unit(rgb)
        defocused = ndimage.gaussian_filter(unit, (1 + 0.01 * side, 1 + 0.01 * side, 0))
        count = round((4 + 40 * strength) * height * width / side**2)
        out = unit.copy()
        for _ in range(count):
            centre = (rng.uniform(0, height), rng.uniform(0, width))
            radius = max(1.5, side * rng.uniform(0.02, 0.03 + 0.07 * strength))
            _add_drop(out, defocused, centre, radius)
        return to_uint8(out)


def _add_drop(
    out: np.ndarray, defocused: np.ndarray, centre: tuple[float, float], radius: float
) -> None:
    """Composite one drop into ``out`` in place, over its bounding box only."""
    height, width = out.shape[:2]
    cy, cx = centre
    top, bottom = max(0, math.floor(cy - radius)), min(height, math.ceil(cy + radius) + 1)
    left, right = max(0, math.floor(cx - radius)), min(width, math.ceil(cx + radius) + 1)
    if top >= bottom or left >= right:
        return
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float64)
    rho = np.hypot(ys - cy, xs - cx) / radius
    edge = max(1.0, 0.15 * radius) / radius
    alpha = np.clip((1.0 - rho) / edge, 0.0, 1.0)[:, :, None]
    # Ball lens: the point at offset v from the centre shows the scene at -2v, defocused.
    coords = np.stack([cy - 2.0 * (ys - cy), cx - 2.0 * (xs - cx)])
    seen = np.stack([ndimage.map_coordinates(defocused[:, :, c], coords, order=1,
                                             mode="mirror") for c in range(3)], axis=2)
    shade = (1.05 - 0.25 * np.minimum(rho, 1.0) ** 4)[:, :, None]
    box = out[top:bottom, left:right]
    box[...] = box * (1.0 - alpha) + seen * shade * alpha
