"""Poor light: ``low-light``, an underexposed, noisy capture of a well-lit scene.

Low-light enhancement data sets (LOL and the synthetic pairs made in its style) darken a normal
picture in two ways at once: a steeper tone curve (gamma > 1 crushes the shadows harder than the
highlights) and less exposure (fewer photons everywhere). Fewer photons is also what makes real
night pictures noisy, so the sensor noise is added after the darkening, in linear light, with
the same Poisson-Gaussian model as ``poisson-noise``: the darker a pixel, the worse its
signal-to-noise ratio.
"""

from __future__ import annotations

import numpy as np

from icm.degrade.base import Degradation, to_display, to_linear, to_uint8, to_unit
from icm.degrade.noise import sensor_noise
from icm.degrade.registry import register_degradation

#: photons at full white before the exposure cut, at strength 1 (scales as 1 / strength**2)
PHOTONS_AT_WHITE = 1000.0


@register_degradation
class LowLight(Degradation):
    """Gamma darkening, reduced exposure, then sensor noise.

    gamma = 1 + 1.5 * strength applied to display values; exposure = 1 - 0.9 * strength in
    linear light (0.55 at 0.5, 0.1 at 1); then Poisson shot noise with
    ``1000 / strength**2`` photons at white before the exposure cut and Gaussian read noise of
    ``0.002 * strength`` of linear full scale. At strength 1 mid-grey lands near 16 of 255.
    """

    name = "low-light"
    summary = "underexposure: gamma darkening, less exposure, shot and read noise"
    mapping = "gamma = 1 + 1.5*s, exposure = 1 - 0.9*s (linear), photons at white = 1000/s^2"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        darker = np.power(to_unit(rgb), 1.0 + 1.5 * strength)
        linear = to_linear(darker) * (1.0 - 0.9 * strength)
        return to_uint8(to_display(sensor_noise(linear, strength, PHOTONS_AT_WHITE, rng)))
