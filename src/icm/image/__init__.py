"""Images in icm are plain ``(H, W, 3)`` uint8 RGB numpy arrays, loaded safely by one rule."""

from icm.image.datasets import (
    IMAGE_SUFFIXES,
    Dataset,
    DatasetImage,
    Truth,
    content_hash,
    image_files,
    open_dataset,
)
from icm.image.documents import RenderedDocument, render_documents
from icm.image.load import DEFAULT_MAX_PIXELS, decode_image_bytes, load_image, pillow_rgb8
from icm.image.resample import resize
from icm.image.samples import SAMPLE_PHOTOS, sample_photo, sample_photos

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "SAMPLE_PHOTOS",
    "Dataset",
    "DatasetImage",
    "RenderedDocument",
    "Truth",
    "content_hash",
    "decode_image_bytes",
    "image_files",
    "load_image",
    "open_dataset",
    "pillow_rgb8",
    "render_documents",
    "resize",
    "sample_photo",
    "sample_photos",
]
