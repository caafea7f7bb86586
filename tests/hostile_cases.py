"""Hostile files for the decoder, made deterministically, and a runner that judges each decode.

Shared by ``tests/test_fuzz_decode.py`` (a few cases per family, in-process) and
``benchmarks/fuzz_decode.py`` (many, each in a fresh ``icm decode`` process).

An ``.icm`` file is made on one machine and decoded on another, so ``icm decode FILE -o out.png``
must, for any bytes, either exit 2 with exactly one stderr line naming the file, or write the
picture an honest file gives. Every hostile ``.icm`` here is CRC-valid (an attacker recomputes
the CRC), so the container's checks alone do not stop it.

Families (:data:`FAMILIES`), each a deterministic function of a seed:

``splice``
    Byte ranges of an honest payload replaced, inserted, deleted, duplicated or bit-flipped,
    for every codec that encodes here. A changed payload is another stream that no checksum
    can tell from an honest one, so a decoder may conceal the damage: the expectation is a
    clean error or a picture of the header's size (``picture_or_error``).
``truncate``
    Raw standard files (``.jpg``, ``.265``, ``.webp``...) cut short and decoded by suffix; the
    same cut payloads inside CRC-valid ``.icm`` files; and ``.icm`` files themselves cut short.
    A truncated payload must be refused or decode to exactly the honest picture
    (``exact_or_error``; the container's format notes forbid a partly concealed picture); a cut
    ``.icm`` file must be refused.
``size_lie``
    The header's SIZE and RESAMPLE fields changed (bigger, smaller, 0, 60000x60000, 2**32-1,
    malformed varints), the payload honest. Allowed: a clean error, or exactly what an honest
    file with that header gives (the honest decode cropped to a smaller coded size, then
    resized to SIZE); anything over the decode pixel limit must be refused.
``field_path``
    Fields that could name paths: RESTORE model and degradation (``../``, absolute, names that
    match a file in the working folder), OPTIONS (``weights=/etc/passwd``, canary paths),
    TAGS vocabulary, RECIPE, RESAMPLE's filter, unknown fields. The decoder must open none of
    them (see :class:`Canary`).
``format_lie``
    POINT names one codec while the payload is another's; FORMAT and OPTIONS lie about chroma,
    bit depth and encoder settings. A payload in another format must be refused; one in the
    same standard format (``hevc`` <- ``hevc-kvazaar``) may decode.
``header_splice``
    Random bytes of the header's fields changed; what the edited header then says (when it
    parses) decides what the honest payload must decode to under it.
``icm_lic``
    The learned codec's own 12-byte stream header (version, flags, quality x 1000, latent rows
    and columns, model tag; :mod:`icm.learned.codec`) edited: rows or columns 0, off by one or
    65535, flags claiming a quality map that is not there, a zlib bomb as the map, a bad tag.

Outcomes (:func:`classify`): ``clean_error``, ``messy_error`` (exit 2 but not exactly one line
naming the file), ``exact_decode``, ``concealed`` (a picture of the expected size, other pixels),
``wrong_picture`` (another size, or other pixels where only the exact picture is allowed),
``traceback``, ``hang``, ``crash`` (a signal, MemoryError), ``path_escape``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import os
import queue
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icm import container
from icm.errors import IcmError

#: the honest image every codec encodes: a 64x48 crop of a bundled photo
PHOTO = ("astronaut", slice(100, 148), slice(180, 244))
#: what the decoder must refuse above (icm's default decode pixel limit)
MAX_PIXELS = 100_000_000
#: a case declaring more pixels than this may allocate a lot: run it in a limited process
RISKY_PIXELS = 4_000_000

EXPECTATIONS = {
    "error": frozenset({"clean_error"}),
    "exact_or_error": frozenset({"clean_error", "exact_decode"}),
    "picture_or_error": frozenset({"clean_error", "exact_decode", "concealed"}),
}
OUTCOMES = ("clean_error", "exact_decode", "concealed", "messy_error", "wrong_picture",
            "traceback", "hang", "crash", "path_escape")


# -- cases ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One hostile file: ``data`` is written as ``case<suffix>`` and decoded to PNG.

    ``reference`` is the picture an exact decode must equal (for an ``error`` case, the
    picture the payload codes, so that an accepted file is reported as what it showed);
    ``shape`` is the size a concealed picture must have. ``risky`` cases declare a large
    picture and run only in a process with a memory limit.
    """

    family: str
    case_id: str
    data: bytes
    suffix: str
    expectation: str
    codec: str = ""
    description: str = ""
    reference: np.ndarray | None = field(default=None, repr=False, compare=False)
    shape: tuple[int, ...] | None = None
    risky: bool = False

    def __iter__(self) -> Iterator:
        """``family, case_id, data, suffix, expectation = case``."""
        return iter((self.family, self.case_id, self.data, self.suffix, self.expectation))


@dataclass(frozen=True)
class Honest:
    """One codec's honest encode of :data:`PHOTO` and its decodes."""

    codec: str
    icm: bytes
    header: container.Header
    payload: bytes
    picture: np.ndarray  # the .icm's decode
    raw: np.ndarray  # the payload as a standard file, decoded by its suffix (keeps padding)
    raw_suffix: str


def photo() -> np.ndarray:
    from icm.image import sample_photo

    name, rows, cols = PHOTO
    return np.ascontiguousarray(sample_photo(name)[rows, cols])


@functools.cache
def honest(codec: str) -> Honest | None:
    """The honest encode of ``codec`` (cached), or None when it does not encode here."""
    from icm.codecs import codec_for_suffix, get_codec
    from icm.pipeline import decode_bytes, encode_image, parse_point

    try:
        family = get_codec(codec)
        encoded = encode_image(photo(), parse_point(f"{codec}@{family.typical_level}"))
        header, payload = container.unpack(encoded.data)
        picture = decode_bytes(encoded.data)
        owner = get_codec(codec_for_suffix(family.raw_suffix) or codec)
        raw = owner.decode_raw(payload)
    except Exception:  # unavailable library, no model, no download: not fuzzed here
        return None
    return Honest(codec, encoded.data, header, payload, picture, raw, family.raw_suffix)


