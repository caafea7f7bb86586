"""The ``.icm`` file format, version 1: one codec bitstream behind a compact, checked header.

Every byte of an ``.icm`` file is counted in its bpp (``8 * file size / (width * height)`` of the
original image), so the header spends as little as it can: a plain ``hevc@qp37`` file of a
768 x 512 image carries 29 bytes around the codec's bitstream.

Layout
------
All integers marked *varint* are unsigned LEB128: 7 bits per byte, least significant group
first, high bit set on every byte but the last. A varint is at most 10 bytes, at most
``2**64 - 1``, and must be minimal (no redundant trailing ``0x80 .. 0x00`` groups).

=======  ==========  =========================================================================
offset   size        content
=======  ==========  =========================================================================
0        4           magic ``89 49 43 4D`` (``b"\\x89ICM"``); the high-bit first byte catches
                     7-bit or text-mode transfers, as in PNG
4        1           format version, ``01``
5        varint      ``H``, the header length in bytes
.        H           header: a sequence of fields, see below
.        varint      ``P``, the payload length in bytes
.        P           payload: the codec's standard bitstream, byte for byte (an Annex-B HEVC
                     stream, a JPEG file...)
.        4           CRC-32 (``zlib.crc32``, big-endian) of every byte before it
=======  ==========  =========================================================================

The file ends right after the CRC; trailing bytes are an error.

Header fields
-------------
Each field is ``tag`` (1 byte), ``length`` (varint), then ``length`` value bytes. Fields appear
in strictly increasing tag order, so no tag repeats and every file has one canonical form.
Tag ``0x00`` is reserved. Tags ``0x01..0x3F`` are *critical*: a reader that does not know one
must refuse the file ("needs a newer icm"). Tags ``0x40..0xFF`` are *optional*: a reader that
does not know one skips it (this implementation keeps it in :attr:`Header.extra`, so re-packing
is lossless).

=====  ========  ========  ====================================================================
tag    name      kind      value
=====  ========  ========  ====================================================================
0x01   POINT     critical  required. UTF-8 operating point ``<codec>@<level>``, e.g. ``hevc@qp37``
0x02   SIZE      critical  required. original width, height: two varints, both >= 1
0x03   RESAMPLE  critical  the payload codes a resized image: coded width, coded height (two
                           varints >= 1), then the resampling filter name (UTF-8, the rest of
                           the value, non-empty). Decoding scales back to SIZE.
0x40   FORMAT    optional  2 bytes: chroma (0 = 4:2:0, 1 = 4:2:2, 2 = 4:4:4, 3 = 4:0:0), then bit
                           depth (1..32). Absent means 4:2:0, 8 bits.
0x41   OPTIONS   optional  UTF-8 ``key=value;key=value``: encoder options that differ from the
                           codec's defaults, in encoder order. Keys are non-empty and hold no
                           ``=`` or ``;``; values hold no ``;``. Absent when there are none.
                           Never a path: options that name a file on the encoding machine
                           (a learned codec's ``weights``) are not written, and a reader
                           drops them; the decoding side names its own model files.
0x42   TAGS      optional  semantic side channel: vocabulary name (varint byte length, then
                           UTF-8), then zero or more label ids (varints) to the end of the value
0x43   RESTORE   optional  restoration after decoding: UTF-8 ``MODEL;TYPE;STRENGTH``, the
                           restorer to run on the decoded image (the name of a model icm
                           ships, e.g. ``restore-jpeg``: ``[a-z0-9][a-z0-9_-]*``, never a
                           path; a reader looks it up among its shipped models only), the
                           degradation the encoder saw in the uncoded
                           image and its strength (``0..1``, empty when not known). A reader
                           that does not know the field shows the decoded image unrestored.
0x44   RECIPE    optional  UTF-8: the machine-aware tools the encoder ran, as written in the
                           point (``for=classify``, ``fit=detect+saliency``), so ``icm info``
                           can say what was done. Informational: decoding never reads it, and
                           no path or model is ever taken from it.
=====  ========  ========  ====================================================================

A reader checks, in order: magic, version, lengths (truncation), CRC, trailing bytes, then the
header fields. Any failure is a :class:`~icm.errors.CorruptContainerError` with a one-line reason.

A file is untrusted input
-------------------------
Files cross machines, and the CRC guards against accidents, not against anyone who recomputes
it. So a decoder (icm's does) must: take no path from a file (model and vocabulary fields are
registered names, checked against a strict grammar before any lookup; model weights come from
the decoding side's own configuration, matched to the stream by digest); check SIZE and
RESAMPLE, and every size the payload declares, against its own pixel limit before allocating
(icm's default: 100 MP, as for encoding); and refuse a payload whose picture is not the size
the header gives (beyond the codec's block padding), or that is truncated, rather than show a
cropped, stretched or partly concealed picture.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from icm.codecs.base import Bitstream
from icm.codecs.registry import CODECS
from icm.errors import CorruptContainerError
from icm.fileio import read_input, write_atomic

if TYPE_CHECKING:
    from icm.codecs.base import Bitstream

MAGIC = b"\x89ICM"
VERSION = 1

#: The first tag that a reader may skip when it does not know it.
FIRST_OPTIONAL_TAG = 0x40


class Field(IntEnum):
    """Header field tags. Below :data:`FIRST_OPTIONAL_TAG` a field is critical."""

    POINT = 0x01
    SIZE = 0x02
    RESAMPLE = 0x03
    FORMAT = 0x40
    OPTIONS = 0x41
    TAGS = 0x42
    RESTORE = 0x43
    RECIPE = 0x44


CHROMA_CODES: Mapping[str, int] = MappingProxyType({"420": 0, "422": 1, "444": 2, "400": 3})
_CHROMA_NAMES = {code: name for name, code in CHROMA_CODES.items()}

_MAX_VARINT = 2**64 - 1
#: what a header may call a model or a degradation: a registered name, never a path
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_MAX_VARINT_BYTES = 10
_MAX_SIDE = 2**32 - 1
_MAX_BIT_DEPTH = 32
# magic + version + empty header length + zero payload length + CRC
_MIN_FILE = len(MAGIC) + 1 + 1 + 1 + 4


# -- the header ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resample:
    """The payload codes a resized image of ``width`` x ``height`` made with ``filter``.

    Decoding the payload gives the coded size; the reader scales it back to the header's
    original size with the same filter family.
    """

    width: int
    height: int
    filter: str

    def __post_init__(self) -> None:
        _check_side(self.width, "resample width")
        _check_side(self.height, "resample height")
        _check_text(self.filter, "resample filter", empty_ok=False)


@dataclass(frozen=True)
class Tags:
    """Semantic labels carried beside the image: ids into the named ``vocabulary``."""

    vocabulary: str
    ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_text(self.vocabulary, "tags vocabulary", empty_ok=False)
        ids = tuple(self.ids)
        for label in ids:
            if not _is_int(label) or not 0 <= label <= _MAX_VARINT:
                raise ValueError(f"tag id {label!r} is not an integer in 0..2**64-1")
        object.__setattr__(self, "ids", ids)


@dataclass(frozen=True)
class PostRestore:
    """Restore the decoded image with ``model``, told ``degradation`` at ``strength``.

    The encoder sees the uncoded image, so it names the damage far better than a decoder
    could from the coded one (coding artefacts look like damage too); the few bytes this
    costs are counted in the file's bpp like every other byte.
    """

    model: str
    degradation: str
    strength: float | None = None

    def __post_init__(self) -> None:
        for value, what in ((self.model, "restore model"), (self.degradation, "degradation")):
            _check_text(value, what, empty_ok=False)
            if not _NAME.fullmatch(value):
                raise ValueError(f"{what} {_short(value)} is not a name (lower-case letters, "
                                 "digits and '-', at most 64): a file names models, never paths")
        if self.strength is not None:
            if not isinstance(self.strength, int | float) or not 0 <= self.strength <= 1:
                raise ValueError(f"restore strength {self.strength!r} is not in [0, 1]")
            object.__setattr__(self, "strength", round(float(self.strength), 2))

    def encode(self) -> bytes:
        strength = "" if self.strength is None else f"{self.strength:.2f}".rstrip("0")
        return f"{self.model};{self.degradation};{strength.rstrip('.')}".encode()


@dataclass(frozen=True)
class Header:
    """Everything an ``.icm`` file says about its payload.

    ``width`` and ``height`` are the original image's. ``options`` are the encoder options that
    differ from the codec's defaults, as strings. ``extra`` holds optional fields this version
    does not know (tag -> raw value), kept so that unpacking and re-packing loses nothing.
    Construction validates every field and raises :class:`ValueError` on a bad one; the
    mappings are copied into read-only views.
    """

    point: str
    width: int
    height: int
    chroma: str = "420"
    bit_depth: int = 8
    options: Mapping[str, str] = field(default_factory=dict)
    resample: Resample | None = None
    tags: Tags | None = None
    restore: PostRestore | None = None
    recipe: str | None = None
    extra: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_text(self.point, "point", empty_ok=False)
        codec, at, level = self.point.partition("@")
        if not (at and codec and level):
            raise ValueError(f"point {_short(self.point)} is not <codec>@<level>")
        if any(char.isspace() for char in self.point):
            raise ValueError(f"point {_short(self.point)} contains whitespace")
        _check_side(self.width, "width")
        _check_side(self.height, "height")
        if self.chroma not in CHROMA_CODES:
            raise ValueError(f"chroma {self.chroma!r} is not one of {', '.join(CHROMA_CODES)}")
        if not _is_int(self.bit_depth) or not 1 <= self.bit_depth <= _MAX_BIT_DEPTH:
            raise ValueError(f"bit depth {self.bit_depth!r} is not in 1..{_MAX_BIT_DEPTH}")
        options = {}
        for key, value in self.options.items():
            _check_text(key, "option name", empty_ok=False)
            _check_text(value, f"option {_short(key)}", empty_ok=True)
            if "=" in key or ";" in key:
                raise ValueError(f"option name {_short(key)} may not contain '=' or ';'")
            if ";" in value:
                raise ValueError(f"option {key}={_short(value)} may not contain ';'")
            options[key] = value
        if self.resample is not None and not isinstance(self.resample, Resample):
            raise ValueError(f"resample must be a Resample, not {type(self.resample).__name__}")
        if self.tags is not None and not isinstance(self.tags, Tags):
            raise ValueError(f"tags must be a Tags, not {type(self.tags).__name__}")
        if self.restore is not None and not isinstance(self.restore, PostRestore):
            raise ValueError(f"restore must be a PostRestore, not {type(self.restore).__name__}")
        if self.recipe is not None:
            _check_text(self.recipe, "recipe", empty_ok=False)
        extra = {}
        for tag, value in self.extra.items():
            if not _is_int(tag) or not FIRST_OPTIONAL_TAG <= tag <= 0xFF or tag in _KNOWN:
                raise ValueError(
                    f"extra field tag {tag!r} must be an optional tag 0x40..0xff "
                    "that this version does not define"
                )
            if not isinstance(value, bytes | bytearray | memoryview):
                raise ValueError(f"extra field 0x{tag:02x} must be bytes")
            extra[tag] = bytes(value)
        object.__setattr__(self, "options", MappingProxyType(options))
        object.__setattr__(self, "extra", MappingProxyType(dict(sorted(extra.items()))))

    def __hash__(self) -> int:
        return hash(
            (
                self.point,
                self.width,
                self.height,
                self.chroma,
                self.bit_depth,
                frozenset(self.options.items()),
                self.resample,
                self.tags,
                self.restore,
                self.recipe,
                frozenset(self.extra.items()),
            )
        )

    @property
    def codec(self) -> str:
        """``'hevc'`` of ``'hevc@qp37'``."""
        return self.point.partition("@")[0]

    @property
    def level(self) -> str:
        """``'qp37'`` of ``'hevc@qp37'``."""
        return self.point.partition("@")[2]

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the image the payload codes: the resampled size, or the original."""
        if self.resample is not None:
            return self.resample.width, self.resample.height
        return self.width, self.height


