"""Images of harness requests through a codec point: real bitstreams, decoded, bits counted.

A harness hands its model PIL images (lmms-eval's ``doc_to_visual`` / ``doc_to_messages``);
:class:`ImageCoder` replaces each with its decode at one icm point. The bitstream is keyed as
the bench keys its cache (:func:`icm.bench.worker.cache_key`: pixels, point, encoder version),
so a picture several questions share is encoded once, and with a cache folder once across
runs too. The bits counted are every byte of the ``.icm`` file over the original pixels,
as everywhere in icm.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from icm.bench.worker import cache_key, cache_path, coding_version, store_files
from icm.image.datasets import content_hash
from icm.metrics import psnr
from icm.pipeline import CodecPoint, decode_bytes, encode_image

#: decoded images kept in memory (the bytes are always kept: they are small)
DECODED_IN_MEMORY = 64


@dataclass(frozen=True)
class CodedImage:
    """What one image became at one point: its bits, and the hash of what the model saw."""

    image_sha: str  # the original pixels (icm.image.datasets.content_hash)
    decoded_sha: str  # the decoded pixels handed to the model
    point: str
    width: int
    height: int
    bytes: int
    psnr: float
    cache_key: str

    @property
    def bits(self) -> int:
        return 8 * self.bytes

    @property
    def bpp(self) -> float:
        return self.bits / (self.width * self.height)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bits": self.bits, "bpp": self.bpp}


class ImageCoder:
    """Codes images at one point, each distinct image once (memory, then the cache folder)."""

    def __init__(self, point: CodecPoint, cache_dir: Path | None = None) -> None:
        self.point = point
        self.cache_dir = cache_dir
        self.version = coding_version(point)
        self._bytes: dict[str, bytes] = {}
        self._decoded: OrderedDict[str, tuple[Image.Image, CodedImage]] = OrderedDict()
        self.encodes = 0  # bitstreams made here, not found in a cache (tests read it)

    def __call__(self, image: Image.Image) -> tuple[Image.Image, CodedImage]:
        pixels = np.asarray(image.convert("RGB"))
        image_sha = content_hash(pixels)
        key = cache_key(image_sha, self.point, self.version)
        if key in self._decoded:
            self._decoded.move_to_end(key)
            return self._decoded[key]
        decoded = decode_bytes(self._data(key, pixels))
        record = CodedImage(
            image_sha=image_sha, decoded_sha=content_hash(decoded),
            point=str(self.point), width=pixels.shape[1], height=pixels.shape[0],
            bytes=len(self._bytes[key]), psnr=float(psnr(pixels, decoded)), cache_key=key)
        self._decoded[key] = (Image.fromarray(decoded), record)
        if len(self._decoded) > DECODED_IN_MEMORY:
            self._decoded.popitem(last=False)
        return self._decoded[key]

    def _data(self, key: str, pixels: np.ndarray) -> bytes:
        """The ``.icm`` bytes for ``key``: remembered, cached on disk, or encoded now."""
        if key not in self._bytes:
            path = cache_path(self.cache_dir, key) if self.cache_dir else None
            if path is not None and path.exists():
                self._bytes[key] = path.read_bytes()
            else:
                self._bytes[key] = encode_image(pixels, self.point).data
                self.encodes += 1
                if self.cache_dir is not None:
                    store_files(self.cache_dir, {key: self._bytes[key]})
        return self._bytes[key]


def code_visuals(value: Any, coder: ImageCoder, records: list[CodedImage]) -> Any:
    """``value`` with every PIL image in it (in lists, tuples and dicts, as lmms-eval's visuals
    and chat messages hold them) replaced by its decode; each image's record is appended to
    ``records``. Anything else (text, video paths, audio) passes unchanged."""
    if isinstance(value, Image.Image):
        decoded, record = coder(value)
        records.append(record)
        return decoded
    if isinstance(value, list):
        return [code_visuals(item, coder, records) for item in value]
    if isinstance(value, tuple):
        return tuple(code_visuals(item, coder, records) for item in value)
    if isinstance(value, dict):
        return {key: code_visuals(item, coder, records) for key, item in value.items()}
    return value
