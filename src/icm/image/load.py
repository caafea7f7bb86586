"""Safe image loading: any common file in, RGB uint8 out, by one documented rule.

The rule, applied in this order:

0. **File.** Only a regular file of at most 1 GiB is read (:func:`icm.fileio.read_input`): a
   device, FIFO or folder is refused before a byte is read.
1. **Size.** Files over ``max_pixels`` (default 100 MP) are refused from the header, before any
   pixel is decoded, so a decompression bomb costs nothing. JPEG XL's header is parsed here for
   that, since its library has no header-only call. A Huffman-coded JPEG too short to hold one
   bit per 8x8 block of the size it declares is refused as truncated, also before decoding
   (libjpeg would otherwise fill the missing blocks with grey, silently).
2. **Still images only.** An animated GIF, PNG (APNG), WebP, AVIF or JPEG XL, a multi-page
   TIFF or a HEIF holding several images is refused, naming its frame or page count: which
   frame to code is the user's choice, not a silent "the first one". (A TIFF's
   reduced-resolution copies and masks are not pages; an MPO camera JPEG's second image is a
   preview, and its first image is the photo.)
3. **Orientation.** The EXIF orientation tag is applied, so the array is what a viewer shows. A
   corrupt EXIF block means orientation 1, silently: it is metadata, not the picture.
4. **Depth.** 16-bit samples become 8-bit by ``round(v / 257)`` (65535 -> 255 exactly); float
   samples (float16/32/64, as in float TIFF) are read as [0, 1] and scaled by 255, NaN as 0.
   Pillow alone would truncate 16-bit colour to its high byte and cannot open float colour
   TIFF, so those are read at full depth with imagecodecs/tifffile.
5. **Alpha.** Transparent pixels (an alpha channel, or a PNG/GIF transparent colour) are
   composited over white, as a page or a browser shows them.
6. **Colour.** Palette, grey, bilevel, CMYK and other modes convert to RGB with Pillow's rules.
   CMYK with an embedded ICC profile goes through LittleCMS to sRGB; a profile LittleCMS cannot
   use (broken, or not a CMYK profile) falls back to Pillow's plain CMYK -> RGB, as a viewer
   does, rather than refusing a picture whose pixels are fine.

Memory: the result is the only whole-image array made (3 bytes a pixel) beside what the
decoding library holds; conversions run in bands of about a million pixels, so a 100 MP file
costs a few bytes a pixel, not tens. Every failure is a :class:`~icm.errors.BadImageError`
naming the file, and no library warning reaches stderr.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from icm.errors import BadImageError
from icm.fileio import read_input

DEFAULT_MAX_PIXELS = 100_000_000

_WHITE = 255.0
_BAND_PIXELS = 1 << 20
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: formats that can hold several frames or pages; others' extra "frames" are not pictures
#: (an MPO's preview, a PSD's layers, an ICO's sizes)
_MULTI_FRAME_FORMATS = {"GIF", "PNG", "WEBP", "AVIF", "HEIF", "TIFF", "FLI", "DCX"}
#: JPEG frame markers whose scans are Huffman-coded DCT (baseline, extended, progressive):
#: every 8x8 block then costs at least one bit. Arithmetic and lossless JPEG are not bounded.
_HUFFMAN_DCT_FRAMES = {0xC0, 0xC1, 0xC2}
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_plugins_registered = False


def _register_plugins() -> None:
    """Teach Pillow HEIF/HEIC once; imported lazily so a missing plugin only costs that format."""
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:  # pragma: no cover - optional format
        pass


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as an ``(H, W, 3)`` uint8 RGB array by the module's rule."""
    path = Path(path)
    return decode_image_bytes(read_input(path, error=BadImageError), path, max_pixels)