_KNOWN = frozenset(int(tag) for tag in Field)


# -- packing ---------------------------------------------------------------------------------
def pack(header: Header, payload: bytes) -> bytes:
    """The complete ``.icm`` file for ``header`` and the codec's ``payload`` bytes."""
    if not isinstance(header, Header):
        raise TypeError(f"pack takes a Header, not {type(header).__name__}")
    payload = bytes(payload)
    fields = _encode_fields(header)
    body = b"".join(bytes([tag]) + _varint(len(value)) + value for tag, value in fields)
    out = bytearray(MAGIC)
    out.append(VERSION)
    out += _varint(len(body))
    out += body
    out += _varint(len(payload))
    out += payload
    out += zlib.crc32(out).to_bytes(4, "big")
    return bytes(out)


def _encode_fields(header: Header) -> list[tuple[int, bytes]]:
    fields: dict[int, bytes] = {
        Field.POINT: header.point.encode(),
        Field.SIZE: _varint(header.width) + _varint(header.height),
    }
    if header.resample is not None:
        resample = header.resample
        fields[Field.RESAMPLE] = (
            _varint(resample.width) + _varint(resample.height) + resample.filter.encode()
        )
    if (header.chroma, header.bit_depth) != ("420", 8):
        fields[Field.FORMAT] = bytes([CHROMA_CODES[header.chroma], header.bit_depth])
    if header.options:
        text = ";".join(f"{key}={value}" for key, value in header.options.items())
        fields[Field.OPTIONS] = text.encode()
    if header.tags is not None:
        vocabulary = header.tags.vocabulary.encode()
        ids = b"".join(_varint(label) for label in header.tags.ids)
        fields[Field.TAGS] = _varint(len(vocabulary)) + vocabulary + ids
    if header.restore is not None:
        fields[Field.RESTORE] = header.restore.encode()
    if header.recipe is not None:
        fields[Field.RECIPE] = header.recipe.encode()
    fields.update(header.extra)
    return sorted((int(tag), value) for tag, value in fields.items())


