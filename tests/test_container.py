"""The .icm container: exact round trips, a small header, and rejection of every damaged file."""

from __future__ import annotations

import contextlib
import random
import re
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icm.codecs.base import Bitstream
from icm.container import (
    MAGIC,
    VERSION,
    Field,
    Header,
    Resample,
    Tags,
    bitstream_from,
    header_for,
    is_icm,
    pack,
    read_icm,
    unpack,
    write_icm,
)
from icm.container.format import _read_varint, _varint
from icm.errors import CorruptContainerError, IcmError

PLAIN = Header("hevc@qp37", 768, 512)
FULL = Header(
    "hevc-kvazaar@qp32",
    4000,
    3000,
    chroma="444",
    bit_depth=10,
    options={"preset": "slow", "delta_qp": "8x6 crc32=0badf00d"},
    resample=Resample(2000, 1500, "lanczos"),
    tags=Tags("coco-80", (0, 17, 79, 300)),
    extra={0x7F: b"future", 0xFF: b""},
)
SAMPLE = random.Random(20240611).randbytes(40)

optional_fields = {
    "format": {"chroma": "400", "bit_depth": 12},
    "options": {"options": {"tune": "psnr", "x": ""}},
    "resample": {"resample": Resample(384, 256, "area")},
    "tags": {"tags": Tags("coco-80", ())},
    "extra": {"extra": {0x40 + 50: b"\x00\x01\x02"}},
}


def frame(body: bytes, payload: bytes = b"xyz", *, version: int = VERSION) -> bytes:
    """A file around a raw header ``body``, with correct lengths and CRC."""
    data = MAGIC + bytes([version]) + _varint(len(body)) + body + _varint(len(payload)) + payload
    return data + zlib.crc32(data).to_bytes(4, "big")


def field_bytes(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _varint(len(value)) + value


def problem_of(data: bytes) -> str:
    with pytest.raises(CorruptContainerError) as caught:
        unpack(data, "x.icm")
    assert caught.value.path == "x.icm"
    assert "\n" not in str(caught.value)
    return caught.value.problem


# -- round trips and size --------------------------------------------------------------------
def test_plain_hevc_header_costs_29_bytes():
    payload = bytes(range(256)) * 3 + bytes(232)
    data = pack(PLAIN, payload)
    assert len(data) - len(payload) == 29
    assert unpack(data) == (PLAIN, payload)


@pytest.mark.parametrize("name", [*optional_fields, "none", "all"])
def test_round_trip_with_each_optional_field(name):
    if name == "none":
        header = PLAIN
    elif name == "all":
        header = FULL
    else:
        header = Header("jpeg@q30", 33, 1, **optional_fields[name])
    data = pack(header, SAMPLE)
    assert unpack(data) == (header, SAMPLE)
    assert pack(*unpack(data)) == data  # re-packing is byte-identical
    assert is_icm(data)


def test_full_header_fields_survive():
    header, payload = unpack(pack(FULL, b""))
    assert payload == b""
    assert (header.codec, header.level) == ("hevc-kvazaar", "qp32")
    assert list(header.options.items()) == [("preset", "slow"), ("delta_qp", "8x6 crc32=0badf00d")]
    assert header.resample == Resample(2000, 1500, "lanczos")
    assert header.coded_size == (2000, 1500)
    assert header.tags == Tags("coco-80", (0, 17, 79, 300))
    assert dict(header.extra) == {0x7F: b"future", 0xFF: b""}
    assert hash(header) == hash(FULL)


def test_default_format_and_no_options_cost_nothing():
    assert pack(Header("jpeg@q30", 8, 8, chroma="420", bit_depth=8, options={}), b"") == pack(
        Header("jpeg@q30", 8, 8), b""
    )


def test_header_is_read_only():
    with pytest.raises(TypeError):
        FULL.options["preset"] = "fast"  # type: ignore[index]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"point": "hevc"},
        {"point": "@qp37"},
        {"point": "hevc@"},
        {"width": 0},
        {"height": -1},
        {"width": True},
        {"chroma": "411"},
        {"bit_depth": 0},
        {"bit_depth": 33},
        {"options": {"a=b": "c"}},
        {"options": {"a": "b;c"}},
        {"options": {"": "c"}},
        {"extra": {0x41: b""}},  # OPTIONS is a known tag
        {"extra": {0x20: b""}},  # critical tags cannot be carried blind
        {"extra": {0x100: b""}},
        {"point": "a@\udc80"},
        {"point": "hevc@qp37\n"},
        {"point": "hevc @qp37"},
        {"options": {"a": "line\nbreak"}},
    ],
)
def test_invalid_headers_are_refused_at_construction(kwargs):
    base = {"point": "hevc@qp37", "width": 8, "height": 8}
    with pytest.raises(ValueError):
        Header(**{**base, **kwargs})


