"""Safe image loading: any common file in, RGB uint8 out, by one documented rule.

The rule, applied in this order:

1. **Size.** Files over ``max_pixels`` (default 100 MP) are refused from the header, before any
   pixel is decoded, so a decompression bomb costs nothing.
2. **Orientation.** The EXIF orientation tag is applied, so the array is what a viewer shows.
3. **Depth.** 16-bit samples become 8-bit by ``round(v / 257)`` (65535 -> 255 exactly); float
   samples are read as [0, 1] and scaled by 255. Pillow alone would truncate 16-bit colour to its
   high byte, so 16-bit colour PNG and TIFF are read at full depth with imagecodecs/tifffile.
4. **Alpha.** Transparent pixels are composited over white, as a page or a browser shows them.
5. **Colour.** Palette, grey, bilevel, CMYK and other modes convert to RGB with Pillow's rules
   (CMYK with an embedded ICC profile goes through LittleCMS to sRGB).

Every failure is a :class:`~icm.errors.BadImageError` naming the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from icm.errors import BadImageError

DEFAULT_MAX_PIXELS = 100_000_000

_WHITE = 255.0
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")
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
    data = _read_bytes(path)
    if data.startswith(_JXL_SIGNATURES):
        return _load_jxl(data, path, max_pixels)
    return decode_image_bytes(data, path, max_pixels)


def decode_image_bytes(
    data: bytes, path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an in-memory image file; ``path`` only names it in errors."""
    _register_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            _check_pixels(image.size, path, max_pixels)
            orientation = image.getexif().get(0x0112, 1)
            deep = _read_deep_colour(image, data)
            if deep is not None:
                return _apply_orientation(deep, orientation)
            image.load()
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError("not an image file icm can read", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"truncated or corrupt image ({exc})", path) from None
    return _apply_orientation(_to_rgb8(image), orientation)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise BadImageError("file not found", path)
    if path.is_dir():
        raise BadImageError("is a folder, not an image file", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImageError(f"cannot read ({exc.strerror or exc})", path) from None
    if not data:
        raise BadImageError("empty file", path)
    return data


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


def _read_deep_colour(image: Image.Image, data: bytes) -> np.ndarray | None:
    """Full-depth read of 16-bit colour PNG/TIFF, which Pillow would truncate; else None."""
    if image.format == "PNG" and image.mode in ("RGB", "RGBA") and data[24:25] == b"\x10":
        import imagecodecs

        return _samples_to_rgb8(imagecodecs.png_decode(data))
    if image.format == "TIFF" and image.mode in ("RGB", "RGBA"):
        bits = image.tag_v2.get(258, (8,))
        if max(bits if isinstance(bits, tuple) else (bits,)) > 8:
            import tifffile

            return _samples_to_rgb8(tifffile.imread(io.BytesIO(data)))
    return None


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> RGB uint8, by the module's rule."""
    mode = image.mode
    if mode == "CMYK" and image.info.get("icc_profile"):
        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        srgb = ImageCms.createProfile("sRGB")
        image = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
        return np.asarray(image, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _samples_to_rgb8(np.asarray(image))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa") or (mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        return _composite_on_white(np.asarray(image))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _samples_to_rgb8(array: np.ndarray) -> np.ndarray:
    """Any sample type and channel count -> RGB uint8 (grey repeats, alpha composites)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        scaled = np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0
    else:
        scaled = np.clip(array.astype(np.float32), 0, 65535) / 257.0
    channels = scaled.shape[2]
    if channels in (2, 4):
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


def _load_jxl(data: bytes, path: Path, max_pixels: int) -> np.ndarray:
    import imagecodecs

    try:
        array = imagecodecs.jpegxl_decode(data)
    except Exception as exc:  # imagecodecs raises its own error types per codec
        raise BadImageError(f"truncated or corrupt JPEG XL ({exc})", path) from None
    _check_pixels((array.shape[1], array.shape[0]), path, max_pixels)
    return _samples_to_rgb8(array)


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
