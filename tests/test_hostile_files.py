"""Hostile payloads: whatever a decoder library raises is one line, and a header's size must
be the picture's (issue "Hostile files and hostile disks", first part)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tests.test_cli import assert_one_line_error, icm

from icm import container
from icm.codecs import get_codec, list_codecs
from icm.errors import CorruptContainerError, IcmError, UndecodableError

SPLICES = 24


def available(name: str) -> bool:
    return get_codec(name).unavailable_reason() is None


def splices(data: bytes, count: int, seed: int = 0) -> list[bytes]:
    """``count`` copies of ``data`` with 8 random bytes overwritten, every fourth truncated."""
    rng = np.random.default_rng(seed)
    hostile = []
    for index in range(count):
        spliced = bytearray(data)
        at = int(rng.integers(0, len(spliced)))
        noise = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        spliced[at:at + 8] = noise[: len(spliced[at:at + 8])]
        if index % 4 == 0:
            spliced = spliced[: int(rng.integers(1, len(spliced)))]
        hostile.append(bytes(spliced))
    return hostile


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "jpeg2000", "heic", "hevc", "av1"])
def test_spliced_payloads_decode_or_fail_in_one_line(name, photo):
    if not available(name):
        pytest.skip(f"{name} unavailable here")
    codec = get_codec(name)
    bitstream = codec.encode(photo, codec.typical_level)
    outcomes = {"error": 0, "picture": 0}
    for data in splices(bitstream.data, SPLICES):
        try:
            picture = codec.decode(replace(bitstream, data=data))
        except IcmError as error:
            assert "\n" not in str(error) and len(str(error)) < 250
            outcomes["error"] += 1
        else:  # a decoder may conceal damage; the picture must still be the header's size
            assert picture.shape == photo.shape and picture.dtype == np.uint8
            outcomes["picture"] += 1
    assert sum(outcomes.values()) == SPLICES


def test_a_one_byte_jpeg_is_an_undecodable_error():
    with pytest.raises(UndecodableError, match="jpeg payload does not decode"):
        get_codec("jpeg").decode_raw(b"\xff")


@pytest.mark.parametrize("factor", [2, 0.5])
def test_a_header_size_that_is_not_the_pictures_is_refused(photo, factor):
    codec = get_codec("jpeg")
    bitstream = codec.encode(photo, "q50")
    lying = replace(bitstream, width=int(bitstream.width * factor))
    with pytest.raises(UndecodableError, match=r"not the \d+x\d+ its header gives"):
        codec.decode(lying)


def test_padding_the_encoder_adds_is_not_a_lie(photo):
    padded = ("hevc", "hevc-kvazaar", "avc", "av1", "av1-aom", "heic", "vvc")
    for name in [n for n in padded if n in list_codecs() and available(n)]:
        codec = get_codec(name)
        odd = np.ascontiguousarray(photo[:45, :67])
        assert codec.decode(codec.encode(odd, codec.typical_level)).shape == odd.shape


def test_a_size_lie_in_an_icm_file_is_one_line_on_the_command_line(monkeypatch, capsys, photo,
                                                                  tmp_path):
    bitstream = get_codec("jpeg").encode(photo, "q50")
    header = container.header_for(bitstream)
    lying = replace(header, width=header.width * 3)
    path = tmp_path / "lie.icm"
    path.write_bytes(container.pack(lying, bitstream.data))  # CRC-valid: recomputed
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    assert_one_line_error(code, err, "lie.icm", "its header gives")
    assert not (tmp_path / "out.png").exists()


def _packed_with_field(header, payload: bytes, tag: int, value: bytes) -> bytes:
    """A CRC-valid ``.icm`` whose header carries ``tag`` = ``value`` verbatim (an attacker
    recomputes the CRC)."""
    import zlib

    from icm.container.format import MAGIC, VERSION, _encode_fields, _varint

    fields = dict(_encode_fields(header))
    fields[tag] = value
    body = b"".join(bytes([t]) + _varint(len(v)) + v for t, v in sorted(fields.items()))
    out = bytearray(MAGIC) + bytes([VERSION]) + _varint(len(body)) + body
    out += _varint(len(payload)) + payload
    return bytes(out + zlib.crc32(out).to_bytes(4, "big"))


@pytest.mark.parametrize("model", ["../../tmp/evil", "/etc/x", "Restore", "a b", "x" * 80])
def test_a_restore_field_naming_a_path_is_refused_before_any_lookup(photo, model, monkeypatch,
                                                                    capsys, tmp_path):
    bitstream = get_codec("jpeg").encode(photo, "q50")
    data = _packed_with_field(container.header_for(bitstream), bitstream.data,
                              container.Field.RESTORE, f"{model};haze;0.5".encode())
    with pytest.raises(CorruptContainerError, match="not a name"):
        container.unpack(data)
    path = tmp_path / "evil.icm"
    path.write_bytes(data)
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    assert_one_line_error(code, err, "evil.icm", "not a name")


def test_the_restorer_looks_names_up_among_shipped_models_only(photo):
    pytest.importorskip("torch")
    from icm.restore.api import RestoreModelError, restore_decoded

    with pytest.raises(RestoreModelError, match="ships with this icm"):
        restore_decoded(photo, "restore-../../x", "haze", 0.5)
