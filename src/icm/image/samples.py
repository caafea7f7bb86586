"""The embedded sample photos: natural images that ship inside scikit-image's wheel.

They need no network and no ../shared, so the default demo and the test suite run on a fresh
machine. ``data.<name>()`` reads a file inside the installed package; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
#: scikit-image's loader for each, where the name differs (the left frame of a stereo pair)
_LOADERS = {"motorcycle": ("stereo_motorcycle", 0)}


def sample_photo(name: str) -> np.ndarray:
    """One bundled photo as RGB uint8."""
    if name not in SAMPLE_PHOTOS:
        raise KeyError(f"unknown sample {name!r}; choose from {', '.join(SAMPLE_PHOTOS)}")
    from skimage import data

    loader, frame = _LOADERS.get(name, (name, None))
    pixels = getattr(data, loader)()
    if frame is not None:
        pixels = pixels[frame]
    return np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)


def sample_photos() -> dict[str, np.ndarray]:
    """All bundled photos, by name."""
    return {name: sample_photo(name) for name in SAMPLE_PHOTOS}