# -- unpacking -------------------------------------------------------------------------------
def is_icm(data: bytes) -> bool:
    """True when ``data`` starts with the ``.icm`` magic (says nothing of the rest)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


def unpack(data: bytes, path: str | os.PathLike[str] | None = None) -> tuple[Header, bytes]:
    """Check and split an ``.icm`` file into its header and payload.

    Any defect raises :class:`CorruptContainerError` with a one-line problem naming ``path``;
    no other exception escapes for any input bytes.
    """
    data = bytes(data)
    size = len(data)

    def fail(problem: str) -> CorruptContainerError:
        return CorruptContainerError(problem, path)

    def truncated(expected: int, at_least: bool = False) -> CorruptContainerError:
        bound = "at least " if at_least else ""
        return fail(f"truncated: expected {bound}{expected} bytes, file has {size}")

    if size == 0:
        raise fail("empty file, not an .icm file")
    if size < len(MAGIC) and MAGIC.startswith(data):
        raise truncated(_MIN_FILE, at_least=True)
    if data[: len(MAGIC)] != MAGIC:
        hint = "; was it transferred as text?" if b"ICM" in data[:8] else ""
        raise fail(f"not an .icm file (bad magic{hint})")
    if size == len(MAGIC):
        raise truncated(_MIN_FILE, at_least=True)
    if data[4] != VERSION:
        raise fail(f"unsupported .icm format version {data[4]}")

    try:
        header_len, header_start = _read_varint(data, 5, size)
    except _Short:
        raise truncated(size + 1, at_least=True) from None
    except _Malformed as exc:
        raise fail(f"malformed header length: {exc}") from None
    header_end = header_start + header_len
    if size < header_end + 1 + 4:
        raise truncated(header_end + 1 + 4, at_least=True)
    try:
        payload_len, payload_start = _read_varint(data, header_end, size)
    except _Short:
        raise truncated(size + 4 + 1, at_least=True) from None
    except _Malformed as exc:
        raise fail(f"malformed payload length: {exc}") from None
    payload_end = payload_start + payload_len
    total = payload_end + 4
    if size < total:
        raise truncated(total)
    if zlib.crc32(data[:payload_end]) != int.from_bytes(data[payload_end:total], "big"):
        raise fail("CRC mismatch: file is corrupted")
    if size > total:
        raise fail(f"{size - total} trailing bytes after the end")

    try:
        header = _decode_header(data, header_start, header_end)
    except _NewerVersion as exc:
        raise fail(f"needs a newer icm: {exc}") from None
    except _Malformed as exc:
        raise fail(f"malformed header: {exc}") from None
    return header, data[payload_start:payload_end]


def _decode_header(data: bytes, start: int, end: int) -> Header:
    fields: dict[int, bytes] = {}
    pos, previous = start, 0
    while pos < end:
        tag = data[pos]
        if tag == 0:
            raise _Malformed("field tag 0x00 is reserved")
        if tag <= previous:
            raise _Malformed(f"field 0x{tag:02x} after 0x{previous:02x} (out of order or repeated)")
        try:
            length, pos = _read_varint(data, pos + 1, end)
        except _Short:
            raise _Malformed(f"field 0x{tag:02x} runs past the header") from None
        if pos + length > end:
            raise _Malformed(f"field 0x{tag:02x} runs past the header")
        fields[tag] = data[pos : pos + length]
        pos += length
        previous = tag

    unknown_critical = [tag for tag in fields if tag < FIRST_OPTIONAL_TAG and tag not in _KNOWN]
    if unknown_critical:
        raise _NewerVersion(unknown_critical[0])
    for required in (Field.POINT, Field.SIZE):
        if required not in fields:
            raise _Malformed(f"missing {required.name} field")

    point = _text(fields[Field.POINT], "POINT")
    width, height = _varints(fields[Field.SIZE], 2, "SIZE")
    resample = None
    if Field.RESAMPLE in fields:
        value = fields[Field.RESAMPLE]
        (coded_w, coded_h), rest = _varints_prefix(value, 2, "RESAMPLE")
        resample = _build(Resample, "RESAMPLE", coded_w, coded_h, _text(value[rest:], "RESAMPLE"))
    chroma, bit_depth = "420", 8
    if Field.FORMAT in fields:
        value = fields[Field.FORMAT]
        if len(value) != 2:
            raise _Malformed(f"FORMAT is {len(value)} bytes, not 2")
        if value[0] not in _CHROMA_NAMES:
            raise _Malformed(f"FORMAT has unknown chroma code {value[0]}")
        chroma, bit_depth = _CHROMA_NAMES[value[0]], value[1]
    options = _decode_options(fields[Field.OPTIONS]) if Field.OPTIONS in fields else {}
    tags = _decode_tags(fields[Field.TAGS]) if Field.TAGS in fields else None
    restore = _decode_restore(fields[Field.RESTORE]) if Field.RESTORE in fields else None
    recipe = _text(fields[Field.RECIPE], "RECIPE") if Field.RECIPE in fields else None
    extra = {tag: value for tag, value in fields.items() if tag not in _KNOWN}
    return _build(
        Header,
        "header",
        point,
        width,
        height,
        chroma=chroma,
        bit_depth=bit_depth,
        options=options,
        resample=resample,
        tags=tags,
        restore=restore,
        recipe=recipe,
        extra=extra,
    )


def _decode_restore(value: bytes) -> PostRestore:
    parts = _text(value, "RESTORE").split(";")
    if len(parts) != 3:
        raise _Malformed("RESTORE is not MODEL;TYPE;STRENGTH")
    model, degradation, strength = parts
    try:
        number = float(strength) if strength else None
    except ValueError:
        raise _Malformed(f"RESTORE strength {_short(strength)} is not a number") from None
    return _build(PostRestore, "RESTORE", model, degradation, number)


def _decode_options(value: bytes) -> dict[str, str]:
    text = _text(value, "OPTIONS")
    options: dict[str, str] = {}
    for item in text.split(";") if text else ():
        key, eq, setting = item.partition("=")
        if not (eq and key):
            raise _Malformed(f"OPTIONS entry {_short(item)} is not key=value")
        if key in options:
            raise _Malformed(f"OPTIONS repeats {_short(key)}")
        options[key] = setting
    return options


def _decode_tags(value: bytes) -> Tags:
    (name_len,), pos = _varints_prefix(value, 1, "TAGS")
    if pos + name_len > len(value):
        raise _Malformed("TAGS vocabulary runs past the field")
    vocabulary = _text(value[pos : pos + name_len], "TAGS")
    pos += name_len
    ids = []
    while pos < len(value):
        try:
            label, pos = _read_varint(value, pos, len(value))
        except _Short:
            raise _Malformed("TAGS ends inside a label id") from None
        ids.append(label)
    return _build(Tags, "TAGS", vocabulary, tuple(ids))


def _build(cls: type, what: str, *args: Any, **kwargs: Any) -> Any:
    """Construct a header dataclass, turning its validation error into a malformed-file one."""
    try:
        return cls(*args, **kwargs)
    except ValueError as exc:
        raise _Malformed(f"{what}: {exc}") from None


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"{what} is not UTF-8") from None


def _varints_prefix(value: bytes, count: int, what: str) -> tuple[list[int], int]:
    numbers, pos = [], 0
    for _ in range(count):
        try:
            number, pos = _read_varint(value, pos, len(value))
        except _Short:
            raise _Malformed(f"{what} is too short") from None
        numbers.append(number)
    return numbers, pos


def _varints(value: bytes, count: int, what: str) -> list[int]:
    numbers, pos = _varints_prefix(value, count, what)
    if pos != len(value):
        raise _Malformed(f"{what} has {len(value) - pos} bytes too many")
    return numbers


# -- varints ---------------------------------------------------------------------------------
class _Malformed(Exception):
    """Internal: a structural defect, reported as ``malformed ...``."""


class _Short(Exception):
    """Internal: a varint runs past the end of its buffer."""


class _NewerVersion(_Malformed):
    """Internal: an unknown critical field; reported as needing a newer icm."""

    def __init__(self, tag: int) -> None:
        super().__init__(f"unknown critical field 0x{tag:02x}")
        self.tag = tag


def _varint(number: int) -> bytes:
    """Unsigned LEB128."""
    if not 0 <= number <= _MAX_VARINT:
        raise ValueError(f"{number} does not fit a varint")
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``data[pos:end]``; return ``(value, position after it)``."""
    number = shift = 0
    for index in range(pos, min(end, pos + _MAX_VARINT_BYTES)):
        byte = data[index]
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and index > pos:
                raise _Malformed("over-long varint")
            if number > _MAX_VARINT:
                raise _Malformed("varint above 2**64-1")
            return number, index + 1
    if end - pos >= _MAX_VARINT_BYTES:
        raise _Malformed("varint longer than 10 bytes")
    raise _Short


