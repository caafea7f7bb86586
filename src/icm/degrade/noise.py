"""Sensor noise: ``noise`` (additive Gaussian) and ``poisson-noise`` (shot + read noise).

Additive white Gaussian noise is the textbook model every denoiser is benchmarked on, so it is
here for comparability. Real sensors are different: photon arrival is Poisson, so the noise
grows with the signal (shot noise), and the readout adds a signal-independent Gaussian floor.
That happens in linear light, before the camera's tone curve, which is why ``poisson-noise``
works on linearised values and why its noise looks strongest in the mid-tones and shadows of
the final picture.
"""

from __future__ import annotations

import numpy as np

from icm.degrade.base import Degradation, to_display, to_linear, to_uint8, to_unit
from icm.degrade.registry import register_degradation

#: Gaussian sigma at strength 1, on the 0..255 scale
MAX_SIGMA = 50.0
#: photons collected at full white at strength 1 (the count scales as 1 / strength**2)
MIN_PHOTONS = 10.0
#: read-noise sigma at strength 1, as a fraction of linear full scale
MAX_READ_NOISE = 0.002


@register_degradation
class GaussianNoise(Degradation):
    """Additive white Gaussian noise, independent per pixel and channel.

    sigma = 50 * strength on the 0..255 scale (12.5 at 0.25, 25 at 0.5, 50 at 1), added to the
    display values and clipped.
    """

    name = "noise"
    summary = "additive white Gaussian noise"
    mapping = "sigma = 50*s on 0..255"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        sigma = MAX_SIGMA * strength / 255.0
        return to_uint8(to_unit(rgb) + rng.normal(0.0, sigma, rgb.shape))


@register_degradation
class PoissonGaussianNoise(Degradation):
    """Poisson-Gaussian sensor noise in linear light.

    The display values are linearised (gamma 2.2); full white collects ``10 / strength**2``
    photons (1000 at 0.1, 40 at 0.5, 10 at 1), each pixel's count is drawn from a Poisson law
    with its expected photons, Gaussian read noise of sigma ``0.002 * strength`` of full scale is
    added, and the result goes back through the tone curve.
    """

    name = "poisson-noise"
    summary = "signal-dependent shot noise plus read noise, in linear light"
    mapping = "photons at white = 10/s^2, read sigma = 0.002*s of linear full scale"

    def _apply(self, rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        linear = to_linear(to_unit(rgb))
        return to_uint8(to_display(sensor_noise(linear, strength, MIN_PHOTONS, rng)))


def sensor_noise(
    linear: np.ndarray, strength: float, min_photons: float, rng: np.random.Generator
) -> np.ndarray:
    """Shot noise (``min_photons / strength**2`` photons at white) plus read noise."""
    photons = min_photons / strength**2
    shot = rng.poisson(linear * photons) / photons
    return shot + rng.normal(0.0, MAX_READ_NOISE * strength, linear.shape)
