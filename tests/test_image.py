"""Safe loading: every format and mode to RGB uint8 by the one rule, and every bad file."""

from __future__ import annotations

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from icm.errors import BadImageError
from icm.image import load_image, sample_photos


@pytest.fixture
def rgb(photo):
    return photo[:48, :64].copy()


def save(tmp_path, image: Image.Image, name: str, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


@pytest.mark.parametrize("name, kwargs", [
    ("a.png", {}), ("a.bmp", {}), ("a.tiff", {}), ("a.webp", {"lossless": True}),
    ("a.ppm", {}),
])
def test_lossless_formats_load_exactly(tmp_path, rgb, name, kwargs):
    loaded = load_image(save(tmp_path, Image.fromarray(rgb), name, **kwargs))
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, rgb)


@pytest.mark.parametrize("name", ["a.jpg", "a.avif", "a.heic", "a.jp2"])
def test_lossy_formats_load_close(tmp_path, rgb, name):
    import pillow_heif

    pillow_heif.register_heif_opener()
    loaded = load_image(save(tmp_path, Image.fromarray(rgb), name, quality=95))
    assert loaded.shape == rgb.shape
    assert np.abs(loaded.astype(int) - rgb).mean() < 6


def test_jpeg_xl_loads(tmp_path, rgb):
    import imagecodecs

    path = tmp_path / "a.jxl"
    path.write_bytes(imagecodecs.jpegxl_encode(rgb, lossless=True))
    assert np.array_equal(load_image(path), rgb)


def test_grey_and_palette_become_rgb(tmp_path, rgb):
    grey = Image.fromarray(rgb).convert("L")
    loaded = load_image(save(tmp_path, grey, "g.png"))
    assert loaded.shape == rgb.shape and np.array_equal(loaded[..., 0], loaded[..., 2])
    assert np.array_equal(loaded[..., 0], np.asarray(grey))
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.array_equal(load_image(save(tmp_path, palette, "p.png")),
                          np.asarray(palette.convert("RGB")))