@functools.cache
def honest_codecs() -> tuple[str, ...]:
    """Codecs that are available and encode the honest photo here, in registry order; never
    one whose default weights would be downloaded (CompressAI's zoo)."""
    from icm.codecs import CODECS, list_codecs

    return tuple(name for name in list_codecs(available_only=True)
                 if not getattr(CODECS[name], "weights_by_download", False)
                 and honest(name) is not None)


def fuzzed_codecs(limit_to: Sequence[str] | None = None) -> tuple[str, ...]:
    names = honest_codecs()
    return tuple(n for n in names if n in limit_to) if limit_to else names


# -- writing .icm bytes by hand ----------------------------------------------------------------
def varint(number: int) -> bytes:
    """Unsigned LEB128 (any size: callers make out-of-range values on purpose)."""
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        byte = data[pos]
        number |= (byte & 0x7F) << shift
        shift, pos = shift + 7, pos + 1
        if not byte & 0x80:
            return number, pos


def fields_of(header: container.Header) -> dict[int, bytes]:
    """The header's fields as ``{tag: value bytes}``, read back from a packed file."""
    data = container.pack(header, b"")
    length, pos = _read_varint(data, len(container.MAGIC) + 1)
    fields, end = {}, pos + length
    while pos < end:
        tag = data[pos]
        size, pos = _read_varint(data, pos + 1)
        fields[tag] = data[pos : pos + size]
        pos += size
    return fields


def raw_icm(fields: dict[int, bytes] | Sequence[tuple[int, bytes]], payload: bytes) -> bytes:
    """A CRC-valid ``.icm`` with exactly these fields (a dict is written in tag order)."""
    items = sorted(fields.items()) if isinstance(fields, dict) else list(fields)
    body = b"".join(bytes([tag]) + varint(len(value)) + value for tag, value in items)
    out = bytearray(container.MAGIC) + bytes([container.VERSION]) + varint(len(body)) + body
    out += varint(len(payload)) + payload
    return bytes(out + zlib.crc32(out).to_bytes(4, "big"))


def with_fields(h: Honest, changes: dict[str | int, bytes | None],
                payload: bytes | None = None) -> bytes:
    """The honest file with fields set or removed (``None``), keyed by :class:`Field` name or
    by tag number (for tags this version does not define)."""
    fields = fields_of(h.header)
    for key, value in changes.items():
        tag = key if isinstance(key, int) else int(container.Field[key])
        if value is None:
            fields.pop(tag, None)
        else:
            fields[tag] = value
    return raw_icm(fields, h.payload if payload is None else payload)


# -- canaries: paths a hostile file names, watched for opening --------------------------------
_WATCHED: list[str] = []
_HITS: list[str] = []
_HOOKED = False
_PATH_EVENTS = ("open", "os.", "shutil.", "glob.", "pathlib.", "subprocess.", "ctypes.dlopen")


def _audit(event: str, args: tuple) -> None:
    if not _WATCHED or not event.startswith(_PATH_EVENTS):
        return
    for arg in args:
        if isinstance(arg, str | bytes | os.PathLike):
            try:
                text = os.fsdecode(arg)
            except TypeError:
                continue
            if any(token in text for token in _WATCHED):
                _HITS.append(f"{event} {text}")


class Canary:
    """Files at the paths hostile files name, and two independent ways to see them opened.

    The names all contain ``token`` (a valid model name, so it also reaches name lookups):
    ``<workdir>/<token>/model.safetensors`` etc. (named by absolute and ``../``-relative
    paths) and ``<token>``/``<token>.safetensors`` in the folder the decoder runs in (the
    decode's working directory). Their content is not a valid anything.

    Detection: (1) a Python audit hook (PEP 578) records every ``open``/``os.*``/``glob``...
    event whose path contains the token or ``/etc/passwd`` -- every Python-level open, which
    is how icm reads model files (``Path.read_bytes``, ``torch.load``); (2) each canary's
    access time is set before its modification time, so under ``relatime`` (and
    ``strictatime``) any read of it by native code updates it; :attr:`atime_works` says
    whether this filesystem does. An error message that merely quotes the path is not an
    escape (the refusal must be allowed to name what it refused).
    """

    NAMES = ("model.safetensors", "weights.pt", "weights", "vocabulary.txt")

    def __init__(self, workdir: Path, seed: int = 0) -> None:
        self.workdir = Path(workdir)
        self.token = f"fzcanary-{seed}"
        self.folder = self.workdir / self.token
        self.run_dir = self.workdir / "run"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.files = [self.folder / name for name in self.NAMES] + [
            self.run_dir / self.token, self.run_dir / f"{self.token}.safetensors"]
        for path in self.files:
            path.write_bytes(b"FUZZ CANARY: a decoder must never read this file\n" * 4)
        self.watch = (self.token, "/etc/passwd", "/etc/shadow")
        self.atime_works = self._probe_atime()
        self.reset()

    @property
    def absolute(self) -> str:
        return str(self.folder / "model.safetensors")

    @property
    def relative(self) -> str:
        """The same file by ``../`` from any working directory (16 levels up is ``/``)."""
        return "../" * 16 + str(self.folder / "weights.pt").lstrip("/")

    def reset(self) -> None:
        now = time.time()
        for path in self.files:
            os.utime(path, (1_000_000, now))

    def read_since_reset(self) -> list[str]:
        if not self.atime_works:
            return []
        return [str(p) for p in self.files if p.stat().st_atime > 1_000_001]

    def _probe_atime(self) -> bool:
        probe = self.workdir / "atime-probe"
        probe.write_bytes(b"probe")
        os.utime(probe, (1_000_000, time.time()))
        probe.read_bytes()
        works = probe.stat().st_atime > 1_000_001
        probe.unlink()
        return works

    @contextlib.contextmanager
    def watching(self) -> Iterator[list[str]]:
        """In-process: record watched path events while the block runs."""
        global _HOOKED
        if not _HOOKED:
            sys.addaudithook(_audit)
            _HOOKED = True
        _HITS.clear()
        _WATCHED[:] = self.watch
        hits: list[str] = []
        try:
            yield hits
        finally:
            _WATCHED.clear()
            hits.extend(_HITS)
            _HITS.clear()


