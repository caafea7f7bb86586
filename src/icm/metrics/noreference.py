"""No-reference image quality: BRISQUE (Mittal, Moorthy, Bovik, IEEE TIP 2012).

A restored or decoded photo of a degraded scene has no clean original at the receiver, so its
quality can only be judged from the image itself. BRISQUE fits generalised Gaussians to the
mean-subtracted contrast-normalised (MSCN) coefficients and their pairwise products at two
scales (36 features) and maps them to a score with a support-vector regressor trained on human
opinion scores of the LIVE database: about 0 for a pristine photo, growing with visible
distortion (scores past 100 happen on very damaged images). **Lower is better.**

The features and the regressor are the ``brisque`` package's (its LIVE-trained model ships in
the wheel, so nothing downloads). Its ``score`` method breaks on numpy 2 (it turns one-element
arrays into floats), so :func:`brisque` calls the package's own feature and scoring steps and
does only the flattening itself; the numbers are the package's.
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import Any

import numpy as np

from icm.errors import IcmError

INSTALL_HINT = "pip install 'icm[quality]'"
#: the package's own settings: a 7x7 Gaussian window with sigma 7/6 for the MSCN coefficients
_KERNEL, _SIGMA = 7, 7 / 6


@functools.cache
def _model() -> Any:
    try:
        from brisque import BRISQUE
    except ImportError as exc:
        raise IcmError(f"BRISQUE needs the brisque package and OpenCV ({exc.name} is "
                       f"missing): {INSTALL_HINT}") from None
    return BRISQUE(url=False)


def brisque(rgb: np.ndarray) -> float:
    """BRISQUE score of an ``(H, W, 3)`` uint8 RGB image (lower is better)."""
    import cv2
    from skimage.color import rgb2gray

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"brisque takes (H, W, 3) uint8 RGB, not {rgb.dtype} {rgb.shape}")
    model = _model()
    grey = rgb2gray(rgb)
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    features = chain.from_iterable(
        model.calculate_brisque_features(plane, kernel_size=_KERNEL, sigma=_SIGMA)
        for plane in (grey, half))
    flat = np.array([np.ravel(np.asarray(value, dtype=np.float64))[0] for value in features])
    return float(model.calculate_image_quality_score(flat))
