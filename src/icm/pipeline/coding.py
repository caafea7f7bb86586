"""The coding path in memory: an image array -> a point's tools -> its codec -> bytes, and
bytes -> an image at its original size.

This is what every caller that codes pixels shares (the file commands in
:mod:`icm.pipeline.files`, the bench workers, the demo). Bytes here are what a file would hold:
an ``.icm`` container (header, payload, CRC) or the codec's standard file, so a bpp reported
from them is a bpp on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from icm import container
from icm.codecs import Bitstream, get_codec
from icm.codecs.rate import RateResult, encode_to_bpp
from icm.errors import IcmError
from icm.image import resize
from icm.limits import DEFAULT_SIDE, DecodeSide
from icm.pipeline.point import CodecPoint
from icm.pipeline.recipe import Prepared, recipe_for


@dataclass
class Encoded:
    """One encode in memory: the bitstream, the bytes to write, and how they were made."""

    bitstream: Bitstream
    data: bytes
    rate: RateResult | None = None
    prepared: Prepared | None = None


def encode_image(
    image: np.ndarray, point: CodecPoint, *, as_container: bool = True, **options: Any
) -> Encoded:
    """Encode at a level or a bpp target, after the point's machine-aware tools.

    With a bpp target, rate control measures the bytes that will actually be written (the
    whole container when ``as_container``, else the standard file alone) over the original
    image's pixels, also when a ``fit`` tool codes a smaller image.
    """
    codec = get_codec(point.codec)
    recipe = recipe_for(point.tools)
    prepared = (recipe.prepare(image, codec, options, point.level) if recipe
                else Prepared(image, options))
    height, width = image.shape[:2]
    defaults = {name: option.default for name, option in codec.options.items()}

    def written(bitstream: Bitstream) -> bytes:
        if not as_container:
            return bitstream.data
        header = container.header_for(
            bitstream,
            defaults=defaults,
            resample=prepared.resample,
            original_size=(width, height) if prepared.resample else None,
            tags=prepared.tags,
            restore=prepared.restore,
            recipe=recipe.record(),
        )
        return container.pack(header, bitstream.data)

    if point.bpp is not None:
        coded_pixels = prepared.image.shape[0] * prepared.image.shape[1]
        rate = encode_to_bpp(
            codec,
            prepared.image,
            point.bpp * width * height / coded_pixels,
            size_of=lambda b: len(written(b)),
            **prepared.options,
        )
        data = written(rate.bitstream)
        to_original = coded_pixels / (width * height)  # trials were measured on coded pixels
        rate = replace(
            rate,
            target_bpp=point.bpp,
            achieved_bpp=8 * len(data) / (width * height),
            trials=tuple((level, bpp * to_original) for level, bpp in rate.trials),
        )
        return Encoded(rate.bitstream, data, rate, prepared)
    bitstream = prepared.bitstream or codec.encode(prepared.image, point.level or "",
                                                   **prepared.options)
    return Encoded(bitstream, written(bitstream), None, prepared)


def decode_bytes(data: bytes, path: Path | str = "<memory>",
                 side: DecodeSide = DEFAULT_SIDE) -> np.ndarray:
    """Decode ``.icm`` bytes to RGB at the original size (a resampled image is restored)."""
    header, payload = container.unpack(data, path)
    return Coded(Path(path), data, header.codec, header,
                 container.bitstream_from(header, payload)).decode(side)


@dataclass(frozen=True)
class Coded:
    """A coded file as read: an ``.icm`` (header + bitstream) or a bare standard file."""

    path: Path
    data: bytes
    codec: str
    header: container.Header | None = None
    bitstream: Bitstream | None = None

    def decode(self, side: DecodeSide = DEFAULT_SIDE) -> np.ndarray:
        """RGB at the original size: a resampled ``.icm`` is scaled back to it, and a RESTORE
        field's restorer runs last. Every size the file declares is checked against the
        decoding ``side``'s pixel limit before anything is decoded."""
        try:
            codec = get_codec(self.codec)
            if self.header is not None:
                codec.knob.parse(self.header.level, codec.name)  # a level no encoder writes
                side.check_pixels(self.header.width, self.header.height, "the header's size")
            if self.bitstream is None:
                return codec.decode_raw(self.data, side)
            image = codec.decode(self.bitstream, side)
        except IcmError as exc:
            raise type(exc)(exc.problem, self.path) from None
        header = self.header
        if header is not None and image.shape[:2] != (header.height, header.width):
            image = resize(image, header.width, header.height)
        if header is not None and header.restore is not None:
            image = _post_restore(image, header.restore, self.path)
        return image


def _post_restore(image: np.ndarray, restore: container.PostRestore, path: Path) -> np.ndarray:
    """Run the restorer a file's RESTORE field names (it needs torch: the adapt extra)."""
    try:
        from icm.restore.api import restore_decoded
    except ImportError as exc:
        raise IcmError(f"this file asks for restoration after decoding, which needs torch "
                       f"({exc.name} is missing): pip install 'icm[adapt]'", path) from None
    try:
        return restore_decoded(image, restore.model, restore.degradation, restore.strength)
    except IcmError as exc:
        raise IcmError(exc.problem, path) from None
