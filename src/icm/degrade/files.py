"""File in, degraded file out: what ``icm degrade`` calls.

The output's format follows its suffix. Lossless formats keep the degraded pixels exactly; a
``.jpg`` or ``.webp`` output is written at high quality so that the file adds as little damage
of its own as it can (use the ``jpeg`` degradation to ask for compression on purpose).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from icm.degrade.base import DegradationRecord
from icm.degrade.registry import degrade, get_degradation
from icm.errors import IcmError
from icm.fileio import refuse_overwriting_input, write_atomic
from icm.image import load_image
from icm.limits import DEFAULT_MAX_PIXELS
from icm.metrics import psnr

#: save options that keep an output as close as its format allows to the pixels it is given
_FAITHFUL = {"JPEG": {"quality": 95, "subsampling": "4:4:4"}, "WEBP": {"lossless": True}}


def default_output(source: Path, record: DegradationRecord) -> Path:
    """``photo.png`` + ``haze@0.5`` -> ``photo.haze-0.5.png``, beside the input."""
    return source.with_name(f"{source.stem}.{record.name}-{record.strength:g}.png")


def degrade_file(
    source: Path, output: Path | None, record: DegradationRecord,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Load, degrade, write atomically; return what was done and its PSNR against the input."""
    get_degradation(record.name)  # a bad name fails before the image is read
    output = output or default_output(source, record)
    refuse_overwriting_input(source, output)
    clean = load_image(source, max_pixels=max_pixels)
    start = time.perf_counter()
    degraded = degrade(clean, record)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    write_atomic(output, image_file_bytes(degraded, output))
    height, width = clean.shape[:2]
    return {"input": str(source), "output": str(output), "degradation": record.to_json(),
            "width": width, "height": height, "psnr_db": psnr(clean, degraded),
            "degrade_ms": elapsed_ms}


def image_file_bytes(image: np.ndarray, output: Path) -> bytes:
    """Encode ``image`` in the format ``output``'s suffix names, or a one-line error."""
    from PIL import Image

    image_format = Image.registered_extensions().get(output.suffix.lower())
    if image_format is None:
        raise IcmError(f"cannot tell an image format from the suffix {output.suffix!r} "
                       "(use .png, .jpg, .webp, .tif...)", output)
    buffer = io.BytesIO()
    try:
        Image.fromarray(image, "RGB").save(buffer, format=image_format,
                                           **_FAITHFUL.get(image_format, {}))
    except (KeyError, OSError, ValueError) as exc:
        raise IcmError(f"cannot write this image format ({exc})", output) from None
    return buffer.getvalue()