# -- Bitstream <-> Header --------------------------------------------------------------------
def header_for(
    bitstream: Bitstream,
    *,
    knob_key: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    resample: Resample | None = None,
    original_size: tuple[int, int] | None = None,
    tags: Tags | None = None,
    restore: PostRestore | None = None,
    recipe: str | None = None,
) -> Header:
    """The header for ``bitstream``, whose metadata becomes POINT, SIZE and FORMAT.

    OPTIONS gets ``bitstream.params`` minus the knob value (key ``knob_key``, by default the
    level's letters: ``qp`` for ``qp37``), minus ``chroma`` and ``bit_depth`` (FORMAT holds
    them), minus ``delta_qp`` (the map is coded in the payload; its record is for ledgers),
    minus options that name files on the encoding machine (``weights=FILE``: the stream
    names its model by digest, and a file never names a path for its decoder to open)
    and minus entries equal to ``defaults`` (pass the codec's option defaults so that
    only the choices a user made cost bytes). Booleans are written ``true``/``false``.

    When the bitstream codes a resized image, pass ``resample`` (whose size must be the
    bitstream's) and the ``original_size`` (width, height) that decoding restores.
    """
    key = knob_key if knob_key is not None else bitstream.level.rstrip("0123456789.+-")
    defaults = defaults or {}
    local = _options_naming_files(bitstream.codec)
    options = {
        name: _format_option(value)
        for name, value in bitstream.params.items()
        if name not in (key, "chroma", "bit_depth", "delta_qp", *local)
        and not (name in defaults and _same_option(value, defaults[name]))
    }
    width, height = bitstream.width, bitstream.height
    if resample is not None:
        if original_size is None:
            raise ValueError("a resampled bitstream needs original_size=(width, height)")
        if (resample.width, resample.height) != (width, height):
            raise ValueError(
                f"resample size {resample.width}x{resample.height} is not the bitstream's "
                f"{width}x{height}"
            )
        width, height = original_size
    elif original_size is not None:
        raise ValueError("original_size only applies with resample")
    return Header(
        point=bitstream.point,
        width=width,
        height=height,
        chroma=bitstream.chroma,
        bit_depth=bitstream.bit_depth,
        options=options,
        resample=resample,
        tags=tags,
        restore=restore,
        recipe=recipe,
    )