def test_alpha_composites_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # opaque red-ish top, transparent bottom
    rgba[2:, :, 3] = 0
    rgba[3, 3, 3] = 128
    loaded = load_image(save(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"))
    assert loaded[0, 0].tolist() == [200, 0, 0]
    assert loaded[2, 0].tolist() == [255, 255, 255]
    assert loaded[3, 3].tolist() == [round(200 * 128 / 255 + 255 * 127 / 255),
                                     round(255 * 127 / 255)] * 1 + [round(255 * 127 / 255)]


def test_cmyk_converts(tmp_path, rgb):
    cmyk = Image.fromarray(rgb).convert("CMYK")
    loaded = load_image(save(tmp_path, cmyk, "c.jpg", quality=100))
    assert loaded.shape == rgb.shape
    assert np.abs(loaded.astype(int) - rgb).mean() < 8


def test_sixteen_bit_rounds_by_257(tmp_path):
    import imagecodecs
    import tifffile

    deep = np.array([[[0, 257, 65535], [128, 32896, 40000]]], dtype=np.uint16)
    expected = np.rint(deep / 257).astype(np.uint8)
    png = tmp_path / "deep.png"
    png.write_bytes(imagecodecs.png_encode(deep))
    tif = tmp_path / "deep.tif"
    tifffile.imwrite(tif, deep)
    assert np.array_equal(load_image(png), expected)
    assert np.array_equal(load_image(tif), expected)
    grey = tmp_path / "grey16.png"
    Image.fromarray(np.array([[0, 65535, 32896]], dtype=np.uint16)).save(grey)
    assert load_image(grey)[0, :, 0].tolist() == [0, 255, 128]


def test_exif_orientation_is_applied(tmp_path, rgb):
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated; a viewer turns it 90 degrees clockwise
    loaded = load_image(save(tmp_path, image, "o.png", exif=exif.tobytes()))
    assert np.array_equal(loaded, np.rot90(rgb, -1))


def test_pixel_limit_refuses_before_decoding(tmp_path):
    path = save(tmp_path, Image.new("RGB", (200, 100)), "big.png")
    assert load_image(path, max_pixels=20_000).shape == (100, 200, 3)
    with pytest.raises(BadImageError, match=r"200x100 .* exceeds the pixel limit"):
        load_image(path, max_pixels=19_999)


def test_decompression_bomb_header_is_refused_cheaply(tmp_path):
    # A PNG header claiming 100k x 100k pixels: refused from the header, nothing decoded.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(BadImageError, match="exceeds the pixel limit"):
        load_image(path)


@pytest.mark.parametrize("content, problem", [
    (None, "file not found"),
    (b"", "empty file"),
    (b"hello, I am text", "not an image"),
])
def test_bad_files_name_themselves(tmp_path, content, problem):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImageError, match=problem) as info:
        load_image(path)
    assert str(info.value).startswith(str(path))


def test_truncated_image_is_reported(tmp_path, rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        load_image(path)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(BadImageError, match="is a folder"):
        load_image(tmp_path)


def test_bundled_samples_ship_offline():
    photos = sample_photos()
    assert len(photos) >= 4
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())


# -- hostile files: special files, several frames, odd depths, broken metadata ---------------------
def test_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(BadImageError, match="is a FIFO") as info:
        load_image(fifo)
    assert str(info.value).startswith(str(fifo))


def test_a_device_is_refused_before_reading(tmp_path):
    path = tmp_path / "zero.png"
    try:  # a /dev/zero node made here: read, it would never end
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here ({exc})")
    with pytest.raises(BadImageError, match="is a character device, not a regular file"):
        load_image(path)


def _frames(count: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(count)]


@pytest.mark.parametrize("name, kwargs, unit", [
    ("a.gif", {}, "frames"),
    ("a.png", {}, "frames"),  # APNG
    ("a.webp", {"lossless": True}, "frames"),
    ("a.tif", {}, "pages"),
])
def test_several_frames_or_pages_are_refused(tmp_path, name, kwargs, unit):
    first, *rest = _frames(3)
    path = save(tmp_path, first, name, save_all=True, append_images=rest, **kwargs)
    with pytest.raises(BadImageError, match=f"has 3 {unit}; icm codes still images") as info:
        load_image(path)
    assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_a_tiff_thumbnail_is_not_a_page(tmp_path, rgb):
    import tifffile

    path = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, photometric="rgb")
        tif.write(rgb[::4, ::4], photometric="rgb", subfiletype=1)  # reduced resolution
    assert np.array_equal(load_image(path), rgb)


def test_a_camera_mpo_is_its_first_image(tmp_path, rgb):
    second = Image.fromarray(rgb[::-1])
    path = save(tmp_path, Image.fromarray(rgb), "a.mpo", save_all=True,
                append_images=[second], quality=95)
    assert Image.open(path).format == "MPO"
    assert np.abs(load_image(path).astype(int) - rgb).mean() < 6


def test_an_animated_jpeg_xl_is_refused_from_its_header(tmp_path, monkeypatch):
    import imagecodecs

    frames = np.zeros((3, 16, 24, 3), np.uint8)
    path = tmp_path / "anim.jxl"
    path.write_bytes(imagecodecs.jpegxl_encode(frames, lossless=True))
    monkeypatch.setattr(imagecodecs, "jpegxl_decode", _never_decode)
    with pytest.raises(BadImageError, match="animated JPEG XL; icm codes still images"):
        load_image(path)


def _never_decode(*args, **kwargs):
    raise AssertionError("decoded before the header was checked")


@pytest.mark.parametrize("container", [False, True])
def test_jpeg_xl_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch, rgb, container):
    import imagecodecs

    path = tmp_path / "a.jxl"
    path.write_bytes(imagecodecs.jpegxl_encode(rgb, lossless=True, usecontainer=container))
    assert np.array_equal(load_image(path), rgb)
    monkeypatch.setattr(imagecodecs, "jpegxl_decode", _never_decode)
    with pytest.raises(BadImageError, match=r"64x48 = 0.0 MP exceeds the pixel limit"):
        load_image(path, max_pixels=64 * 48 - 1)


@pytest.mark.parametrize("width, height", [
    (8, 8), (256, 256), (264, 256), (10, 7), (1920, 1080), (120, 90), (150, 100), (160, 90),
    (125, 100), (200, 100), (1000, 1), (1, 1000), (513, 8193), (300, 240),
])
def test_jpeg_xl_header_sizes(width, height):
    # every SizeHeader form: small, U32 sides of each length, and each fixed aspect ratio
    import imagecodecs

    from icm.image.load import jxl_header

    data = imagecodecs.jpegxl_encode(np.zeros((height, width, 3), np.uint8), lossless=True,
                                     effort=1)
    assert jxl_header(data, "x.jxl") == (width, height, False)


