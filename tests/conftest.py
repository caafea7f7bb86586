"""Shared fixtures: small crops of the bundled photos, and ../shared when it is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icm.image import sample_photo

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for a module of tiny networks: on a shared CPU a second thread spends
    its time waiting at barriers (several times slower, not faster). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 192x128 natural-photo crop: big enough for real codec behaviour, fast to encode."""
    return np.ascontiguousarray(sample_photo("astronaut")[40:168, 120:312])


@pytest.fixture(scope="session")
def odd_photo() -> np.ndarray:
    """Odd width and height, to catch padding and cropping mistakes."""
    return np.ascontiguousarray(sample_photo("coffee")[100:167, 200:301])


@pytest.fixture
def png(tmp_path: Path, photo: np.ndarray) -> Path:
    """The ``photo`` crop saved as a PNG file, for command-line tests."""
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    return path


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Three 128x96 crops of one photo as PNG files: a dataset folder for bench tests."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (top, left) in {"a": (0, 0), "b": (100, 150), "c": (200, 80)}.items():
        crop = sample_photo("astronaut")[top:top + 96, left:left + 128]
        Image.fromarray(crop).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (Kodak and models live there)")
    return SHARED