def bitstream_from(header: Header, payload: bytes) -> Bitstream:
    """The :class:`Bitstream` to hand to the codec's ``decode``.

    Its ``width`` and ``height`` are the *coded* size (the resampled one when RESAMPLE is
    present): the codec decodes and crops to that, and the caller then scales back to
    ``header.width`` x ``header.height``. ``params`` are the stored options, as strings,
    less any that would name a file (an older icm wrote ``weights=PATH``; it is never read).
    """
    local = _options_naming_files(header.codec)
    width, height = header.coded_size
    return Bitstream(
        data=bytes(payload),
        codec=header.codec,
        level=header.level,
        width=width,
        height=height,
        chroma=header.chroma,
        bit_depth=header.bit_depth,
        params={key: value for key, value in header.options.items() if key not in local},
    )


def _options_naming_files(codec: str) -> frozenset[str]:
    """The codec's options whose values are paths (``Option.names_file``); none if unknown."""
    cls = CODECS.get(codec)
    if cls is None:
        return frozenset()
    return frozenset(name for name, option in cls.options.items() if option.names_file)


def _format_option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _same_option(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


# -- files -----------------------------------------------------------------------------------
def read_icm(path: str | os.PathLike[str]) -> tuple[Header, bytes]:
    """Read and check the ``.icm`` file at ``path``; errors name the file."""
    return unpack(read_input(path), path)


def write_icm(path: str | os.PathLike[str], header: Header, payload: bytes) -> int:
    """Write the ``.icm`` file atomically (complete or absent); return its size in bytes."""
    data = pack(header, payload)
    write_atomic(path, data)
    return len(data)


# -- validation helpers ----------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_side(value: Any, what: str) -> None:
    if not _is_int(value) or not 1 <= value <= _MAX_SIDE:
        raise ValueError(f"{what} {value!r} is not an integer in 1..{_MAX_SIDE}")


def _check_text(value: Any, what: str, *, empty_ok: bool) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, not {type(value).__name__}")
    if not value and not empty_ok:
        raise ValueError(f"{what} is empty")
    if not value.isprintable():
        raise ValueError(f"{what} {_short(value)} has control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {_short(value)} is not encodable as UTF-8") from None


def _short(text: str, limit: int = 40) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters, for one-line messages."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