def decode_image_bytes(
    data: bytes, path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an in-memory image file; ``path`` only names it in errors."""
    if data.startswith(_JXL_SIGNATURES):
        return _load_jxl(data, path, max_pixels)
    _register_plugins()
    try:
        with pillow_settings():
            try:
                image = Image.open(io.BytesIO(data))
            except UnidentifiedImageError:
                if data.startswith(_TIFF_SIGNATURES):  # float colour TIFF: Pillow cannot
                    return _load_tiff(data, path, max_pixels)
                raise BadImageError("not an image file icm can read", path) from None
            with image:
                return _decode_opened(image, data, path, max_pixels)
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"truncated or corrupt image ({_one_line(exc)})", path) from None


@contextlib.contextmanager
def pillow_settings() -> Iterator[None]:
    """Pillow as icm needs it, for one decode: our pixel limit instead of its bomb check (which
    warns on stderr from 89 MP), truncation an error even if some other library in the process
    turned ``LOAD_TRUNCATED_IMAGES`` on, and its warnings (corrupt EXIF...) kept off stderr."""
    limit, truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = limit, truncated


def _decode_opened(
    image: Image.Image, data: bytes, path: str | os.PathLike[str], max_pixels: int
) -> np.ndarray:
    """Steps 1-6 of the rule for a file Pillow has opened (header read, nothing decoded)."""
    _check_pixels(image.size, path, max_pixels)
    if image.format in ("JPEG", "MPO"):
        _check_jpeg_length(data, path)
    _refuse_several_frames(image, data, path)
    if image.format == "TIFF" and _tiff_needs_full_depth(image):
        return _load_tiff(data, path, max_pixels)
    orientation = _orientation(image, data)
    deep = _read_png(image, data)
    if deep is None:
        image.load()
        deep = _to_rgb8(image)
    return _apply_orientation(deep, orientation)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _check_pixels(size: tuple[int, int], path: str | os.PathLike[str], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise BadImageError(f"image has no pixels ({width}x{height})", path)
    if width * height > max_pixels:
        raise BadImageError(
            f"{width}x{height} = {width * height / 1e6:.1f} MP exceeds the pixel limit of "
            f"{max_pixels / 1e6:g} MP (raise it with --max-pixels)",
            path,
        )


# -- step 1: a JPEG too short for its size ---------------------------------------------------
def _check_jpeg_length(data: bytes, path: str | os.PathLike[str]) -> None:
    """Refuse a Huffman-coded JPEG shorter than one bit per 8x8 block of its declared size.

    Every block's DC difference is one Huffman code of at least one bit (a sequential scan
    adds at least an end-of-block code), so no encoder makes such a file: it is truncated,
    and libjpeg would decode it anyway, the missing blocks grey, after allocating the whole
    picture (a 2.5 kB file declaring 81 MP cost 4.7 GB)."""
    frame = _jpeg_frame(data)
    if frame is None:
        return
    width, height, sampling = frame
    blocks = _jpeg_blocks(width, height, sampling)
    if 8 * len(data) < blocks:
        raise BadImageError(
            f"truncated or corrupt image ({len(data)} bytes cannot hold the {width}x{height} "
            f"pixels its JPEG header declares, which need at least {math.ceil(blocks / 8)})",
            path)


def _jpeg_frame(data: bytes) -> tuple[int, int, list[tuple[int, int]]] | None:
    """Width, height and each component's (H, V) sampling from a Huffman-DCT JPEG's frame
    header; None for other JPEG kinds, a height left to a DNL marker, or an unreadable header
    (Pillow then judges the file)."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # scan or end before any frame header
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _JPEG_FRAMES:
            return _parse_frame(data[pos + 4:pos + 2 + length]) if (
                marker in _HUFFMAN_DCT_FRAMES) else None
        pos += 2 + length
    return None


def _parse_frame(segment: bytes) -> tuple[int, int, list[tuple[int, int]]] | None:
    if len(segment) < 6:
        return None
    height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
    count = segment[5]
    components = segment[6:6 + 3 * count]
    if height == 0 or width == 0 or count == 0 or len(components) < 3 * count:
        return None
    sampling = [(components[i + 1] >> 4, components[i + 1] & 15) for i in range(0, 3 * count, 3)]
    if any(h == 0 or v == 0 for h, v in sampling):
        return None
    return width, height, sampling


