"""Shared plumbing for codecs whose library is Pillow or a Pillow plugin."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from icm.codecs.base import Picture
from icm.errors import UndecodableError
from icm.image.load import pillow_rgb8, pillow_settings
from icm.limits import DecodeSide


def pillow_encode(rgb: np.ndarray, image_format: str, **save_args: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def pillow_decode(data: bytes, side: DecodeSide, image_format: str) -> np.ndarray | Picture:
    """RGB from a Pillow-readable bitstream, its size checked before any pixel is decoded.

    Pillow runs with the image loader's settings (:func:`icm.image.load.pillow_settings`):
    the decoding side's limit instead of Pillow's bomb check, truncation an error, warnings
    off stderr; Pillow reads the size from the header, lazily. Only ``image_format``'s
    plugin may read it: a ``.jpg`` payload holding a GIF, or a header saying JPEG over a
    WebP, is refused, not decoded by whichever plugin recognises it. A JPEG comes with its
    chroma sampling, which its header's FORMAT must match."""
    with pillow_settings():
        try:
            image = Image.open(io.BytesIO(data), formats=(image_format,))
        except UnidentifiedImageError:
            raise UndecodableError(f"payload is not a readable {image_format} image") from None
        with image:
            side.check_pixels(*image.size, "the bitstream's picture")
            rgb = _rgb8(image)
            if image.format == "JPEG":
                return Picture(rgb, _JPEG_SAMPLING.get(JpegImagePlugin.get_sampling(image), "?"), 8)
            return rgb


def _rgb8(image: Image.Image) -> np.ndarray:
    """RGB uint8 in bands (no full-size intermediate copy: 17 -> 10 bytes per pixel at
    40 MP), by the image loader's converter."""
    return pillow_rgb8(image) if image.mode == "RGB" else np.asarray(image.convert("RGB"))


#: Pillow's JPEG sampling codes (``get_sampling``: -1 for one component)
_JPEG_SAMPLING = {-1: "400", 0: "444", 1: "422", 2: "420"}


def pillow_version() -> str:
    import PIL

    return PIL.__version__
