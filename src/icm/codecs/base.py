"""The codec interface: pixels in, real bitstream bytes out, and back.

A codec family exposes one scalar knob that trades rate for quality (JPEG's quality, HEVC's QP,
JPEG XL's distance...). An operating point names the family and a knob value, ``hevc@qp37``.
Everything a ledger row needs to reproduce the encode travels in the :class:`Bitstream`.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from icm.errors import IcmError, UndecodableError, UnknownCodecError
from icm.limits import DEFAULT_SIDE, DecodeSide

#: the smallest side a codec may pad a picture to (SVT-AV1 pads to 32)
MIN_CODED_SIDE = 32


@dataclass(frozen=True)
class Knob:
    """The one scalar that trades rate for quality, and how it is written in a level.

    ``prefix`` + value makes the level string (``q30``, ``qp37``, ``d1.5``). ``rate_rises`` says
    whether a larger value spends more bits (JPEG quality) or fewer (HEVC QP), which is all rate
    control needs to know to bisect.
    """

    prefix: str
    lo: float
    hi: float
    integer: bool = True
    rate_rises: bool = True
    meaning: str = ""

    def parse(self, level: str, codec: str) -> float:
        """``'qp37'`` -> 37.0, or an :class:`UnknownCodecError` saying what is accepted."""
        text = level.strip().lower()
        number = text[len(self.prefix):] if text.startswith(self.prefix) else None
        try:
            value = float(number) if number else math.nan
        except ValueError:
            value = math.nan
        if math.isnan(value) or (self.integer and value != int(value)):
            raise UnknownCodecError(f"{codec}: level {level!r} is not {self.describe()}")
        if not self.lo <= value <= self.hi:
            raise UnknownCodecError(f"{codec}: level {level!r} is outside {self.describe()}")
        return value

    def format(self, value: float) -> str:
        """37.0 -> ``'qp37'``; floats keep up to 3 decimals."""
        if self.integer:
            return f"{self.prefix}{round(value)}"
        return f"{self.prefix}{value:.3f}".rstrip("0").rstrip(".")

    def describe(self) -> str:
        kind = "integer" if self.integer else "number"
        span = f"{self.prefix}{self.lo:g}..{self.prefix}{self.hi:g}"
        return f"{span} ({kind} {self.meaning})".replace(" )", ")")


@dataclass(frozen=True)
class Bitstream:
    """Real encoded bytes plus the metadata that makes the encode reproducible.

    ``data`` is exactly what a standard decoder reads (a JPEG file, an Annex-B HEVC stream...).
    ``width`` and ``height`` are the original image's: codecs that pad to a block multiple
    crop back on decode. ``params`` holds every encoder setting that was used.
    """

    data: bytes
    codec: str
    level: str
    width: int
    height: int
    chroma: str = "420"
    bit_depth: int = 8
    library: str = ""
    library_version: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def point(self) -> str:
        return f"{self.codec}@{self.level}"

    @property
    def bpp(self) -> float:
        """Bits per pixel of the payload alone, over the original image size."""
        return 8 * len(self.data) / (self.width * self.height)

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata (everything but the bytes)."""
        return {
            "codec": self.codec,
            "level": self.level,
            "width": self.width,
            "height": self.height,
            "chroma": self.chroma,
            "bit_depth": self.bit_depth,
            "library": self.library,
            "library_version": self.library_version,
            "params": dict(self.params),
            "payload_bytes": len(self.data),
        }


@dataclass(frozen=True)
class Picture:
    """A decoded picture with the sampling its bitstream coded it at, for decoders that say.

    ``_decode`` may return one instead of a bare array, so that a header's FORMAT (chroma,
    bit depth) is checked against what the payload really is."""

    rgb: np.ndarray
    chroma: str
    bit_depth: int


@dataclass(frozen=True)
class Option:
    """One encoder setting a user may change (``-O chroma=444``), with its allowed values."""

    default: Any
    choices: tuple[Any, ...] = ()
    help: str = ""
    #: the value is a path on the encoding machine (``weights=FILE``): it is never written to a
    #: file's OPTIONS nor read from one, so no file decides what its decoder opens
    names_file: bool = False

    def coerce(self, name: str, value: Any, codec: str) -> Any:
        kind = type(self.default)
        try:
            typed = _parse_bool(value) if kind is bool else kind(value)
        except (TypeError, ValueError):
            problem = f"{codec}: option {name}={value!r} is not a {kind.__name__}"
            raise UnknownCodecError(problem) from None
        if self.choices and typed not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise UnknownCodecError(f"{codec}: option {name}={value!r}; choose from {allowed}")
        return typed


