"""Shared plumbing for codecs whose library is Pillow or a Pillow plugin."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def pillow_encode(rgb: np.ndarray, image_format: str, **save_args: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def pillow_version() -> str:
    import PIL

    return PIL.__version__
