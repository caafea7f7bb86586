"""One resampling rule for icm's own resizes: Lanczos through Pillow.

Fitting an image to a machine, restoring its size after decoding, and rescaling training
photos all use it, so a resize and its inverse are symmetric and a ``fit`` recorded in a
container (filter ``lanczos``) names what was actually done.
"""

from __future__ import annotations

import numpy as np


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 resampled to ``width`` x ``height`` with Lanczos."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))
