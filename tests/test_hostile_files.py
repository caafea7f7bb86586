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
from icm.limits import DecodeSide
from icm.pipeline import decode_bytes

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
    with pytest.raises(UndecodableError, match="not a readable JPEG image"):
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


# -- the decoder checks before it allocates --------------------------------------------------
@pytest.mark.parametrize("size", [(60000, 60000), (2**32 - 1, 1), (2**32 - 1, 2**32 - 1)])
def test_a_header_over_the_pixel_limit_is_refused_before_decoding(size, photo, monkeypatch,
                                                                  capsys, tmp_path):
    bitstream = get_codec("jpeg").encode(photo, "q50")
    header = replace(container.header_for(bitstream), width=size[0], height=size[1])
    path = tmp_path / "huge.icm"
    path.write_bytes(container.pack(header, bitstream.data))  # 661 bytes asking for gigabytes
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    assert_one_line_error(code, err, "huge.icm", "over the decode pixel limit")
    assert not (tmp_path / "out.png").exists()


def test_a_resample_size_over_the_limit_is_refused(photo, monkeypatch, capsys, tmp_path):
    bitstream = get_codec("jpeg").encode(photo, "q50")
    header = replace(container.header_for(bitstream),
                     resample=container.Resample(50000, 50000, "lanczos"))
    path = tmp_path / "resample.icm"
    path.write_bytes(container.pack(header, bitstream.data))
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    assert_one_line_error(code, err, "resample.icm", "over the decode pixel limit")


def test_the_pixel_limit_is_the_decoding_sides_to_set(photo, monkeypatch, capsys, tmp_path):
    path = tmp_path / "photo.icm"
    path.write_bytes(container.pack(*_honest(photo)))
    pixels = photo.shape[0] * photo.shape[1]
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "a.png",
                       "--max-pixels", pixels - 1)
    assert_one_line_error(code, err, "photo.icm", "--max-pixels")
    code, _, _ = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "b.png",
                     "--max-pixels", pixels)
    assert code == 0 and (tmp_path / "b.png").is_file()


def _honest(photo):
    bitstream = get_codec("jpeg").encode(photo, "q50")
    return container.header_for(bitstream), bitstream.data


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "jpeg2000", "heic", "hevc", "avc",
                                  "av1", "vvc",
                                  "icm-lic"])
def test_a_payload_declaring_more_pixels_than_allowed_is_refused_from_its_header(name, photo):
    """Each library reads the size its stream declares before decoding: a raw stream over the
    decode side's limit is refused without decoding (the limit here is one pixel short)."""
    if name not in list_codecs() or not available(name):
        pytest.skip(f"{name} unavailable here")
    codec = get_codec(name)
    data = codec.encode(photo, codec.typical_level).data
    decoded = codec.decode_raw(data)
    tight = DecodeSide(max_pixels=decoded.shape[0] * decoded.shape[1] - 1)
    with pytest.raises(UndecodableError, match="pixel limit") as info:
        codec.decode_raw(data, tight)
    assert "\n" not in str(info.value)


def test_an_icm_lic_stream_whose_grid_lies_is_refused_before_decoding(photo):
    """The 12-byte header's rows and columns must make the header's picture (within the
    16-px padding): a 560-byte stream cannot ask for a 1 GB latent any more."""
    codec = get_codec("icm-lic")
    if not available("icm-lic"):
        pytest.skip("icm-lic unavailable here")
    import struct

    from icm.learned.codec import _HEADER

    bitstream = codec.encode(photo, "q3")
    fields = list(_HEADER.unpack_from(bitstream.data))
    for rows, cols in [(60000, 60000), (fields[3] * 2, fields[4]), (0, 0), (1, 1)]:
        fields[3], fields[4] = rows, cols
        lying = _HEADER.pack(*fields) + bitstream.data[_HEADER.size:]
        with pytest.raises((UndecodableError, CorruptContainerError)):
            codec.decode(replace(bitstream, data=lying))
    assert struct.calcsize("<BBHHH4s") == _HEADER.size


# -- truncation is an error for every codec ---------------------------------------------------
@pytest.mark.parametrize("name", ["hevc", "hevc-kvazaar", "avc", "av1", "vvc", "jpeg", "webp",
                                  "avif", "jpeg2000", "heic", "jxl", "icm-lic"])