# -- the families -------------------------------------------------------------------------------
def _rng(seed: int, family: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(family.encode())])


def _codec_cycle(codecs: Sequence[str], rng: np.random.Generator) -> Iterator[str]:
    order = list(codecs)
    rng.shuffle(order)
    return itertools.cycle(order)


def splice_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary) -> Iterator[Case]:
    rng = _rng(seed, "splice")
    cycle = itertools.cycle(codecs)  # every codec before any repeats
    for index in range(count):
        h = honest(next(cycle))
        payload = h.payload
        for _ in range(20):
            op = str(rng.choice(["replace", "insert", "delete", "flip", "duplicate"]))
            at = int(rng.integers(0, len(payload)))
            size = int(rng.integers(1, 17))
            noise = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            if op == "replace":
                new = payload[:at] + noise + payload[at + size :]
            elif op == "insert":
                new = payload[:at] + noise + payload[at:]
            elif op == "delete":
                new = payload[:at] + payload[at + size :]
            elif op == "flip":
                new = bytearray(payload)
                new[at] ^= 1 << int(rng.integers(0, 8))
                new = bytes(new)
            else:
                start = int(rng.integers(0, len(payload)))
                new = payload[:at] + payload[start : start + size] + payload[at:]
            if new != payload and new:
                break
        header_bytes = 12 if h.codec.startswith("icm-lic") else 0
        yield Case("splice", f"splice/{h.codec}/{index}", container.pack(h.header, new), ".icm",
                   "picture_or_error", h.codec,
                   f"{op} {1 if op == 'flip' else size} byte(s) at {at} of {len(payload)}",
                   h.picture, h.picture.shape,
                   risky=at < header_bytes)