def test_invalid_resample_and_tags():
    with pytest.raises(ValueError):
        Resample(0, 5, "area")
    with pytest.raises(ValueError):
        Resample(5, 5, "")
    with pytest.raises(ValueError):
        Tags("coco", (-1,))
    with pytest.raises(ValueError):
        Tags("", (1,))


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(number):
    encoded = _varint(number)
    assert _read_varint(encoded, 0, len(encoded)) == (number, len(encoded))


# -- exact error messages --------------------------------------------------------------------
def test_error_messages():
    data = pack(PLAIN, SAMPLE)
    assert problem_of(b"") == "empty file, not an .icm file"
    assert problem_of(b"GIF89a" + data) == "not an .icm file (bad magic)"
    assert "bad magic; was it transferred as text?" in problem_of(b"\xc2" + data[1:])
    assert problem_of(data[:4] + b"\x02" + data[5:]) == "unsupported .icm format version 2"
    assert (
        problem_of(data[:-1]) == f"truncated: expected {len(data)} bytes, file has {len(data) - 1}"
    )
    assert problem_of(data[:3]) == "truncated: expected at least 11 bytes, file has 3"
    flipped = bytearray(data)
    flipped[-10] ^= 0x20
    assert problem_of(bytes(flipped)) == "CRC mismatch: file is corrupted"
    assert problem_of(data + b"\n\n") == "2 trailing bytes after the end"


def test_unknown_critical_field_needs_newer_icm():
    body = field_bytes(1, b"hevc@qp37") + field_bytes(2, b"\x08\x08") + field_bytes(0x3F, b"new")
    assert problem_of(frame(body)) == "needs a newer icm: unknown critical field 0x3f"


def test_unknown_optional_field_is_kept():
    body = field_bytes(1, b"hevc@qp37") + field_bytes(2, b"\x08\x08") + field_bytes(0x99, b"new")
    data = frame(body)
    header, payload = unpack(data)
    assert (header, payload) == (Header("hevc@qp37", 8, 8, extra={0x99: b"new"}), b"xyz")
    assert pack(header, payload) == data


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "missing POINT field"),
        (field_bytes(1, b"hevc@qp37"), "missing SIZE field"),
        (field_bytes(2, b"\x08\x08") + field_bytes(1, b"a@b"), "field 0x01 after 0x02"),
        (field_bytes(1, b"a@b") + field_bytes(1, b"a@b"), "field 0x01 after 0x01"),
        (field_bytes(0, b""), "field tag 0x00 is reserved"),
        (b"\x01\x09hevc", "field 0x01 runs past the header"),
        (field_bytes(1, b"\xff@b") + field_bytes(2, b"\x08\x08"), "POINT is not UTF-8"),
        (field_bytes(1, b"ab") + field_bytes(2, b"\x08\x08"), "is not <codec>@<level>"),
        (field_bytes(1, b"a@b") + field_bytes(2, b"\x08"), "SIZE is too short"),
        (field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08\x08"), "SIZE has 1 bytes too many"),
        (field_bytes(1, b"a@b") + field_bytes(2, b"\x88\x00\x08"), "over-long varint"),
        (field_bytes(1, b"a@b") + field_bytes(2, b"\x00\x08"), "width 0 is not"),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(0x40, b"\x07\x08"),
            "unknown chroma code 7",
        ),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(0x40, b"\x00"),
            "FORMAT is 1 bytes, not 2",
        ),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(0x41, b"a=1;a=2"),
            "OPTIONS repeats 'a'",
        ),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(0x41, b"a"),
            "OPTIONS entry 'a' is not key=value",
        ),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(0x42, b"\x05ab"),
            "TAGS vocabulary runs past the field",
        ),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(0x42, b"\x01a\x80"),
            "TAGS ends inside a label id",
        ),
        (
            field_bytes(1, b"a@b") + field_bytes(2, b"\x08\x08") + field_bytes(3, b"\x04\x04"),
            "resample filter is empty",
        ),
    ],
)
def test_malformed_headers(body, problem):
    message = problem_of(frame(body))
    assert message.startswith("malformed header: ")
    assert problem in message


