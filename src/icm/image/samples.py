"""The embedded sample photos: natural images that ship inside scikit-image's wheel.

They need no network and no ../shared, so the default demo and the test suite run on a fresh
machine. ``data.<name>()`` reads a file inside the installed package; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def sample_photo(name: str) -> np.ndarray:
    """One bundled photo as RGB uint8."""
    if name not in SAMPLE_PHOTOS:
        raise KeyError(f"unknown sample {name!r}; choose from {', '.join(SAMPLE_PHOTOS)}")
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3], dtype=np.uint8)


def sample_photos() -> dict[str, np.ndarray]:
    """All bundled photos, by name."""
    return {name: sample_photo(name) for name in SAMPLE_PHOTOS}
