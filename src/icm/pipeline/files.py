"""The file-level coding path: image file -> ``.icm`` (or a standard file) and back.

This is what ``icm encode``/``decode``/``info`` call; it keeps the command line a thin parser
and leaves the coding itself to :mod:`icm.pipeline.coding`. Every byte written counts in the
bpp it reports: for an ``.icm`` output that is the whole container (header, payload, CRC); for a
standard-file output it is that file.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icm import container
from icm.codecs import Bitstream, codec_for_suffix, get_codec
from icm.codecs.rate import RateResult
from icm.errors import IcmError
from icm.fileio import read_input, refuse_overwriting_input, write_atomic
from icm.image import DEFAULT_MAX_PIXELS, load_image, resize
from icm.limits import DEFAULT_SIDE, DecodeSide
from icm.machines.vocabularies import vocabulary_labels
from icm.metrics import psnr
from icm.pipeline.coding import Coded, decode_bytes, encode_image
from icm.pipeline.point import CodecPoint
from icm.pipeline.recipe import Prepared

ICM_SUFFIX = ".icm"


@dataclass
class EncodeResult:
    """What one encode wrote and what it achieved."""

    source: str
    output: str
    bitstream: Bitstream
    written_bytes: int
    bpp: float
    encode_ms: float
    psnr_db: float
    raw_output: str | None = None
    rate: RateResult | None = None
    prepared: Prepared | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "input": self.source,
            "output": self.output,
            "raw_output": self.raw_output,
            "point": self.bitstream.point,
            "bytes": self.written_bytes,
            "bpp": self.bpp,
            "payload_bytes": len(self.bitstream.data),
            "payload_bpp": self.bitstream.bpp,
            "psnr_db": self.psnr_db,
            "encode_ms": self.encode_ms,
            "bitstream": self.bitstream.describe(),
        }
        if self.rate is not None:
            record["rate_control"] = {
                "target_bpp": self.rate.target_bpp,
                "achieved_bpp": self.rate.achieved_bpp,
                "encodes": self.rate.encodes,
                "trials": [{"level": level, "bpp": bpp} for level, bpp in self.rate.trials],
            }
        if self.prepared is not None:
            record.update(self.prepared.describe())
            record.update(_side_info_of(self.prepared.resample, self.prepared.tags,
                                        self.prepared.restore))
        return record


@dataclass
class DecodeResult:
    source: str
    output: str
    point: str
    width: int
    height: int
    decode_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.source,
            "output": self.output,
            "point": self.point,
            "width": self.width,
            "height": self.height,
            "decode_ms": self.decode_ms,
            **self.extra,
        }


def standard_output(output: Path, codec_name: str) -> bool:
    """True when ``output`` asks for the plain standard file rather than an ``.icm``."""
    suffix = output.suffix.lower()
    if suffix == ICM_SUFFIX:
        return False
    wanted = get_codec(codec_name).raw_suffix
    if suffix != wanted:
        raise IcmError(
            f"output suffix {suffix or '(none)'!r} is neither .icm nor {codec_name}'s "
            f"standard file ({wanted})",
            output,
        )
    return True


def encode_file(
    source: Path,
    output: Path,
    point: CodecPoint,
    *,
    raw: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    **options: Any,
) -> EncodeResult:
    """Encode an image file to ``output`` (``.icm``, or the codec's standard suffix)."""
    refuse_overwriting_input(source, output)
    as_standard = standard_output(output, point.codec)
    image = load_image(source, max_pixels=max_pixels)
    start = time.perf_counter()
    encoded = encode_image(image, point, as_container=not as_standard, **options)
    encode_ms = (time.perf_counter() - start) * 1e3
    bitstream, data = encoded.bitstream, encoded.data
    codec = get_codec(point.codec)
    side = DecodeSide(max(max_pixels, DEFAULT_SIDE.max_pixels), codec.files_named(bitstream))
    reconstruction = (codec.decode_raw(data, side) if as_standard
                      else decode_bytes(data, output, side))
    if reconstruction.shape != image.shape:  # a resampled standard file: compare at its size
        reconstruction = resize(reconstruction, image.shape[1], image.shape[0])
    quality = psnr(image, reconstruction[: image.shape[0], : image.shape[1]])
    write_atomic(output, data)
    raw_output = None
    if raw and not as_standard:
        raw_path = output.with_suffix(codec.raw_suffix)
        refuse_overwriting_input(source, raw_path)
        write_atomic(raw_path, bitstream.data)
        raw_output = str(raw_path)
    pixels = image.shape[0] * image.shape[1]
    return EncodeResult(
        source=str(source),
        output=str(output),
        bitstream=bitstream,
        written_bytes=len(data),
        bpp=8 * len(data) / pixels,
        encode_ms=encode_ms,
        psnr_db=quality,
        raw_output=raw_output,
        rate=encoded.rate,
        prepared=encoded.prepared,
    )


def read_coded(path: Path) -> Coded:
    """Read an ``.icm`` file, or a standard file whose suffix names its codec (``.265``)."""
    data = read_input(path)
    if container.is_icm(data):
        header, payload = container.unpack(data, path)
        bitstream = container.bitstream_from(header, payload)
        return Coded(path, data, header.codec, header, bitstream)
    codec_name = codec_for_suffix(path.suffix)
    if codec_name is None:
        raise IcmError(
            "neither an .icm file nor a standard bitstream icm knows by its suffix", path
        )
    return Coded(path, data, codec_name)


def decode_file(source: Path, output: Path, side: DecodeSide = DEFAULT_SIDE) -> DecodeResult:
    """Decode to an image file (format from ``output``'s suffix, PNG recommended)."""
    refuse_overwriting_input(source, output)
    image_format = _image_format(output)
    coded = read_coded(source)
    start = time.perf_counter()
    image = coded.decode(side)
    decode_ms = (time.perf_counter() - start) * 1e3
    write_atomic(output, _image_file_bytes(image, output, image_format))
    point = coded.bitstream.point if coded.bitstream else coded.codec
    extra = _side_info(coded.header) if coded.header else {}
    height, width = image.shape[:2]
    return DecodeResult(str(source), str(output), point, width, height, decode_ms, extra)


def describe_file(path: Path, side: DecodeSide = DEFAULT_SIDE) -> dict[str, Any]:
    """``icm info``: the header of an ``.icm`` file, or what a standard file decodes to."""
    coded = read_coded(path)
    if coded.header is None or coded.bitstream is None:
        height, width = coded.decode(side).shape[:2]
        return {
            "file": str(path),
            "kind": "standard bitstream",
            "codec": coded.codec,
            "width": width,
            "height": height,
            "bytes": len(coded.data),
            "bpp": 8 * len(coded.data) / (width * height),
        }
    header = coded.header
    return {
        "file": str(path),
        "kind": f"icm container v{container.VERSION}",
        "point": header.point,
        "codec": header.codec,
        "level": header.level,
        "width": header.width,
        "height": header.height,
        "chroma": header.chroma,
        "bit_depth": header.bit_depth,
        "options": dict(header.options),
        "bytes": len(coded.data),
        "payload_bytes": len(coded.bitstream.data),
        "overhead_bytes": len(coded.data) - len(coded.bitstream.data),
        "bpp": 8 * len(coded.data) / (header.width * header.height),
        "crc": "ok",
        **_side_info(header),
    }


def _side_info(header: container.Header) -> dict[str, Any]:
    info = _side_info_of(header.resample, header.tags, header.restore)
    if header.recipe is not None:
        info["recipe"] = header.recipe
    return info


def _side_info_of(
    resample: container.Resample | None, tags: container.Tags | None,
    restore: container.PostRestore | None = None,
) -> dict[str, Any]:
    """JSON for the resampling and tags side information; tag ids get their label names when
    icm ships the vocabulary."""
    info: dict[str, Any] = {}
    if resample is not None:
        info["resample"] = {
            "width": resample.width,
            "height": resample.height,
            "filter": resample.filter,
        }
    if tags is not None:
        info["tags"] = {"vocabulary": tags.vocabulary, "ids": list(tags.ids)}
        labels = vocabulary_labels(tags.vocabulary)
        if labels is not None:
            info["tags"]["labels"] = [
                labels[i] if i < len(labels) else None for i in tags.ids
            ]
    if restore is not None:
        info["restore"] = {"model": restore.model, "degradation": restore.degradation,
                           "strength": restore.strength}
    return info


def _image_format(output: Path) -> str:
    """Pillow's format for an output suffix; an unknown one is refused before any work."""
    from PIL import Image

    image_format = Image.registered_extensions().get(output.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise IcmError(f"cannot write images with suffix {output.suffix or '(none)'!r}; "
                       "use .png (lossless) or another image suffix", output)
    return image_format


def _image_file_bytes(image: np.ndarray, output: Path, image_format: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    try:
        Image.fromarray(image, "RGB").save(buffer, format=image_format)
    except (KeyError, OSError, ValueError) as exc:
        raise IcmError(f"cannot write this image format ({exc})", output) from None
    return buffer.getvalue()