# -- damage of every kind is rejected --------------------------------------------------------
def test_every_single_byte_corruption_is_rejected_exhaustively():
    data = pack(FULL, SAMPLE)
    assert len(data) == 159
    for position in range(len(data)):
        for xor in range(1, 256):
            damaged = bytearray(data)
            damaged[position] ^= xor
            with pytest.raises(CorruptContainerError):
                unpack(bytes(damaged))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_single_byte_corruption_of_a_larger_file_is_rejected(draw):
    payload = random.Random(7).randbytes(1000)
    data = pack(PLAIN, payload)
    position = draw.draw(st.integers(0, len(data) - 1), label="position")
    xor = draw.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(data)
    damaged[position] ^= xor
    with pytest.raises(CorruptContainerError):
        unpack(bytes(damaged))


@pytest.mark.parametrize("header", [PLAIN, FULL], ids=["plain", "full"])
def test_every_truncation_is_rejected(header):
    data = pack(header, SAMPLE)
    for length in range(len(data)):
        with pytest.raises(CorruptContainerError):
            unpack(data[:length])


@given(st.binary(min_size=1, max_size=64))
def test_appended_bytes_are_rejected(tail):
    with pytest.raises(CorruptContainerError, match="trailing bytes after the end"):
        unpack(pack(PLAIN, SAMPLE) + tail)


def _only_container_errors(data: bytes) -> None:
    with contextlib.suppress(CorruptContainerError):
        unpack(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_container_errors(data):
    _only_container_errors(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_after_magic_raise_only_container_errors(rest):
    _only_container_errors(MAGIC + bytes([VERSION]) + rest)


tags = st.one_of(st.sampled_from([int(tag) for tag in Field]), st.integers(0, 255))
values = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"hevc@qp37", b"\x08\x08", b"\x02\x0a", b"a=1;b=2", b"\x03abc\x01\x7f"]),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(tags, values), max_size=8), st.binary(max_size=16))
def test_random_headers_with_valid_crc_raise_only_container_errors(fields, payload):
    """CRC rejects random bytes early; these reach the field parser with the CRC intact."""
    body = b"".join(field_bytes(tag, value) for tag, value in sorted(dict(fields).items()))
    try:
        header, got = unpack(frame(body, payload))
    except CorruptContainerError:
        return
    assert got == payload
    assert unpack(pack(header, got)) == (header, got)


# -- Bitstream <-> Header --------------------------------------------------------------------
def test_header_for_keeps_only_chosen_options():
    bitstream = Bitstream(
        data=b"\x00\x00\x01",
        codec="hevc",
        level="qp37",
        width=100,
        height=60,
        chroma="444",
        params={"qp": 37.0, "chroma": "444", "preset": "medium", "fast": True, "crf": 1.5},
    )
    header = header_for(bitstream, defaults={"chroma": "420", "preset": "medium", "fast": False})
    assert header == Header(
        "hevc@qp37", 100, 60, chroma="444", options={"fast": "true", "crf": "1.5"}
    )
    back = bitstream_from(header, bitstream.data)
    assert (back.point, back.width, back.height, back.chroma, back.data) == (
        "hevc@qp37",
        100,
        60,
        "444",
        b"\x00\x00\x01",
    )
    assert back.params == {"fast": "true", "crf": "1.5"}