class Codec(ABC):
    """One codec family. Subclasses set the class attributes and implement the two hooks.

    ``encode`` and ``decode`` here handle what every family shares (validation, padding to the
    codec's block multiple, cropping back, metadata); ``_encode`` and ``_decode`` only talk to
    the library.
    """

    name: ClassVar[str]
    knob: ClassVar[Knob]
    raw_suffix: ClassVar[str]
    library: ClassVar[str]
    summary: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    pad_multiple: ClassVar[int] = 1
    #: a mid-quality operating point (about 1 bpp on a photo), shown in listings and examples
    typical_level: ClassVar[str]
    #: default levels for benchmarks, coarse to fine, spanning about 0.1-1.5 bpp on photos
    ladder: ClassVar[tuple[str, ...]]
    supports_delta_qp: ClassVar[bool] = False

    # -- availability ------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the library works here, else a short reason (shown with ``install_hint``)."""
        return None

    @classmethod
    def library_version(cls) -> str:
        return ""

    # -- the two hooks -----------------------------------------------------------------------
    @abstractmethod
    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        """Encode a padded RGB uint8 array at knob ``value``; return the standard bitstream."""

    @abstractmethod
    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray | Picture:
        """Decode a bitstream to RGB uint8 at its coded (possibly padded) size (with its
        sampling, as a :class:`Picture`, when the decoder reports it).

        A picture the bitstream declares above ``side.max_pixels`` must be refused before its
        pixels are allocated (the library helpers in this package take the limit)."""

    # -- public API --------------------------------------------------------------------------
    def encode(
        self,
        image: np.ndarray,
        level: str | float,
        *,
        delta_qp: np.ndarray | None = None,
        **options: Any,
    ) -> Bitstream:
        """Encode ``image`` (H, W, 3 uint8) at ``level`` (``'q30'`` or the bare knob value).

        ``delta_qp`` is a 2-D integer block map (row-major, any grid size; the codec scales it to
        the frame) of QP offsets, for codecs with ``supports_delta_qp``. It reaches ``_encode``
        as ``options["delta_qp"]`` and is recorded in ``params`` by shape and checksum.
        """
        _check_rgb(image)
        value = self.knob.parse(level, self.name) if isinstance(level, str) else float(level)
        chosen = self.resolve_options(options)
        coded_options = dict(chosen)
        if delta_qp is not None:
            coded_options["delta_qp"] = self._check_delta_qp(delta_qp, chosen)
            chosen["delta_qp"] = _describe_map(coded_options["delta_qp"])
        data = self._encode(pad_to_multiple(image, self.pad_multiple), value, coded_options)
        return Bitstream(
            data=data,
            codec=self.name,
            level=self.knob.format(value),
            width=image.shape[1],
            height=image.shape[0],
            chroma=str(chosen.get("chroma", self.native_chroma(chosen))),
            bit_depth=int(chosen.get("bit_depth", 8)),
            library=self.library,
            library_version=self.library_version(),
            params={self.knob.prefix: value, **chosen},
        )

    def decode(self, bitstream: Bitstream, side: DecodeSide = DEFAULT_SIDE) -> np.ndarray:
        """Decode to RGB uint8 at the original ``width`` x ``height``.

        The picture must be the size the bitstream's record says, up to the padding this
        codec adds when encoding (its block multiple; AV1's 32-px minimum): a file whose
        header claims another size is refused, not cropped or stretched. ``side`` is the
        decoding machine's own settings (pixel limit, trusted model files)."""
        side.check_pixels(bitstream.width, bitstream.height, f"{self.name} picture")
        trusted = side.trusting(self.files_named(bitstream))
        rgb = self._checked_decode(bitstream.data, trusted, record=bitstream)
        return np.ascontiguousarray(rgb[: bitstream.height, : bitstream.width, :3])

    def files_named(self, bitstream: Bitstream) -> tuple[Path, ...]:
        """The model files an in-memory bitstream's options name (``weights=FILE``).

        Only a bitstream this process encoded can hold them: a file's OPTIONS never carry a
        ``names_file`` option (:func:`icm.container.header_for` leaves them out and
        :func:`icm.container.bitstream_from` drops them), so a file cannot choose a path."""
        return tuple(Path(str(bitstream.params[name])).expanduser()
                     for name, option in self.options.items()
                     if option.names_file and bitstream.params.get(name))

    def decode_raw(self, data: bytes, side: DecodeSide = DEFAULT_SIDE) -> np.ndarray:
        """Decode a standard file's bytes at its coded size (raw files keep any padding)."""
        return np.ascontiguousarray(self._checked_decode(data, side)[..., :3])

    def coded_size(self, data: bytes) -> tuple[int, int] | None:
        """(width, height) the bitstream declares, read from its own header without decoding,
        for codecs whose decoder would allocate from it unchecked; None when not known here."""
        return None

    def _checked_decode(self, data: bytes, side: DecodeSide,
                        record: Bitstream | None = None) -> np.ndarray:
        """``_decode``, with any decoder library's failure as one :class:`UndecodableError`.

        This is the one place third-party decoders (Pillow, pillow_heif, PyAV, imagecodecs,
        constriction...) are called from, so whatever they raise on hostile bytes becomes a
        one-line error naming the codec, never a traceback. The picture is checked against
        the pixel limit and against ``record`` (the header's size) before decoding where the
        codec can read its size, and after decoding always.
        """
        try:
            declared = self.coded_size(data)
            if declared is not None:
                self._check_picture(declared, side, record)
            decoded = self._decode(data, side)
        except IcmError as exc:  # our own wrappers: keep the type, make the message one line
            exc.problem = _one_line(exc.problem)
            exc.args = (exc.problem,)
            raise
        except MemoryError:
            raise UndecodableError(f"{self.name} payload needs more memory than there is "
                                   "to decode") from None
        except Exception as exc:  # the boundary to third-party decoders
            raise UndecodableError(f"{self.name} payload does not decode: "
                                   f"{_one_line(exc)}") from None
        rgb = decoded.rgb if isinstance(decoded, Picture) else decoded
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] < 3:
            raise UndecodableError(f"{self.name} payload does not decode to an RGB picture")
        self._check_picture((rgb.shape[1], rgb.shape[0]), side, record)
        if isinstance(decoded, Picture) and record is not None:
            _check_format(decoded, record, self.name)
        return rgb

    def _check_picture(self, size: tuple[int, int], side: DecodeSide,
                       record: Bitstream | None) -> None:
        width, height = size
        side.check_pixels(width, height, f"{self.name} payload's picture")
        if record is not None and not (_padded_fits(height, record.height, self.pad_multiple)
                                       and _padded_fits(width, record.width, self.pad_multiple)):
            raise UndecodableError(
                f"{self.name} payload codes a {width}x{height} picture, not the "
                f"{record.width}x{record.height} its header gives")

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with the user's options, each checked against its choices."""
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UnknownCodecError(
                f"{self.name}: unknown option {', '.join(sorted(unknown))} (known: {known})"
            )
        chosen = {name: opt.default for name, opt in self.options.items()}
        for name, value in options.items():
            chosen[name] = self.options[name].coerce(name, value, self.name)
        return chosen

    def takes_delta_qp(self, options: Mapping[str, Any]) -> bool:
        """Whether a delta-QP map takes effect with these (resolved) options.

        Some encoders honour region offsets only in some rate-control modes; those override
        this. Appliers ask it before choosing between a delta-QP map and a prefilter.
        """
        return self.supports_delta_qp

    def delta_qp_bounds(self, value: float) -> tuple[int, int]:
        """(finest, coarsest) offsets a block can take around knob ``value``: the rest of the
        QP range for QP-knob codecs (``qp37`` in 0..51: -37..+14); +-51 otherwise, which the
        codec clips to what it can do (JPEG only coarsens)."""
        if self.knob.rate_rises:
            return -51, 51
        return math.floor(self.knob.lo - value), math.ceil(self.knob.hi - value)

    def _check_delta_qp(self, delta_qp: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
        if not self.takes_delta_qp(options):
            raise UnknownCodecError(
                f"{self.name} does not take a delta-QP map "
                "(jpeg, hevc-kvazaar, hevc-crf, avc-crf do)"
            )
        grid = np.asarray(delta_qp)
        if grid.ndim != 2 or grid.size == 0 or not np.issubdtype(grid.dtype, np.integer):
            raise UnknownCodecError(f"{self.name}: delta-QP map must be a non-empty 2-D int array")
        return grid.astype(np.int64)

    def native_chroma(self, options: Mapping[str, Any]) -> str:
        """Chroma format used when the codec offers no choice (JPEG at its default is 4:2:0)."""
        return "420"


def _check_format(picture: Picture, record: Bitstream, codec: str) -> None:
    """The payload must be coded at the chroma and bit depth the header's FORMAT gives."""
    if (picture.chroma, picture.bit_depth) != (record.chroma, record.bit_depth):
        raise UndecodableError(
            f"{codec} payload is coded {picture.chroma} at {picture.bit_depth} bits, not the "
            f"{record.chroma} at {record.bit_depth} bits its header gives")


def _padded_fits(decoded: int, recorded: int, multiple: int) -> bool:
    """Whether a decoded side is the recorded one plus at most the encoder's padding."""
    padded = -(-recorded // max(multiple, 1)) * max(multiple, 1)
    return recorded <= decoded <= max(padded, MIN_CODED_SIDE)


def _one_line(exc: BaseException) -> str:
    """A library's message on one line, bounded: some span lines (libheif) or pages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _describe_map(grid: np.ndarray) -> str:
    """A short, reproducible record of a block map for ``params``: shape and CRC-32."""
    import zlib

    rows, cols = grid.shape
    return f"{cols}x{rows} crc32={zlib.crc32(grid.astype('<i8').tobytes()):08x}"


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Extend the right and bottom edges so both sides are multiples of ``multiple``.

    Edge replication costs the fewest bits of the padding choices; decode crops it away again.
    """
    if multiple <= 1:
        return image
    height, width = image.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _parse_bool(value: Any) -> bool:
    """``bool('false')`` is True, so option strings from the command line are read by word."""
    if isinstance(value, bool):
        return value
    words = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}
    if str(value).strip().lower() not in words:
        raise ValueError(value)
    return words[str(value).strip().lower()]


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError("codecs take an (H, W, 3) RGB array; load files with icm.image.load_image")
    if image.dtype != np.uint8:
        raise TypeError(f"codecs take uint8 pixels, got {image.dtype}")


def timed(func, *args, **kwargs) -> tuple[Any, float]:
    """Call ``func`` and return ``(result, milliseconds)`` measured on a monotonic clock."""
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1e3
