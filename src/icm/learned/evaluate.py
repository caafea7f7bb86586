"""Rate-distortion of an ``icm-lic`` model on a folder of photos, through the real codec.

Every number comes from a real bitstream: bpp from its bytes (header and side information
included), PSNR (RGB) and MS-SSIM (luma) from its decoded pixels, encode and decode wall time
on one thread. Levels are averaged over the images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icm.codecs import get_codec
from icm.image.datasets import open_dataset
from icm.metrics import ms_ssim, psnr

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LevelResult:
    level: str
    bpp: float
    psnr: float
    ms_ssim: float
    encode_ms: float
    decode_ms: float
    images: int

    def to_json(self) -> dict:
        return {"level": self.level, "bpp": round(self.bpp, 5), "psnr": round(self.psnr, 3),
                "ms_ssim": round(self.ms_ssim, 5), "encode_ms": round(self.encode_ms, 1),
                "decode_ms": round(self.decode_ms, 1), "images": self.images}


def evaluate(images: str, levels: Sequence[str], model: Path | None = None, limit: int = 0,
             progress: Progress | None = None) -> list[LevelResult]:
    """Mean bpp, PSNR, MS-SSIM and times per level of ``icm-lic`` (``model`` or the shipped
    one) over the photos of ``images``."""
    codec = get_codec("icm-lic")
    options = {"weights": str(model)} if model else {}
    dataset = open_dataset(images).of_kind("photo")
    photos = [image.load() for image in (dataset.limit(limit) if limit else dataset)]
    results = []
    for done, level in enumerate(levels):
        rows = [_measure(codec, photo, level, options) for photo in photos]
        results.append(LevelResult(level, *np.mean(rows, axis=0).tolist(), len(photos)))
        if progress is not None:
            progress("evaluating", done + 1, len(levels))
    return results


def _measure(codec, photo: np.ndarray, level: str, options: dict) -> tuple[float, ...]:
    start = time.perf_counter()
    bitstream = codec.encode(photo, level, **options)
    encoded = time.perf_counter()
    decoded = codec.decode(bitstream)
    finished = time.perf_counter()
    return (bitstream.bpp, psnr(photo, decoded), ms_ssim(photo, decoded),
            (encoded - start) * 1e3, (finished - encoded) * 1e3)
