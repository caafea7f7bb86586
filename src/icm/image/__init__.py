"""Images in icm are plain ``(H, W, 3)`` uint8 RGB numpy arrays, loaded safely by one rule."""

from icm.image.load import DEFAULT_MAX_PIXELS, decode_image_bytes, load_image
from icm.image.samples import SAMPLE_PHOTOS, sample_photo, sample_photos

IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif",
    ".jp2", ".j2k", ".avif", ".jxl", ".heic", ".heif", ".ppm", ".pgm", ".pnm",
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "SAMPLE_PHOTOS",
    "decode_image_bytes",
    "load_image",
    "sample_photo",
    "sample_photos",
]