def truncate_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary
                   ) -> Iterator[Case]:
    rng = _rng(seed, "truncate")
    cycle = itertools.cycle(codecs)
    kinds = itertools.cycle(["raw", "payload", "raw", "file"])
    for index in range(count):
        h, kind = honest(next(cycle)), next(kinds)
        whole = h.icm if kind == "file" else h.payload
        special = [1, 2, len(whole) // 2, len(whole) - 1, len(whole) - 4]
        cut = special[index % 5] if index < 10 else int(rng.integers(1, len(whole)))
        cut = min(max(cut, 1), len(whole) - 1)
        what = f"{kind} cut to {cut} of {len(whole)} bytes"
        lic = h.codec.startswith("icm-lic") and cut < 12
        if kind == "raw":
            yield Case("truncate", f"truncate/{h.codec}/raw/{index}", whole[:cut], h.raw_suffix,
                       "exact_or_error", h.codec, what, h.raw, h.raw.shape, risky=lic)
        elif kind == "payload":
            yield Case("truncate", f"truncate/{h.codec}/payload/{index}",
                       container.pack(h.header, whole[:cut]), ".icm", "exact_or_error", h.codec,
                       what, h.picture, h.picture.shape, risky=lic)
        else:
            yield Case("truncate", f"truncate/{h.codec}/file/{index}", whole[:cut], ".icm",
                       "error", h.codec, what, h.picture, h.picture.shape)


def _sized(h: Honest, width: int, height: int,
           coded: tuple[int, int] | None = None) -> tuple[str, np.ndarray | None, bool]:
    """(expectation, reference, risky) for a header claiming SIZE and, optionally, RESAMPLE.

    What an honest file with this header gives: the payload's picture cropped to the coded
    size it claims (when the payload holds that much, as the codec's padding does), resized
    to SIZE. A claim the payload cannot fill, or over the pixel limit, must be refused.
    """
    from icm.image import resize

    coded_w, coded_h = coded or (width, height)
    sides = (width, height, coded_w, coded_h)
    risky = max(width * height, coded_w * coded_h) > RISKY_PIXELS
    if not all(1 <= side < 2**32 for side in sides) or max(
            width * height, coded_w * coded_h) > MAX_PIXELS:
        return "error", None, risky
    raw_h, raw_w = h.raw.shape[:2]
    if coded_w > raw_w or coded_h > raw_h:
        return "error", None, risky
    picture = np.ascontiguousarray(h.raw[:coded_h, :coded_w])
    if (coded_w, coded_h) != (width, height):
        picture = resize(picture, width, height)
    return "exact_or_error", picture, risky


def size_lie_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary
                   ) -> Iterator[Case]:
    rng = _rng(seed, "size_lie")
    cycle = _codec_cycle(codecs, rng)
    huge = 2**32 - 1
    # (label, SIZE as (w, h) or raw bytes, RESAMPLE as (w, h, filter) or raw bytes or None)
    variants: list[tuple[str, object, object]] = [
        ("size 60000x60000", (60000, 60000), None),
        ("size 2**32-1 square", (huge, huge), None),
        ("size 0x0", (0, 0), None),
        ("size doubled", ("2w", "2h"), None),
        ("size halved", ("w/2", "h/2"), None),
        ("resample 2x up to 60000x60000", (60000, 60000), ("w", "h", "lanczos")),
        ("resample claims 2x the payload", ("w", "h"), ("2w", "2h", "lanczos")),
        ("size width+1", ("w+1", "h"), None),
        ("size height-1", ("w", "h-1"), None),
        ("size 1x1", (1, 1), None),
        ("size 2**32-1 x 1", (huge, 1), None),
        ("size 10001x10000 (over 100 MP)", (10001, 10000), None),
        ("resample 0x0", ("w", "h"), (0, 0, "lanczos")),
        ("resample 2x up (an honest upscale)", ("2w", "2h"), ("w", "h", "lanczos")),
        ("resample halves the payload", ("w", "h"), ("w/2", "h/2", "lanczos")),
        ("resample 2**32-1 x 1", ("w", "h"), (huge, 1, "lanczos")),
        ("resample to 1x1", (1, 1), ("w", "h", "lanczos")),
        ("size 2**32 (over the varint limit)", (2**32, "h"), None),
        ("size 2**64-1", (2**64 - 1, 2**64 - 1), None),
        ("size non-minimal varint", b"\xc0\x00\x30", None),
        ("size one varint", b"\x40", None),
        ("size three varints", b"\x40\x30\x01", None),
        ("size empty", b"", None),
        ("size 11-byte varint", b"\xff" * 10 + b"\x01\x30", None),
        ("resample empty filter", ("w", "h"), ("w", "h", "")),
        ("resample no filter, short", ("w", "h"), b"\x40"),
        ("size 0 x h", (0, "h"), None),
        ("size w x 0", ("w", 0), None),
    ]

    def side(value: object, h: Honest, axis: int) -> int:
        if isinstance(value, int):
            return value
        base = (h.header.width, h.header.height)[axis]
        return {"w": base, "h": base, "2w": 2 * base, "2h": 2 * base, "w/2": base // 2,
                "h/2": base // 2, "w+1": base + 1, "h-1": base - 1}[str(value)]

    for index in range(count):
        h = honest(next(cycle))
        if index < len(variants):
            label, size, resample = variants[index]
        else:  # random claims, log-uniform up to 2**20 a side, sometimes through RESAMPLE
            w, hh = (int(2 ** rng.uniform(0, 20)) for _ in range(2))
            if rng.random() < 0.5:
                label, size, resample = f"random size {w}x{hh}", (w, hh), None
            else:
                label, size, resample = f"random resample {w}x{hh}", ("w", "h"), (w, hh, "x")
        fields = fields_of(h.header)
        fields.pop(int(container.Field.RESAMPLE), None)
        expectation, reference, risky = "error", None, False  # malformed fields
        if isinstance(size, bytes):
            fields[int(container.Field.SIZE)] = size
        else:
            width, height = side(size[0], h, 0), side(size[1], h, 1)
            fields[int(container.Field.SIZE)] = varint(width) + varint(height)
        if isinstance(resample, bytes):
            fields[int(container.Field.RESAMPLE)] = resample
        elif resample is not None:
            coded = side(resample[0], h, 0), side(resample[1], h, 1)
            fields[int(container.Field.RESAMPLE)] = (varint(coded[0]) + varint(coded[1])
                                                     + str(resample[2]).encode())
            if not isinstance(size, bytes) and resample[2]:
                expectation, reference, risky = _sized(h, width, height, coded)
        elif not isinstance(size, bytes):
            expectation, reference, risky = _sized(h, width, height)
        shape = None if reference is None else reference.shape
        yield Case("size_lie", f"size_lie/{h.codec}/{index}", raw_icm(fields, h.payload),
                   ".icm", expectation, h.codec, label, reference, shape, risky)


def field_path_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary
                     ) -> Iterator[Case]:
    from icm.codecs import get_codec

    rng = _rng(seed, "field_path")
    cycle = _codec_cycle(codecs, rng)
    weighted = [c for c in codecs if "weights" in get_codec(c).options] or list(codecs)
    weighted_cycle = itertools.cycle(weighted)
    paths = [canary.absolute, canary.relative, "/etc/passwd", canary.token,
             f"{canary.token}.safetensors", f"~/../..{canary.folder}/weights"]
    # (label, field, value, expectation, codec chooser)
    variants: list[tuple[str, str | int, bytes | None, str, bool]] = []
    for path in paths:
        variants.append((f"OPTIONS weights={path}", "OPTIONS", f"weights={path}".encode(),
                         "exact_or_error", True))
    variants += [
        ("RESTORE model = the canary's name (a valid name)", "RESTORE",
         f"{canary.token};haze;0.5".encode(), "error", False),
        ("RESTORE model absolute path", "RESTORE", f"{canary.absolute};haze;0.5".encode(),
         "error", False),
        ("RESTORE model ../ path", "RESTORE", f"{canary.relative};haze;0.5".encode(),
         "error", False),
        ("RESTORE degradation ../ path", "RESTORE",
         f"restore-jpeg;{canary.relative};0.5".encode(), "error", False),
        ("RESTORE model = shipped name + /../", "RESTORE",
         f"restore-jpeg/../../{canary.token};haze;".encode(), "error", False),
        ("OPTIONS checkpoint/model/path keys", "OPTIONS",
         f"model={canary.absolute};checkpoint={canary.relative};path=/etc/passwd".encode(),
         "exact_or_error", False),
        ("TAGS vocabulary is a path", "TAGS",
         varint(len(canary.relative)) + canary.relative.encode() + b"\x01\x02",
         "exact_or_error", False),
        ("TAGS vocabulary /etc/passwd", "TAGS", b"\x0b/etc/passwd\x00", "exact_or_error", False),
        ("RECIPE names paths", "RECIPE",
         f"for=classify:{canary.absolute} weights={canary.relative}".encode(),
         "exact_or_error", False),
        ("RESAMPLE filter is a path", "RESAMPLE", None, "exact_or_error", False),
        ("unknown optional field 0x50 holds a path", 0x50, canary.absolute.encode(),
         "exact_or_error", False),
        ("unknown critical field 0x04 holds a path", 0x04, canary.absolute.encode(),
         "error", False),
        ("RESTORE model with NUL", "RESTORE", b"restore-jpeg\x00;haze;0.5", "error", False),
        ("RESTORE model 80 chars", "RESTORE", b"r" * 80 + b";haze;0.5", "error", False),
        ("OPTIONS weights=/dev/zero", "OPTIONS", b"weights=/dev/zero", "exact_or_error", True),
    ]
    for index in range(count):
        if index < len(variants):
            label, name, value, expectation, wants_weights = variants[index]
        else:
            path = paths[int(rng.integers(0, len(paths)))]
            key = str(rng.choice(["weights", "model", "file", "checkpoint", "restore"]))
            label, name, value = f"OPTIONS {key}={path}", "OPTIONS", f"{key}={path}".encode()
            expectation, wants_weights = "exact_or_error", key == "weights"
        h = honest(next(weighted_cycle if wants_weights else cycle))
        if name == "RESAMPLE":
            value = (varint(h.header.width) + varint(h.header.height)
                     + canary.relative.encode())
        if name == "OPTIONS" and h.header.options:  # keep the honest options too
            honest_options = fields_of(h.header)[int(container.Field.OPTIONS)]
            value = honest_options + b";" + value
        data = with_fields(h, {name: value})
        reference = h.picture
        yield Case("field_path", f"field_path/{h.codec}/{index}", data, ".icm", expectation,
                   h.codec, label, reference, reference.shape)