def test_jpeg_xl_orientation_fields_are_skipped(tmp_path):
    # a JPEG recompressed to JPEG XL carries its EXIF orientation in the codestream header
    import imagecodecs

    from icm.image.load import jxl_header

    image = Image.fromarray(np.zeros((40, 72, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    data = imagecodecs.jpegxl_encode_jpeg(buffer.getvalue())
    assert jxl_header(data, "x.jxl") == (72, 40, False)
    path = tmp_path / "turned.jxl"
    path.write_bytes(data)
    assert load_image(path).shape == (72, 40, 3)


def test_a_damaged_jpeg_xl_header_is_one_line(tmp_path):
    path = tmp_path / "bad.jxl"
    path.write_bytes(b"\xff\x0a")
    with pytest.raises(BadImageError, match="truncated or corrupt JPEG XL"):
        load_image(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_float_tiff_reads_as_zero_to_one(tmp_path, dtype):
    import tifffile

    values = np.array([[[0.0, 0.5, 1.0], [2.0, -1.0, np.nan], [0.25, 0.75, 0.1]]])
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, values.astype(dtype), photometric="rgb")
    expected = np.rint(np.clip(np.nan_to_num(values.astype(dtype).astype(np.float32)), 0, 1)
                       * 255).astype(np.uint8)
    assert np.array_equal(load_image(path), expected)


def test_float_tiff_planes_and_grey(tmp_path):
    import tifffile

    planes = np.random.default_rng(0).random((3, 6, 5)).astype(np.float32)
    expected = np.rint(np.moveaxis(planes, 0, -1) * 255).astype(np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
    assert np.array_equal(load_image(path), expected)
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, planes[0])
    assert np.array_equal(load_image(grey), np.repeat(expected[..., :1], 3, axis=2))


def test_a_float_tiff_over_the_pixel_limit_is_refused(tmp_path):
    import tifffile

    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((100, 200, 3), np.float32), photometric="rgb")
    with pytest.raises(BadImageError, match=r"200x100 .* exceeds the pixel limit"):
        load_image(path, max_pixels=19_999)


def _quietly(capfd, load):
    """Run ``load`` and return its result, asserting nothing reached stderr or warnings."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load()
    assert not caught, [str(w.message) for w in caught]
    assert capfd.readouterr().err == ""
    return result


@pytest.mark.parametrize("exif, turned", [
    (b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00",
     False),  # cut short inside the orientation entry: no orientation
    (b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x02\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00"
     b"\x00\x00\x69\x87\x04\x00\x01\x00\x00\x00\xff\xff\x00\x00",
     True),  # an intact orientation 6 beside an EXIF IFD pointing past the end
    (b"Exif\x00\x00garbage!!", False),
])
def test_corrupt_exif_loads_quietly(tmp_path, capfd, rgb, exif, turned):
    path = save(tmp_path, Image.fromarray(rgb), "e.jpg", exif=exif, quality=95)
    loaded = _quietly(capfd, lambda: load_image(path))
    expected = np.rot90(rgb, -1) if turned else rgb
    assert loaded.shape == expected.shape
    assert np.abs(loaded.astype(int) - expected).mean() < 6


def test_png_exif_after_the_pixels_is_read_without_decoding_twice(tmp_path, rgb):
    import struct
    import zlib

    exif = Image.Exif()
    exif[0x0112] = 8
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + body))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    data = buffer.getvalue()
    path = tmp_path / "late.png"
    path.write_bytes(data[:-12] + chunk + data[-12:])  # before IEND, after IDAT
    assert np.array_equal(load_image(path), np.rot90(rgb, 1))


def test_cmyk_with_a_broken_profile_converts_plainly(tmp_path, capfd, rgb):
    cmyk = Image.fromarray(rgb).convert("CMYK")
    path = save(tmp_path, cmyk, "c.jpg", quality=100, icc_profile=b"not a profile" * 20)
    loaded = _quietly(capfd, lambda: load_image(path))
    assert np.array_equal(loaded, np.asarray(Image.open(path).convert("RGB")))


def _jpeg_claiming(width: int, height: int, rgb: np.ndarray, *, keep: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height``, cut to ``keep`` bytes
    and closed with an end-of-image marker (libjpeg then fills the missing blocks grey)."""
    import struct

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data[:keep]) + b"\xff\xd9"


def test_a_jpeg_too_short_for_its_size_fails_before_decoding(tmp_path, monkeypatch, rgb):
    path = tmp_path / "claims81mp.jpg"
    path.write_bytes(_jpeg_claiming(9000, 9000, rgb, keep=1000))
    monkeypatch.setattr(Image.Image, "load", _never_decode)
    with pytest.raises(BadImageError, match=r"1002 bytes cannot hold the 9000x9000 pixels"):
        load_image(path)


@pytest.mark.parametrize("kwargs", [
    {"optimize": True}, {"progressive": True, "optimize": True},
    {"progressive": True, "subsampling": 0}, {"subsampling": 2},
])
def test_the_jpeg_length_check_passes_the_tersest_real_files(tmp_path, kwargs):
    # a flat picture at quality 1: as few bits a block as an encoder spends
    flat = Image.new("RGB", (1024, 768), (90, 120, 150))
    path = save(tmp_path, flat, "flat.jpg", quality=1, **kwargs)
    assert load_image(path).shape == (768, 1024, 3)
    grey = save(tmp_path, flat.convert("L"), "grey.jpg", quality=1, **kwargs)
    assert load_image(grey).shape == (768, 1024, 3)


def test_truncation_stays_an_error_whatever_pillow_was_told(tmp_path, monkeypatch, rgb):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # another library's choice
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    with pytest.raises(BadImageError, match="truncated"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # and it is left as it was


# -- memory: a few bytes a pixel ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "PT", "RGBT", "L", "1", "CMYK", "I;16"])
def test_band_conversion_equals_whole_image_conversion(monkeypatch, mode):
    from icm.image import load as module
    from icm.image import pillow_rgb8

    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (37, 29, 4), dtype=np.uint8)
    image = Image.fromarray(rgba, "RGBA")
    if mode == "PT":
        image = image.convert("RGB").quantize(16)
        image.info["transparency"] = 3
    elif mode == "RGBT":
        image = image.convert("RGB")
        image.info["transparency"] = tuple(int(v) for v in rgba[0, 0, :3])
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (37, 29), dtype=np.uint16))
    elif mode != "RGBA":
        image = image.convert(mode)
    whole = pillow_rgb8(image)
    monkeypatch.setattr(module, "_BAND_PIXELS", 50)  # a band of one or two rows
    assert np.array_equal(pillow_rgb8(image), whole)
    if mode in ("L", "1", "P", "CMYK"):
        assert np.array_equal(whole, np.asarray(image.convert("RGB")))
    if mode == "RGBT":  # the transparent colour composites over white
        assert whole[0, 0].tolist() == [255, 255, 255]


def test_rgb_uint8_samples_are_not_copied():
    from icm.image.load import _samples_to_rgb8

    rgb = np.zeros((4, 5, 3), np.uint8)
    assert np.shares_memory(_samples_to_rgb8(rgb), rgb)


@pytest.mark.parametrize("name, per_pixel", [("big.png", 3.5), ("big.jpg", 3.5)])
def test_loading_holds_a_few_bytes_a_pixel(tmp_path, monkeypatch, name, per_pixel):
    # numpy and Python allocations beyond the file's bytes (Pillow's own 4 bytes a pixel are
    # not traced): the array, 3 a pixel, and a band. A whole-image np.asarray held 6.
    import tracemalloc

    from icm.image import load as module

    monkeypatch.setattr(module, "_BAND_PIXELS", 1 << 15)  # bands small beside this image
    photo = sample_photos()["astronaut"]
    big = np.tile(photo, (3, 3, 1))[:1200, :1500]
    path = save(tmp_path, Image.fromarray(big), name, **({"quality": 90} if "jpg" in name else {}))
    size = os.path.getsize(path)
    tracemalloc.start()
    try:
        loaded = load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.shape == big.shape
    assert (peak - size) / big[..., 0].size < per_pixel