def test_header_for_explicit_knob_key_and_float_level():
    bitstream = Bitstream(b"j", "jxl", "d1.5", 4, 4, params={"d": 1.5, "effort": 7})
    assert header_for(bitstream).options == {"effort": "7"}
    assert header_for(bitstream, knob_key="effort").options == {"d": "1.5"}


def test_header_for_resampled_bitstream():
    bitstream = Bitstream(b"x", "hevc", "qp30", 384, 256)
    resample = Resample(384, 256, "lanczos")
    header = header_for(
        bitstream, resample=resample, original_size=(768, 512), tags=Tags("v", (3,))
    )
    assert (header.width, header.height, header.coded_size) == (768, 512, (384, 256))
    assert (bitstream_from(header, b"x").width, bitstream_from(header, b"x").height) == (384, 256)
    with pytest.raises(ValueError):
        header_for(bitstream, resample=resample)
    with pytest.raises(ValueError):
        header_for(bitstream, resample=Resample(100, 100, "area"), original_size=(768, 512))
    with pytest.raises(ValueError):
        header_for(bitstream, original_size=(768, 512))


def test_real_jpeg_through_the_container(tmp_path):
    from icm.codecs.jpeg import JpegCodec

    codec = JpegCodec()
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (21, 35, 3), dtype=np.uint8)
    bitstream = codec.encode(image, "q40", chroma="444")
    defaults = {name: option.default for name, option in codec.options.items()}
    header = header_for(bitstream, defaults=defaults)
    assert header.options == {} and header.chroma == "444"
    size = write_icm(tmp_path / "a.icm", header, bitstream.data)
    assert size == (tmp_path / "a.icm").stat().st_size
    assert size - len(bitstream.data) == 30  # 29 + the FORMAT field for 4:4:4, - 3 for the point
    decoded = codec.decode(bitstream_from(*read_icm(tmp_path / "a.icm")))
    np.testing.assert_array_equal(decoded, codec.decode(bitstream))


# -- files -----------------------------------------------------------------------------------
def test_write_then_read(tmp_path):
    path = tmp_path / "sub" / "img.icm"
    written = write_icm(path, FULL, SAMPLE)
    assert written == path.stat().st_size == len(pack(FULL, SAMPLE))
    assert read_icm(path) == (FULL, SAMPLE)
    assert sorted(p.name for p in path.parent.iterdir()) == ["img.icm"]  # no temp file left


def test_write_replaces_atomically(tmp_path):
    path = tmp_path / "img.icm"
    write_icm(path, PLAIN, b"old")
    write_icm(path, PLAIN, b"new payload")
    assert read_icm(path)[1] == b"new payload"
    assert [p.name for p in tmp_path.iterdir()] == ["img.icm"]


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "img.icm"
    with pytest.raises(TypeError):
        write_icm(path, "not a header", b"x")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.icm"
    with pytest.raises(IcmError) as caught:
        read_icm(path)
    assert caught.value.path == str(path)
    assert str(caught.value) == f"{path}: file not found"


def test_empty_file_names_the_path(tmp_path):
    path = tmp_path / "empty.icm"
    path.write_bytes(b"")
    with pytest.raises(IcmError) as caught:
        read_icm(path)
    assert str(caught.value) == f"{path}: empty file"


def test_directory_and_corrupt_file_name_the_path(tmp_path):
    with pytest.raises(IcmError, match="is a folder"):
        read_icm(tmp_path)
    path = tmp_path / "bad.icm"
    path.write_bytes(pack(PLAIN, SAMPLE)[:-3])
    with pytest.raises(
        CorruptContainerError, match="^" + re.escape(f"{path}: truncated: expected")
    ):
        read_icm(path)
