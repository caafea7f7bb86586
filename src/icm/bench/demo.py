"""``icm demo``: the bundled photos through several codecs at one bpp, a benchmark in seconds.

Every number is measured on a real ``.icm`` file's bytes, as in the full bench, so the demo
shows what a user's own run will report, with nothing to download or configure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from icm.codecs import CODECS, Codec, get_codec
from icm.errors import IcmError
from icm.image import sample_photos
from icm.metrics import ms_ssim, psnr
from icm.pipeline import CodecPoint, encode_image

#: the codecs the demo runs when none are named (those available here)
DEMO_CODECS = ("jpeg", "webp", "jpeg2000", "avif", "jxl", "heic", "hevc", "av1", "vvc")

#: ``(what is being coded, done, total)``
DemoProgress = Callable[[str, int, int], None]


def demo_codecs() -> list[str]:
    """The codecs of :data:`DEMO_CODECS` that can run here."""
    return [name for name in DEMO_CODECS
            if name in CODECS and not CODECS[name].unavailable_reason()]


def run_demo(codecs: list[str] | None, bpp: float,
             progress: DemoProgress | None = None) -> list[dict[str, Any]]:
    """Every bundled photo x every codec (default: :func:`demo_codecs`) at ``bpp``: real
    bytes, PSNR, MS-SSIM and times; a codec that cannot reach the rate gives an error row."""
    names = codecs or demo_codecs()
    photos = sample_photos()
    total = len(names) * len(photos)
    rows: list[dict[str, Any]] = []
    for name in names:
        codec = get_codec(name)
        for photo_name, image in photos.items():
            if progress is not None:
                progress(f"{name} on {photo_name}", len(rows), total)
            rows.append(_demo_row(codec, photo_name, image, bpp))
            if progress is not None:
                progress(f"{name} on {photo_name}", len(rows), total)
    return rows


def _demo_row(codec: Codec, photo_name: str, image: np.ndarray, bpp: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        encoded = encode_image(image, CodecPoint(codec.name, bpp=bpp))
        bitstream, data, rate = encoded.bitstream, encoded.data, encoded.rate
    except IcmError as exc:
        return {"codec": codec.name, "image": photo_name, "error": exc.problem}
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decode(bitstream)
    decode_ms = (time.perf_counter() - start) * 1e3
    pixels = image.shape[0] * image.shape[1]
    return {
        "codec": codec.name,
        "image": photo_name,
        "point": bitstream.point,
        "bytes": len(data),
        "bpp": 8 * len(data) / pixels,
        "psnr_db": psnr(image, decoded),
        "ms_ssim": ms_ssim(image, decoded),
        "rate_control_s": encode_s,
        "encodes": rate.encodes if rate else 1,
        "decode_ms": decode_ms,
    }