def format_lie_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary
                     ) -> Iterator[Case]:
    from icm.codecs import get_codec

    rng = _rng(seed, "format_lie")
    cycle = _codec_cycle(codecs, rng)
    # Pillow-backed codecs first: Pillow guesses a format from the bytes, not from the header
    pairs = [("jpeg", "webp"), ("webp", "jpeg"), ("jpeg2000", "jpeg"), ("heic", "avif"),
             ("avif", "heic"), ("icm-lic", "jpeg"), ("hevc", "avc"), ("hevc-kvazaar", "hevc"),
             ("jpeg", "jpeg2000"), ("avc", "hevc"), ("av1", "hevc"), ("vvc", "hevc"),
             ("hevc", "vvc"), ("jpeg2000", "jxl"), ("jxl", "jpeg"), ("jpeg", "icm-lic"),
             ("icm-lic-lite0", "icm-lic"), ("heic", "hevc"), ("hevc", "heic"), ("av1", "avif"),
             ("avif", "av1"), ("jpegli", "webp"), ("webp", "avif"), ("jpeg", "heic")]
    pairs = [(a, b) for a, b in pairs if a in codecs and b in codecs]
    others: list[tuple[str, dict[str, bytes | None]]] = [
        ("POINT names an unknown codec", {"POINT": b"nosuch@q1"}),
        ("POINT level out of range", {"POINT": None}),
        ("POINT codec in capitals", {"POINT": None}),
        ("FORMAT 4:4:4 8-bit", {"FORMAT": bytes([2, 8])}),
        ("FORMAT 4:0:0 16-bit", {"FORMAT": bytes([3, 16])}),
        ("FORMAT 4:2:0 10-bit", {"FORMAT": bytes([0, 10])}),
        ("FORMAT 4:2:2 1-bit", {"FORMAT": bytes([1, 1])}),
        ("FORMAT absent", {"FORMAT": None}),
        ("OPTIONS chroma=444;bit_depth=12", {"OPTIONS": b"chroma=444;bit_depth=12"}),
        ("OPTIONS unknown=1;preset=../../x", {"OPTIONS": b"unknown=1;preset=../../x"}),
        ("FORMAT chroma code 7", {"FORMAT": bytes([7, 8])}),
        ("FORMAT bit depth 0", {"FORMAT": bytes([0, 0])}),
    ]
    # (codec, Pillow format, as a raw file): a picture in a format no codec of icm writes
    foreign = [("jpeg", "PNG", False), ("webp", "BMP", False), ("jpeg2000", "TIFF", False),
               ("jpeg", "GIF", True), ("avif", "PPM", False), ("heic", "TGA", False),
               ("jpegli", "PCX", False), ("webp", "SGI", True), ("jpeg", "ICO", False),
               ("hevc", "PNG", False), ("icm-lic", "BMP", False), ("jxl", "PNG", True)]
    foreign = [item for item in foreign if item[0] in codecs]
    variants = [item for pair, other, alien in itertools.zip_longest(pairs, others, foreign)
                for item in (("pair", pair), ("other", other), ("foreign", alien))
                if item[1] is not None]
    for index in range(count):
        if index < len(variants):
            kind, what = variants[index]
        else:
            a, b = (str(x) for x in rng.choice(list(codecs), 2, replace=False))
            kind, what = "pair", (a, b)
        if kind == "pair":
            named, actual = what
            h = honest(actual)
            level = get_codec(named).typical_level
            point = f"{named}@{level}".encode()
            same = get_codec(named).raw_suffix == h.raw_suffix
            data = with_fields(h, {"POINT": point, "OPTIONS": None})
            yield Case("format_lie", f"format_lie/{named}<-{actual}/{index}", data, ".icm",
                       "picture_or_error" if same else "error", named,
                       f"POINT says {named}, payload is {actual}", h.picture, h.picture.shape)
            continue
        if kind == "foreign":
            named, image_format, raw = what
            h = honest(named)
            data, picture = _foreign_picture(image_format)
            suffix = h.raw_suffix if raw else ".icm"
            yield Case("format_lie", f"format_lie/{named}<-{image_format.lower()}/{index}",
                       data if raw else container.pack(h.header, data), suffix, "error",
                       named, f"{'raw ' + suffix if raw else 'POINT'} says {named}, "
                       f"payload is a {image_format} file", picture, picture.shape)
            continue
        label, changes = what
        h = honest(next(cycle))
        changes = dict(changes)
        if label == "POINT level out of range":
            changes["POINT"] = f"{h.codec}@q99999".encode()
        elif label == "POINT codec in capitals":
            changes["POINT"] = h.header.point.upper().encode()
        malformed = "code 7" in label or "depth 0" in label or "unknown codec" in label
        yield Case("format_lie", f"format_lie/{h.codec}/{index}", with_fields(h, changes),
                   ".icm", "error" if malformed else "exact_or_error", h.codec, label,
                   h.picture, h.picture.shape)