def _jpeg_blocks(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """8x8 blocks over all components (ITU T.81 A.1.1: a component is ceil(X * H / Hmax)
    by ceil(Y * V / Vmax) samples)."""
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    return sum(math.ceil(math.ceil(width * h / h_max) / 8)
               * math.ceil(math.ceil(height * v / v_max) / 8) for h, v in sampling)


# -- step 2: still images only -----------------------------------------------------------------
def _refuse_several_frames(image: Image.Image, data: bytes, path: str | os.PathLike[str]) -> None:
    if image.format not in _MULTI_FRAME_FORMATS:
        return
    count = getattr(image, "n_frames", 1)
    if image.format == "TIFF":
        count = _tiff_pages(data, count)
    _refuse_count(count, "pages" if image.format == "TIFF" else "frames", path)


def _refuse_count(count: int, unit: str, path: str | os.PathLike[str]) -> None:
    if count > 1:
        raise BadImageError(f"has {count} {unit}; icm codes still images (save the one you "
                            f"want as an image file of its own)", path)


def _tiff_pages(data: bytes, pillows_count: int) -> int:
    """Pages of a TIFF, not counting reduced-resolution copies (thumbnails, pyramid levels)
    and transparency masks (NewSubfileType bits 0 and 2); Pillow's count of its image file
    directories if tifffile cannot walk them."""
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tif:
            return sum(1 for page in tif.pages if not page.subfiletype & 0b101)
    except Exception:  # tifffile raises many error types; Pillow's decode then judges the file
        return pillows_count


# -- step 3: orientation -----------------------------------------------------------------------
def _orientation(image: Image.Image, data: bytes) -> int:
    """The EXIF orientation (1-8); 1 when absent, out of range or unreadable.

    Pillow's PNG ``getexif`` decodes the whole image to look for an eXIf chunk after the
    pixels; the chunk is found by walking the chunk list instead, nothing decoded."""
    getexif = image.getexif
    if image.format == "PNG":
        getexif = functools.partial(Image.Image.getexif, image)
        if "exif" not in image.info and (chunk := _png_chunk(data, b"eXIf")) is not None:
            image.info["exif"] = chunk
    try:
        value = getexif().get(0x0112, 1)
    except Exception:  # any parse failure of optional metadata means "no orientation"
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The body of the first ``kind`` chunk of a PNG, or None."""
    pos = 8
    while pos + 8 <= len(data):
        length, found = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if found == kind:
            return data[pos + 8:pos + 8 + length]
        if found == b"IEND":
            return None
        pos += 12 + length
    return None


_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation as Pillow's ImageOps.exif_transpose applies it."""
    turn = _ORIENTATIONS.get(int(orientation))
    return np.ascontiguousarray(turn(array) if turn else array)


# -- step 4: full depth through imagecodecs / tifffile -----------------------------------------
def _read_png(image: Image.Image, data: bytes) -> np.ndarray | None:
    """RGB(A) PNG through imagecodecs, else None. 16-bit colour, which Pillow would truncate
    to its high byte, needs libpng. 8-bit colour without a transparent colour goes through
    libspng, which decodes straight into the array (Pillow holds 4 bytes a pixel besides) and,
    unlike libpng, prints nothing on stderr for a damaged file."""
    if image.format != "PNG" or image.mode not in ("RGB", "RGBA"):
        return None
    import imagecodecs

    sixteen = data[24:25] == b"\x10"
    if not sixteen and ("transparency" in image.info or not imagecodecs.SPNG.available):
        return None
    decode = imagecodecs.png_decode if sixteen else imagecodecs.spng_decode
    try:
        decoded = decode(data)
    except Exception as exc:  # imagecodecs raises its own error types per codec
        raise OSError(_one_line(exc)) from None
    return _samples_to_rgb8(decoded)


def _tiff_needs_full_depth(image: Image.Image) -> bool:
    """Colour TIFF with more than 8 bits a sample, which Pillow would truncate."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    bits = image.tag_v2.get(258, (8,))
    return max(bits if isinstance(bits, tuple) else (bits,)) > 8


def _load_tiff(data: bytes, path: str | os.PathLike[str], max_pixels: int) -> np.ndarray:
    """A TIFF through tifffile (16-bit and float colour): first page, checked like Pillow's."""
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = [page for page in tif.pages if not page.subfiletype & 0b101]
            if not pages:
                raise BadImageError("not an image file icm can read (a TIFF without pages)", path)
            page = pages[0]
            _check_pixels((page.imagewidth, page.imagelength), path, max_pixels)
            _refuse_count(len(pages), "pages", path)
            orientation = _tiff_orientation(page)
            samples = _yxs(page.asarray(), page.axes, path)
    except BadImageError:
        raise
    except Exception as exc:  # tifffile and its codecs raise many error types
        raise BadImageError(f"truncated or corrupt image ({_one_line(exc)})", path) from None
    return _apply_orientation(_samples_to_rgb8(samples), orientation)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs what it finds wrong in a damaged file, which reaches stderr through
    logging's last-resort handler; the error it then raises is what we report."""
    logger = logging.getLogger("tifffile")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _tiff_orientation(page: Any) -> int:
    """A tifffile page's Orientation tag (1-8), 1 when absent or out of range."""
    tag = page.tags.get(274)
    value = int(tag.value) if tag is not None and isinstance(tag.value, int) else 1
    return value if 1 <= value <= 8 else 1


def _yxs(array: np.ndarray, axes: str, path: str | os.PathLike[str]) -> np.ndarray:
    """A page as (rows, columns[, samples]); a volume or other layout is not a picture."""
    if axes == "SYX":
        return np.moveaxis(array, 0, -1)
    if axes in ("YX", "YXS"):
        return array
    raise BadImageError(f"is a TIFF of axes {axes}, not a 2-D picture", path)


# -- JPEG XL: header before pixels -------------------------------------------------------------
def _load_jxl(data: bytes, path: str | os.PathLike[str], max_pixels: int) -> np.ndarray:
    width, height, animated = jxl_header(data, path)
    _check_pixels((width, height), path, max_pixels)
    if animated:
        raise BadImageError("is an animated JPEG XL; icm codes still images (save the frame "
                            "you want as an image file of its own)", path)
    import imagecodecs

    try:
        array = imagecodecs.jpegxl_decode(data)
    except Exception as exc:  # imagecodecs raises its own error types per codec
        raise BadImageError(f"truncated or corrupt JPEG XL ({_one_line(exc)})", path) from None
    if array.ndim == 4:  # frames the header did not announce as an animation
        _refuse_count(array.shape[0], "frames", path)
        array = array[0]
    return _samples_to_rgb8(array)


#: U32 distributions of ISO/IEC 18181-1 as (bits, offset): SizeHeader and PreviewHeader sides
_JXL_SIZE = ((9, 1), (13, 1), (18, 1), (30, 1))
_JXL_PREVIEW = ((6, 1), (8, 65), (10, 321), (12, 1345))
_JXL_PREVIEW_DIV8 = ((0, 16), (0, 32), (5, 1), (9, 33))
#: width = height * num // den for the SizeHeader's ratio codes 1-7
_JXL_RATIOS = ((1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))


class _Bits:
    """Least-significant-bit-first reader of a JPEG XL codestream's header fields."""

    def __init__(self, data: bytes) -> None:
        self._value, self._size, self._pos = int.from_bytes(data, "little"), 8 * len(data), 0

    def bits(self, count: int) -> int:
        if self._pos + count > self._size:
            raise ValueError("header ends early")
        value = (self._value >> self._pos) & ((1 << count) - 1)
        self._pos += count
        return value

    def u32(self, dists: tuple[tuple[int, int], ...]) -> int:
        bits, offset = dists[self.bits(2)]
        return offset + (self.bits(bits) if bits else 0)


def jxl_header(data: bytes, path: str | os.PathLike[str]) -> tuple[int, int, bool]:
    """Width, height and whether it is animated, from the SizeHeader and the start of the
    ImageMetadata (imagecodecs decodes only whole images: a 144 MP file would cost 525 MB
    before its size could be checked)."""
    head = _jxl_codestream_head(data)
    reader = _Bits(head[2:] if head.startswith(b"\xff\x0a") else head)
    try:
        width, height = _jxl_size(reader, _JXL_SIZE, small_bits=5)
        return width, height, _jxl_animated(reader)
    except ValueError:
        raise BadImageError("truncated or corrupt JPEG XL (unreadable header)", path) from None


def _jxl_codestream_head(data: bytes, size: int = 64) -> bytes:
    """The codestream's first ``size`` bytes: the file itself, or the contents of its ``jxlc``
    box or ``jxlp`` boxes (each after a 4-byte sequence number) in the ISO BMFF container."""
    if data.startswith(b"\xff\x0a"):
        return data[:size]
    head, pos = b"", 0
    while pos + 8 <= len(data) and len(head) < size:
        length, kind, start = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if length == 1:
            length, start = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif length == 0:
            length = len(data) - pos
        if length < start:
            break
        body = data[pos + start:pos + length]
        head += body if kind == b"jxlc" else body[4:] if kind == b"jxlp" else b""
        pos += length
    return head[:size]


def _jxl_size(reader: _Bits, dists: tuple[tuple[int, int], ...],
              small_bits: int) -> tuple[int, int]:
    """A SizeHeader: a 'small' flag (sides multiples of 8 up to 256), the height, a ratio
    code and, for ratio 0, the width."""
    small = reader.bits(1)
    height = (reader.bits(small_bits) + 1) * 8 if small else reader.u32(dists)
    ratio = reader.bits(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio - 1]
        return height * num // den, height
    return ((reader.bits(small_bits) + 1) * 8 if small else reader.u32(dists)), height


def _jxl_animated(reader: _Bits) -> bool:
    """ImageMetadata up to ``have_animation``: all_default, extra_fields, orientation, the
    intrinsic size and the preview size (each only if flagged), then the animation flag."""
    if reader.bits(1) or not reader.bits(1):  # all_default, or no extra fields
        return False
    reader.bits(3)  # orientation
    if reader.bits(1):
        _jxl_size(reader, _JXL_SIZE, small_bits=5)
    if reader.bits(1):
        div8 = reader.bits(1)
        dists = _JXL_PREVIEW_DIV8 if div8 else _JXL_PREVIEW
        reader.u32(dists)
        if reader.bits(3) == 0:
            reader.u32(dists)
    return bool(reader.bits(1))


# -- steps 4-6: any Pillow mode to RGB, in bands -----------------------------------------------
def _bands(height: int, width: int) -> Iterator[slice]:
    """Row ranges of about ``_BAND_PIXELS`` pixels: conversions run band by band, so their
    temporaries (float copies, Pillow's converted images) stay small."""
    rows = max(1, _BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


def pillow_rgb8(image: Image.Image) -> np.ndarray:
    """A decoded Pillow image of any mode as ``(H, W, 3)`` uint8 RGB by steps 4-6 of the rule,
    converted band by band: ``np.asarray(image.convert("RGB"))`` holds Pillow's converted
    copy (4 bytes a pixel) and, while ``tobytes`` joins its pieces, two more of the array's
    (3 + 3), where this holds only the result. For any code that decodes through Pillow."""
    image.load()
    return _to_rgb8(image)


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> RGB uint8, by the module's rule, band by band."""
    convert = _band_converter(image)
    width, height = image.size
    out = np.empty((height, width, 3), np.uint8)
    for rows in _bands(height, width):
        out[rows] = convert(image.crop((0, rows.start, width, rows.stop)))
    return out


def _band_converter(image: Image.Image) -> Callable[[Image.Image], np.ndarray]:
    """How one band of this image's mode becomes RGB uint8."""
    mode, transparent = image.mode, "transparency" in image.info
    if mode == "CMYK" and image.info.get("icc_profile"):
        transform = _cmyk_transform(image.info["icc_profile"])
        if transform is not None:
            return lambda band: np.asarray(ImageCms.applyTransform(band, transform))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return lambda band: _samples_to_rgb8(np.asarray(band))
    if mode == "RGB" and not transparent:
        return lambda band: np.asarray(band)
    if mode == "L" and not transparent:
        return lambda band: np.repeat(np.asarray(band)[..., None], 3, axis=2)
    if transparent or mode in ("RGBA", "LA", "La", "PA", "RGBa"):
        return lambda band: _composite_on_white(np.asarray(band.convert("RGBA")))
    return lambda band: np.asarray(band.convert("RGB"))


def _cmyk_transform(profile: bytes) -> ImageCms.ImageCmsTransform | None:
    """LittleCMS CMYK -> sRGB through the embedded profile; None if the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "CMYK", "RGB")
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


def _samples_to_rgb8(array: np.ndarray) -> np.ndarray:
    """Any sample type and channel count -> RGB uint8 (grey repeats, alpha composites).

    RGB uint8 is returned as it is; anything else is converted band by band, so the float32
    working copy is a band's, not the image's (12-16 bytes a pixel)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"samples of shape {array.shape} are not one picture")
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    height, width = array.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    for rows in _bands(height, width):
        out[rows] = _band_to_rgb8(array[rows])
    return out


def _band_to_rgb8(band: np.ndarray) -> np.ndarray:
    if band.dtype == np.uint8:
        scaled = band.astype(np.float32)
    elif np.issubdtype(band.dtype, np.floating):
        finite = np.nan_to_num(band.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scaled = np.clip(finite, 0.0, 1.0) * 255.0
    else:
        scaled = np.clip(band.astype(np.float32), 0, 65535) / 257.0
    if scaled.shape[2] in (2, 4):
        scaled = _composite_float(scaled[..., :-1], scaled[..., -1:])
    if scaled.shape[2] == 1:
        scaled = np.repeat(scaled, 3, axis=2)
    return np.clip(np.rint(scaled[..., :3]), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgba = rgba.astype(np.float32)
    return np.rint(_composite_float(rgba[..., :3], rgba[..., 3:])).astype(np.uint8)


def _composite_float(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    weight = alpha / 255.0
    return colour * weight + _WHITE * (1.0 - weight)
