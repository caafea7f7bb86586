"""``saliency``: a fast, model-free map by the spectral residual (Hou & Zhang, CVPR 2007).

The log amplitude spectrum of natural images is smooth; what sticks out of it (the residual)
marks the parts of the picture that are not statistically predictable from the rest, which is
roughly where eyes and detectors look. It needs no weights, takes a few milliseconds at any
image size, and is the default because it works everywhere; machine-specific providers
(``sensitivity``, ``text``, ``clip-attention``) usually do better for their own machine.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap
from icm.importance.providers.base import ImportanceProvider
from icm.importance.registry import register_importance

#: the working resolution of the spectral residual (its authors' choice: 64 px)
WORK_SIDE = 64


@register_importance
class SaliencyProvider(ImportanceProvider):
    name = "saliency"
    summary = "spectral-residual saliency; model-free, milliseconds, the default"

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        height, width = image.shape[:2]
        small = _luma_at(image, WORK_SIDE)
        saliency = spectral_residual(small)
        dense = _resize(saliency, height, width)
        return ImportanceMap.from_dense(dense, block, self.name, {"work_side": WORK_SIDE})


def spectral_residual(luma: np.ndarray, average: int = 3, sigma: float = 2.5) -> np.ndarray:
    """The saliency map of a small grey image: energy of the spectrum's residual, blurred."""
    spectrum = np.fft.fft2(luma)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    residual = log_amplitude - ndimage.uniform_filter(log_amplitude, average, mode="nearest")
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    return ndimage.gaussian_filter(saliency, sigma, mode="nearest")


def _luma_at(image: np.ndarray, longer_side: int) -> np.ndarray:
    from PIL import Image

    height, width = image.shape[:2]
    scale = longer_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = Image.fromarray(image).convert("L").resize(size, Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float64) / 255.0


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    picture = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR))