@functools.cache
def _foreign_picture(image_format: str) -> tuple[bytes, np.ndarray]:
    """:data:`PHOTO` as a file in ``image_format`` (Pillow's writer) and what it decodes to."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(photo()).save(buffer, format=image_format)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as image:
        return data, np.asarray(image.convert("RGB"))


def icm_lic_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary
                  ) -> Iterator[Case]:
    lic = [c for c in codecs if c.startswith("icm-lic")]
    if not lic:
        return
    rng = _rng(seed, "icm_lic")
    cycle = itertools.cycle(lic)
    layout = struct.Struct("<BBHHH4s")
    variants: list[tuple[str, dict, str, bool]] = [
        # (label, header edits, expectation, raw .lic file instead of .icm)
        ("rows 65535, cols 65535", {"rows": 65535, "cols": 65535}, "error", False),
        ("rows 0", {"rows": 0}, "error", False),
        ("rows + 1", {"rows": "+1"}, "error", False),
        ("quality map length past the end", {"map": "long"}, "error", False),
        ("quality map is a zlib bomb", {"map": "bomb"}, "error", False),
        ("flags claim a quality map", {"flags": 1}, "picture_or_error", False),
        ("raw .lic rows 65535, cols 65535", {"rows": 65535, "cols": 65535}, "error", True),
        ("cols - 1", {"cols": "-1"}, "error", False),
        ("model tag zeroed", {"tag": b"\0\0\0\0"}, "error", False),
        ("stream not a whole number of words", {"tail": b"\0"}, "error", False),
        ("cols 65535", {"cols": 65535}, "error", False),
        ("rows 0, cols 0", {"rows": 0, "cols": 0}, "error", False),
        ("raw .lic rows 0", {"rows": 0}, "error", True),
        ("rows 4096, cols 4096", {"rows": 4096, "cols": 4096}, "error", False),
        ("rows 1, cols 1", {"rows": 1, "cols": 1}, "error", False),
        ("quality 0", {"milli": 0}, "picture_or_error", False),
        ("quality 65.535", {"milli": 65535}, "picture_or_error", False),
        ("unknown flag bits", {"flags": 0x80}, "picture_or_error", False),
        ("version 2", {"version": 2}, "error", False),
        ("quality map of the wrong size", {"map": "short"}, "error", False),
        ("quality map of extreme offsets", {"map": "extreme"}, "picture_or_error", False),
        ("raw .lic rows + 1", {"rows": "+1"}, "picture_or_error", True),
    ]
    for index in range(count):
        h = honest(next(cycle))
        version, flags, milli, rows, cols, tag = layout.unpack_from(h.payload)
        if index < len(variants):
            label, edits, expectation, raw = variants[index]
        else:
            field_name = str(rng.choice(["rows", "cols", "milli", "flags"]))
            value = int(rng.integers(0, 2 ** (8 if field_name == "flags" else 16)))
            label, edits, raw = f"{field_name} {value}", {field_name: value}, False
            same = value == {"rows": rows, "cols": cols, "milli": milli, "flags": flags}[
                field_name]
            expectation = ("picture_or_error" if field_name in ("milli", "flags") or same
                           else "error")
        fields = {"version": version, "flags": flags, "milli": milli, "rows": rows,
                  "cols": cols, "tag": tag}
        for name in ("version", "flags", "milli", "rows", "cols", "tag"):
            if name in edits:
                value = edits[name]
                if value in ("+1", "-1"):
                    value = fields[name] + int(value)
                fields[name] = value
        body = h.payload[layout.size :]
        if "map" in edits:
            cells = rows * cols
            fields["flags"] |= 1
            packed = {
                "bomb": _zlib_bomb(),
                "short": zlib.compress(b"\1" * max(cells - 1, 0)),
                "long": zlib.compress(b"\1" * cells),
                "extreme": zlib.compress(bytes([0x80, 0x7F] * cells)[:cells]),
            }[edits["map"]]
            length = 65535 if edits["map"] == "long" else len(packed)
            body = struct.pack("<H", length) + packed + body
        body += edits.get("tail", b"")
        payload = layout.pack(fields["version"], fields["flags"], fields["milli"],
                              fields["rows"], fields["cols"], fields["tag"]) + body
        grown = fields["rows"] * fields["cols"] > rows * cols
        if raw:
            shape = (fields["rows"] * 16, fields["cols"] * 16, 3)
            yield Case("icm_lic", f"icm_lic/{h.codec}/raw/{index}", payload, ".lic",
                       expectation, h.codec, label, None, shape, risky=grown)
        else:
            yield Case("icm_lic", f"icm_lic/{h.codec}/{index}",
                       container.pack(h.header, payload), ".icm", expectation, h.codec, label,
                       h.picture, h.picture.shape, risky=grown)


def header_splice_cases(codecs: Sequence[str], count: int, seed: int, canary: Canary
                        ) -> Iterator[Case]:
    """Random bytes of the header's fields changed, CRC recomputed. The expectation follows
    from what the edited header says, when it parses: the honest payload under that SIZE,
    RESAMPLE and codec (other fields do not change pixels); a header that does not parse must
    be refused."""
    from icm.codecs import get_codec

    rng = _rng(seed, "header_splice")
    cycle = itertools.cycle(codecs)
    for index in range(count):
        h = honest(next(cycle))
        length, start = _read_varint(h.icm, len(container.MAGIC) + 1)
        edits = []
        data = bytearray(h.icm[:-4])
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(start, start + length))
            value = int(rng.integers(0, 256))
            edits.append(f"[{at}]={value:#04x}")
            data[at] = value
        data += zlib.crc32(data).to_bytes(4, "big")
        description = "header bytes " + " ".join(edits)
        try:
            header, _ = container.unpack(bytes(data))
        except IcmError:
            expectation, reference, risky = "error", None, False
        else:
            coded = (header.resample.width, header.resample.height) if header.resample else None
            expectation, reference, risky = _sized(h, header.width, header.height, coded)
            try:
                same = get_codec(header.codec).raw_suffix == h.raw_suffix
            except IcmError:
                same = False
            if header.codec != h.codec:
                expectation = "picture_or_error" if same and expectation != "error" else "error"
            if header.restore is not None:  # a restorer would change the pixels
                expectation = "picture_or_error" if expectation != "error" else "error"
            description += f" -> {header.point} {header.width}x{header.height}"
        shape = None if reference is None else reference.shape
        yield Case("header_splice", f"header_splice/{h.codec}/{index}", bytes(data), ".icm",
                   expectation, h.codec, description, reference, shape, risky)


@functools.cache
def _zlib_bomb() -> bytes:
    """A complete zlib stream under 64 KiB that inflates to 60 MiB."""
    return zlib.compress(bytes(60 << 20), 9)


FAMILIES: dict[str, Callable[..., Iterator[Case]]] = {
    "splice": splice_cases,
    "truncate": truncate_cases,
    "size_lie": size_lie_cases,
    "field_path": field_path_cases,
    "format_lie": format_lie_cases,
    "icm_lic": icm_lic_cases,
    "header_splice": header_splice_cases,
}


def cases(family: str, count: int, seed: int, canary: Canary,
          codecs: Sequence[str] | None = None) -> list[Case]:
    """``count`` cases of ``family`` (fewer for ``icm_lic`` when no learned codec encodes)."""
    return list(FAMILIES[family](fuzzed_codecs(codecs), count, seed, canary))


# -- judging an outcome -------------------------------------------------------------------------
@dataclass
class Result:
    family: str
    case_id: str
    codec: str
    description: str
    expectation: str
    outcome: str
    detail: str
    seconds: float
    runner: str

    @property
    def ok(self) -> bool:
        return self.outcome in EXPECTATIONS[self.expectation]

    def to_json(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def judge_picture(case: Case, picture: np.ndarray) -> tuple[str, str]:
    """exact_decode / concealed / wrong_picture for a decode that succeeded."""
    got = f"{picture.shape[1]}x{picture.shape[0]}"
    if case.reference is not None and picture.shape == case.reference.shape and \
            np.array_equal(picture, case.reference):
        return "exact_decode", f"decoded {got}, equal to the honest decode"
    if case.expectation == "picture_or_error" and case.shape is not None and \
            picture.shape == tuple(case.shape):
        return "concealed", f"decoded {got} with other pixels (damage concealed)"
    if case.reference is not None and picture.shape == case.reference.shape:
        diff = int(np.abs(picture.astype(int) - case.reference.astype(int)).max())
        return "wrong_picture", f"decoded {got}, max pixel difference {diff} from honest"
    want = "" if case.shape is None else f" (expected {case.shape[1]}x{case.shape[0]})"
    return "wrong_picture", f"decoded a {got} picture{want}"


def _escape(canary: Canary, hits: Sequence[str]) -> str | None:
    read = canary.read_since_reset()
    canary.reset()
    found = list(hits) + [f"read (atime) {path}" for path in read]
    return "; ".join(found[:3]) if found else None


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _limits(memory_bytes: int, seconds: float) -> Iterator[None]:
    """In-process guards: a data-segment limit above what is mapped now, and an alarm."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    try:
        status = Path("/proc/self/status").read_text()
        used = int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("VmData:"))) * 1024
        limit = used + memory_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (OSError, StopIteration, ValueError):
        pass

    def alarm(_signum, _frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def run_in_process(case: Case, canary: Canary, *, timeout: float = 60,
                   memory_gb: float = 2.5) -> Result:
    """Decode with :func:`icm.pipeline.decode_file` in this process: an :class:`IcmError` is the
    command line's exit 2 (clean when its message is one line naming the file), any other
    exception a traceback. Guarded by a data-size limit and an alarm, but a native crash
    takes this process with it: run ``risky`` cases with :func:`run_subprocess`."""
    from PIL import Image

    from icm.pipeline.files import decode_file

    source = canary.run_dir / f"case{case.suffix}"
    output = canary.run_dir / "out.png"
    source.write_bytes(case.data)
    output.unlink(missing_ok=True)
    canary.reset()
    here = Path.cwd()
    started = time.perf_counter()
    outcome, detail = "", ""
    with canary.watching() as hits:
        try:
            os.chdir(canary.run_dir)
            with _limits(int(memory_gb * 2**30), timeout):
                decode_file(source, output)
        except IcmError as exc:
            message = f"icm: error: {exc}"
            clean = "\n" not in message and source.name in message and len(message) < 400
            outcome, detail = ("clean_error" if clean else "messy_error"), message
            if not clean and source.name not in message:
                detail = f"does not name {source.name}: {message}"
            elif not clean:
                detail = f"{message.count(chr(10)) + 1} lines or over 400 characters: {message}"
        except _Timeout:
            outcome, detail = "hang", f"no result in {timeout:g} s"
        except MemoryError as exc:
            outcome, detail = "crash", f"MemoryError {exc}"
        except Exception as exc:
            outcome, detail = "traceback", f"{type(exc).__name__}: {_first_line(str(exc))}"
        finally:
            os.chdir(here)
    seconds = time.perf_counter() - started
    escape = _escape(canary, hits)
    if escape:
        outcome, detail = "path_escape", escape
    elif not outcome:
        with Image.open(output) as image:
            picture = np.asarray(image.convert("RGB"))
        outcome, detail = judge_picture(case, picture)
    return _result(case, outcome, detail, seconds, "in-process")


#: the child: a Python audit hook that logs watched path events, then icm's own entry point
_BOOTSTRAP = r"""
import os, sys
_fd = os.open(os.environ["FUZZ_AUDIT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
_watch = tuple(t for t in os.environ["FUZZ_WATCH"].split("\n") if t)
_events = ("open", "os.", "shutil.", "glob.", "pathlib.", "subprocess.", "ctypes.dlopen")
def _hook(event, args, _write=os.write, _fsdecode=os.fsdecode, _like=(str, bytes, os.PathLike)):
    if not event.startswith(_events):
        return
    for arg in args:
        if isinstance(arg, _like):
            try:
                text = _fsdecode(arg)
            except TypeError:
                continue
            if any(t in text for t in _watch):
                _write(_fd, (event + " " + text + "\n").encode("utf-8", "replace"))
sys.addaudithook(_hook)
sys.argv = ["icm", *sys.argv[1:]]
from icm.cli.main import run
run()
"""


def run_subprocess(case: Case, canary: Canary, *, timeout: float = 60,
                   memory_gb: float = 2.5, slot: int = 0) -> Result:
    """``icm decode case<suffix> -o out.png`` in a fresh interpreter (the console script's
    ``run()``), in the canary's run folder, with RLIMIT_DATA (heap and anonymous mappings;
    RLIMIT_AS would refuse torch's import, which reserves ~3 GB of address space), no core
    files, one thread per library, and a wall-clock timeout. ``slot`` separates concurrent
    runs (their own file names in the same folder)."""
    from PIL import Image

    source = canary.run_dir / f"case{slot}{case.suffix}"
    output = canary.run_dir / f"out{slot}.png"
    log = canary.workdir / f"audit{slot}.log"
    source.write_bytes(case.data)
    output.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    data_limit = int(memory_gb * 2**30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = {**os.environ, "FUZZ_AUDIT_LOG": str(log), "FUZZ_WATCH": "\n".join(canary.watch),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "COLUMNS": "200"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _BOOTSTRAP, "decode", source.name, "-o", output.name],
        cwd=canary.run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, preexec_fn=limit, start_new_session=True)
    try:
        _, err_bytes = process.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        _, err_bytes = process.communicate()
        hung = True
    seconds = time.perf_counter() - started
    err = err_bytes.decode("utf-8", "replace")
    lines = [line for line in err.splitlines() if line.strip()]
    hits = log.read_text().splitlines() if log.exists() else []
    escape = _escape(canary, hits)
    code = process.returncode
    if escape:
        outcome, detail = "path_escape", escape
    elif hung:
        outcome, detail = "hang", f"killed after {timeout:g} s"
    elif code < 0 or code not in (0, 1, 2) or "MemoryError" in err:
        why = f"signal {-code}" if code < 0 else f"exit {code}"
        outcome, detail = "crash", f"{why}: {_last_line(lines)}"
    elif "Traceback" in err or code == 1:
        outcome, detail = "traceback", f"exit {code}: {_last_line(lines)}"
    elif code == 2:
        clean = len(lines) == 1 and source.name in lines[0]
        outcome = "clean_error" if clean else "messy_error"
        if clean:
            detail = lines[0]
        elif len(lines) == 1:
            detail = f"one line, but it does not name {source.name}: {lines[0]}"
        else:
            detail = f"{len(lines)} stderr lines: " + " | ".join(lines[:4])
    else:
        try:
            with Image.open(output) as image:
                picture = np.asarray(image.convert("RGB"))
            outcome, detail = judge_picture(case, picture)
        except OSError as exc:
            outcome, detail = "wrong_picture", f"exit 0 but no readable output ({exc})"
        if lines:
            detail += f"; stderr: {_first_line(lines[0])}"
    return _result(case, outcome, detail, seconds, "subprocess")


def run_cases(todo: Sequence[Case], canary: Canary, *, in_process: bool = False,
              workers: int = 2, timeout: float = 60, memory_gb: float = 2.5,
              progress: Callable[[int, int], None] | None = None) -> list[Result]:
    """Every case, results in the cases' order.

    ``in_process``: ordinary cases with :func:`run_in_process`, one at a time; risky ones
    always with :func:`run_subprocess`. Subprocess cases that name the canary's paths
    (``field_path``) run one at a time, so that a read seen by its access time belongs to the
    case that ran; the others ``workers`` at a time, each in its own slot's file names.
    """
    results: dict[int, Result] = {}
    lock = threading.Lock()
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(max(workers, 1)):
        slots.put(slot)

    def record(index: int, result: Result) -> None:
        with lock:
            results[index] = result
            if progress:
                progress(len(results), len(todo))

    def in_subprocess(index: int) -> None:
        slot = slots.get()
        try:
            record(index, run_subprocess(todo[index], canary, timeout=timeout,
                                         memory_gb=memory_gb, slot=slot))
        finally:
            slots.put(slot)

    here = [i for i, case in enumerate(todo) if in_process and not case.risky]
    rest = sorted(set(range(len(todo))) - set(here))
    alone = [i for i in rest if todo[i].family == "field_path"]
    parallel = [i for i in rest if todo[i].family != "field_path"]
    for index in here:
        record(index, run_in_process(todo[index], canary, timeout=timeout,
                                     memory_gb=memory_gb))
    for index in alone:
        in_subprocess(index)
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        list(pool.map(in_subprocess, parallel))
    return [results[index] for index in range(len(todo))]


def _result(case: Case, outcome: str, detail: str, seconds: float, runner: str) -> Result:
    return Result(case.family, case.case_id, case.codec, case.description, case.expectation,
                  outcome, _first_line(detail, 300), round(seconds, 3), runner)


def _first_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _last_line(lines: Sequence[str]) -> str:
    return _first_line(lines[-1]) if lines else "(no stderr)"


def summary_table(results: Sequence[Result]) -> str:
    """Family x outcome counts as a fixed-width table, failures per family last."""
    families = list(dict.fromkeys(r.family for r in results))
    used = [o for o in OUTCOMES if any(r.outcome == o for r in results)]
    width = max([len("family"), *map(len, families)])
    head = f"{'family':{width}} " + " ".join(f"{o:>{max(len(o), 4)}}" for o in used)
    head += f" {'cases':>6} {'FAILED':>6}"
    rows = [head, "-" * len(head)]
    for family in [*families, "total"]:
        mine = [r for r in results if family in ("total", r.family)]
        cells = " ".join(f"{sum(r.outcome == o for r in mine):>{max(len(o), 4)}}" for o in used)
        failed = sum(not r.ok for r in mine)
        rows.append(f"{family:{width}} {cells} {len(mine):>6} {failed:>6}")
    return "\n".join(rows)


def failures_text(results: Sequence[Result], limit: int = 0) -> str:
    bad = [r for r in results if not r.ok]
    shown = bad[:limit] if limit else bad
    lines = [f"{r.case_id} [{r.description}] expected {r.expectation}, got {r.outcome}: "
             f"{r.detail}" for r in shown]
    if len(shown) < len(bad):
        lines.append(f"... and {len(bad) - len(shown)} more")
    return "\n".join(lines)


def results_json(results: Sequence[Result], **extra: object) -> bytes:
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        counts.setdefault(r.family, {}).setdefault(r.outcome, 0)
        counts[r.family][r.outcome] += 1
    report = {**extra, "counts": counts, "failed": sum(not r.ok for r in results),
              "cases": len(results), "results": [r.to_json() for r in results]}
    buffer = io.StringIO()
    json.dump(report, buffer, indent=1)
    return buffer.getvalue().encode()