def test_every_truncation_of_a_raw_stream_is_an_error(name, photo):
    """Cuts from a third of the stream to one byte short: none may decode to a partial
    picture (FFmpeg's HEVC decoder conceals a cut slice silently; icm's probe catches it).
    Dropping only the last byte may leave every bit the picture needs (it can hold just the
    stop bit): then the decode must be exact."""
    if name not in list_codecs() or not available(name):
        pytest.skip(f"{name} unavailable here")
    codec = get_codec(name)
    data = codec.encode(photo, codec.typical_level).data
    whole = codec.decode_raw(data)
    cuts = sorted({*np.linspace(len(data) // 3, len(data) - 1, 12).astype(int), len(data) - 1})
    for cut in cuts:
        try:
            picture = codec.decode_raw(data[:cut])
        except IcmError as error:
            assert "\n" not in str(error)
        else:
            assert np.array_equal(picture, whole), f"{name} cut at {cut}/{len(data)} bytes"


def test_a_truncated_payload_in_a_crc_valid_icm_is_an_error(photo, monkeypatch, capsys, tmp_path):
    if not available("hevc"):
        pytest.skip("hevc unavailable here")
    bitstream = get_codec("hevc").encode(photo, "qp32")
    cut = bitstream.data[: len(bitstream.data) * 2 // 3]
    path = tmp_path / "cut.icm"
    path.write_bytes(container.pack(container.header_for(bitstream), cut))
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    assert_one_line_error(code, err, "cut.icm", "truncated")


# -- nothing in a file names a path -----------------------------------------------------------
def test_a_weights_path_in_options_is_never_read(photo, monkeypatch, tmp_path):
    """An OPTIONS ``weights=PATH`` (an older icm wrote one; an attacker can) is dropped on
    reading: the stream is decoded with the model its digest names, and the path is never
    opened whether or not it exists."""
    if not available("icm-lic"):
        pytest.skip("icm-lic unavailable here")
    codec = get_codec("icm-lic")
    bitstream = codec.encode(photo, "q3")
    canary = tmp_path / "canary.safetensors"
    canary.write_bytes(b"not a model")
    opened = []
    real_open = open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", watching_open)
    honest = container.header_for(bitstream)
    for target in (canary, tmp_path / "missing.safetensors"):
        header = replace(honest, options={"weights": str(target)})
        decoded = decode_bytes(container.pack(header, bitstream.data))
        assert np.array_equal(decoded, codec.decode(bitstream))
    assert not [name for name in opened if "canary" in name or "missing" in name]


def test_local_weights_never_reach_the_file_and_decode_from_the_command_line(
        photo, monkeypatch, capsys, tmp_path, png):
    """``-O weights=FILE`` is the encoding machine's path: the file carries only the model's
    digest, and the decoding side names the model with ``--weights``."""
    if not available("icm-lic"):
        pytest.skip("icm-lic unavailable here")
    torch = pytest.importorskip("torch")
    from tests.test_learned import TINY

    from icm.learned.files import save_model
    from icm.learned.network import LicNet

    torch.manual_seed(3)
    model = save_model(tmp_path / "models", LicNet(TINY).eval(), {})
    coded = tmp_path / "mine.icm"
    code, _, _ = icm(monkeypatch, capsys, "encode", png, "-c", "icm-lic@q3", "-O",
                     f"weights={model}", "-o", coded)
    assert code == 0
    header, _ = container.unpack(coded.read_bytes())
    assert "weights" not in header.options and str(model) not in coded.read_bytes().decode(
        "latin-1")
    code, _, err = icm(monkeypatch, capsys, "decode", coded, "-o", tmp_path / "a.png")
    assert_one_line_error(code, err, "mine.icm", "--weights")
    code, _, _ = icm(monkeypatch, capsys, "decode", coded, "-o", tmp_path / "b.png",
                     "--weights", model)
    assert code == 0 and (tmp_path / "b.png").is_file()


# -- the payload must be what FORMAT says -----------------------------------------------------
REPORTS_SAMPLING = ("jpeg", "jpegli", "hevc", "hevc-kvazaar", "hevc-crf", "avc", "avc-crf", "av1",
                    "av1-aom", "vvc")


def _sampling_choices(codec) -> list[dict]:
    """Every chroma and bit-depth choice the codec offers, one option at a time."""
    choices = [{}]
    for name in ("chroma", "bit_depth"):
        option = codec.options.get(name)
        choices += [{name: value} for value in (option.choices if option else ())
                    if value != option.default]
    return choices


@pytest.mark.parametrize("name", REPORTS_SAMPLING)
def test_a_format_field_that_is_not_the_payloads_is_refused(name, photo):
    if name not in list_codecs() or not available(name):
        pytest.skip(f"{name} unavailable here")
    codec = get_codec(name)
    small = np.ascontiguousarray(photo[:64, :96])
    for options in _sampling_choices(codec):
        bitstream = codec.encode(small, codec.typical_level, **options)
        assert codec.decode(bitstream).shape == small.shape  # honest: FORMAT is the payload's
        lie = "444" if bitstream.chroma != "444" else "420"
        with pytest.raises(UndecodableError, match="its header gives"):
            codec.decode(replace(bitstream, chroma=lie))
        with pytest.raises(UndecodableError, match="its header gives"):
            codec.decode(replace(bitstream, bit_depth=bitstream.bit_depth + 2))


# -- hostile disks: whatever raises it, a full disk or a lack of memory is one line -----------
@pytest.mark.parametrize("failure", [
    OSError(28, "No space left on device", "out.png"),
    OSError(27, "File too large", "out.png"),
    OSError(13, "Permission denied", "out.png"),
    MemoryError(),
])
def test_disk_and_memory_failures_anywhere_are_one_line(failure, photo, monkeypatch, capsys,
                                                       tmp_path):
    path = tmp_path / "photo.icm"
    path.write_bytes(container.pack(*_honest(photo)))

    def failing(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr("icm.pipeline.files.write_atomic", failing)
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    needle = "memory" if isinstance(failure, MemoryError) else failure.strerror
    assert_one_line_error(code, err, needle)


def test_other_os_errors_stay_bugs_with_their_traceback(photo, monkeypatch, capsys, tmp_path):
    path = tmp_path / "photo.icm"
    path.write_bytes(container.pack(*_honest(photo)))

    def failing(*_args, **_kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("icm.pipeline.files.write_atomic", failing)
    with pytest.raises(OSError):
        icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")


# -- special files in and out, on the command line --------------------------------------------
def test_decoding_a_fifo_is_refused_without_waiting(monkeypatch, capsys, tmp_path):
    """``icm decode /dev/zero`` read until memory ran out; a FIFO (made here, never the
    machine's /dev) is refused before a byte is read, and nothing waits for a writer."""
    import os

    fifo = tmp_path / "stream.icm"
    os.mkfifo(fifo)
    code, _, err = icm(monkeypatch, capsys, "decode", fifo, "-o", tmp_path / "out.png")
    assert_one_line_error(code, err, "stream.icm", "not a regular file")


def test_decoding_onto_a_fifo_is_refused_and_keeps_it(photo, monkeypatch, capsys, tmp_path):
    import os
    import stat

    path = tmp_path / "photo.icm"
    path.write_bytes(container.pack(*_honest(photo)))
    target = tmp_path / "out.png"
    os.mkfifo(target)
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", target)
    assert_one_line_error(code, err, "out.png")
    assert stat.S_ISFIFO(os.stat(target).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "photo.icm"]


def test_an_output_suffix_no_writer_knows_is_refused_before_decoding(photo, monkeypatch, capsys,
                                                                    tmp_path):
    """``-o out.xyz`` wrote PNG bytes under that name; now it is refused, and nothing is
    written."""
    path = tmp_path / "photo.icm"
    path.write_bytes(container.pack(*_honest(photo)))
    decoded = []
    monkeypatch.setattr("icm.pipeline.coding.Coded.decode", lambda *args: decoded.append(args))
    code, _, err = icm(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.xyz")
    assert_one_line_error(code, err, "out.xyz", "'.xyz'")
    assert not decoded and not (tmp_path / "out.xyz").exists()
