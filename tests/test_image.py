"""Safe loading: every format and mode to RGB uint8 by the one rule, and every bad file."""

from __future__ import annotations

import io

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
