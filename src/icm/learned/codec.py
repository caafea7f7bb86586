"""``icm-lic``: our learned codec as a registered codec family (``icm-lic@q4.5``).

The level is the quality on the model's trained scale, continuous from ``q1`` (coarsest) to
``q8`` (finest): gain units interpolate between the eight trained levels
(:mod:`icm.learned.network`), so rate control can bisect it like any continuous knob.

Importance maps drive it through the delta-QP interface every ROI codec shares
(``supports_delta_qp``): a block's offset ``d`` (negative = more important) becomes the quality
``level - d / 3`` there, clipped to 1..8. Three QP steps per level, because HEVC's lambda
doubles every 3 QP and our levels' lambdas about double per level: a map means about the same
thing to ``icm-lic`` as to ``hevc-kvazaar``. The per-block offsets, resampled to the latent grid
(one value per 16x16 pixels), travel in the bitstream, zlib-compressed, counted in its bytes.

The payload (``.lic``): a 12-byte header (version, flags, quality x 1000, latent rows and
columns, the first 4 bytes of the model's digest so a stream is never decoded with the
wrong model), the optional quality map, then one rANS stream holding the hyper-latent and the
latent (:mod:`icm.learned.entropy`).

Networks run on one thread inside encode and decode: convolution results may depend on the
thread count at the last bit, and the decoder must rebuild exactly the encoder's scales.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.errors import CodecUnavailableError, CorruptContainerError, IcmError
from icm.learned.runtime import importable, one_thread
from icm.limits import DecodeSide

if TYPE_CHECKING:
    from icm.learned.network import LicNet

VERSION = 1
LEVELS = 8
#: pixels per latent position and latent positions per hyper-latent one (as in the network;
#: repeated here so that registering the codec does not import torch)
LATENT_STRIDE = 16
HYPER_STRIDE = 4
#: delta-QP steps per quality level (see the module docstring)
QP_PER_LEVEL = 3.0
_HEADER = struct.Struct("<BBHHH4s")
_HAS_MAP = 1


@register_codec
class IcmLicCodec(Codec):
    name = "icm-lic"
    knob = Knob("q", 1, LEVELS, integer=False, meaning="quality level, higher is better")
    raw_suffix = ".lic"
    typical_level = "q5"  # about 1 bpp on Kodak
    ladder = ("q1", "q2", "q3", "q4", "q5", "q6", "q7")  # about 0.3 .. 1.6 bpp on Kodak
    library = "icm-lic (torch + constriction rANS)"
    summary = "our learned codec: mean-scale hyperprior, gain units, spatial quality map"
    install_hint = "pip install 'icm[learned]'"
    options = {"weights": Option("", help="an icm-lic model file (default: the shipped one)",
                                 names_file=True)}
    pad_multiple = LATENT_STRIDE
    supports_delta_qp = True
    #: which shipped model codes by default (:func:`icm.learned.files.shipped_model`)
    flavour = ""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        for module in ("torch", "constriction", "safetensors"):
            if not importable(module):
                return f"the Python package {module!r} is not installed"
        from icm.learned.files import shipped_model

        if shipped_model(cls.flavour) is None:
            return f"no {cls.name} model ships in this installation"
        return None

    @classmethod
    def library_version(cls) -> str:
        from importlib.metadata import version

        from icm.learned.files import shipped_model

        shipped = shipped_model(cls.flavour)
        model = shipped.stem if shipped else "no model"
        return f"{model}, torch {version('torch')}, constriction {version('constriction')}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        net, tag = _model(options.get("weights", ""), self.flavour)
        rows, cols = rgb.shape[0] // LATENT_STRIDE, rgb.shape[1] // LATENT_STRIDE
        milli = round(value * 1000)
        deltas = latent_deltas(options.get("delta_qp"), rows, cols)
        qmap = quality_map(milli / 1000, deltas)
        with one_thread():
            stream = encode_latents(net, rgb, qmap)
        flags, side = 0, b""
        if deltas.any():
            packed = zlib.compress(deltas.astype(np.int8).tobytes(), 9)
            flags, side = _HAS_MAP, struct.pack("<H", len(packed)) + packed
        return _HEADER.pack(VERSION, flags, milli, rows, cols, tag) + side + stream

    def native_chroma(self, options: Mapping[str, Any]) -> str:
        """The transforms read and write full-resolution RGB: nothing is subsampled."""
        return "444"

    def coded_size(self, data: bytes) -> tuple[int, int]:
        """The padded picture the latent grid makes: checked before anything is allocated."""
        rows, cols = _parse_header(data)[3:5]
        return cols * LATENT_STRIDE, rows * LATENT_STRIDE

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        """Decode with the model whose digest the stream names, among the shipped ones and
        those the decoding side trusts (``side.models``): never a path from the file."""
        _version, flags, milli, rows, cols, tag = _parse_header(data)
        net = _model_with_tag(tag, side.models)
        offset = _HEADER.size
        deltas = np.zeros((rows, cols), dtype=np.int64)
        if flags & _HAS_MAP:
            try:
                (length,) = struct.unpack_from("<H", data, offset)
                if offset + 2 + length >= len(data):
                    raise ValueError("it runs past the end of the stream")
                # bounded: the map is one byte per latent position, never more
                raw = zlib.decompressobj().decompress(data[offset + 2 : offset + 2 + length],
                                                      rows * cols + 1)
                deltas = np.frombuffer(raw, dtype=np.int8).reshape(rows, cols).astype(np.int64)
            except (struct.error, zlib.error, ValueError) as exc:
                problem = f"icm-lic quality map does not decode ({exc})"
                raise CorruptContainerError(problem) from None
            offset += 2 + length
        if offset >= len(data):
            raise CorruptContainerError("icm-lic stream ends before its latents")
        with one_thread():
            return decode_latents(net, data[offset:], quality_map(milli / 1000, deltas))


@register_codec
class IcmLicLite0Codec(IcmLicCodec):
    """``icm-lic`` fine-tuned to code for EfficientNet-Lite0's view of ~512 px photos.

    Same network and bitstream; the shipped model (``icm/learned/data/lite0``) was trained
    with distortion measured where Lite0 reads the photo (resized by 224/512, its own
    antialiased bilinear filter; ``icm learned train --view-scale 0.4375``), so it spends no
    bits on detail above that view's Nyquist frequency. For this machine it needs fewer bits
    than HEVC at equal fidelity; for human eyes it is a blurred photo.
    """

    name = "icm-lic-lite0"
    flavour = "lite0"
    summary = "icm-lic tuned for EfficientNet-Lite0 (distortion in its 224 px view)"
    typical_level = "q4"
    ladder = ("q1", "q2", "q3", "q4", "q5", "q6", "q7")


# -- the quality map -------------------------------------------------------------------------------
def latent_deltas(delta_qp: np.ndarray | None, rows: int, cols: int) -> np.ndarray:
    """A block map of QP offsets (any grid) resampled, nearest, to the latent grid, clipped to
    +-63 (21 levels: more than the whole scale)."""
    if delta_qp is None:
        return np.zeros((rows, cols), dtype=np.int64)
    grid = np.asarray(delta_qp, dtype=np.int64)
    r_index = np.minimum(((np.arange(rows) + 0.5) * grid.shape[0] / rows).astype(int),
                         grid.shape[0] - 1)
    c_index = np.minimum(((np.arange(cols) + 0.5) * grid.shape[1] / cols).astype(int),
                         grid.shape[1] - 1)
    return np.clip(grid[np.ix_(r_index, c_index)], -63, 63)


def quality_map(level: float, deltas: np.ndarray) -> np.ndarray:
    """Per-latent quality (1-based, 1..8): the level, moved by each block's QP offset."""
    return np.clip(level - deltas / QP_PER_LEVEL, 1, LEVELS).astype(np.float32)


# -- coding the latents ----------------------------------------------------------------------------
def encode_latents(net: LicNet, rgb: np.ndarray, qmap: np.ndarray) -> bytes:
    """Analyse ``rgb`` (H, W multiples of 16) at per-latent qualities ``qmap``; rANS bytes."""
    import torch

    from icm.learned import entropy

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255
        q = torch.from_numpy(qmap - 1)[None, None]
        y = net.analysis(x, q)
        z = net.hyper_analysis(y, q)
        z_mean = net.z_mean[None, :, None, None]
        z_symbols = entropy.to_symbols(z - z_mean)
        z_hat = torch.from_numpy(z_symbols.reshape(z.shape)).float() + z_mean
        means, scales = net.hyper_synthesis(z_hat, y.shape[-2:])
        streams = [(z_symbols, _z_indexes(net, z.shape)),
                   (entropy.to_symbols(y - means), entropy.scale_indexes(scales))]
    return entropy.encode(streams)


def decode_latents(net: LicNet, data: bytes, qmap: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode_latents`: RGB uint8 at the coded (padded) size."""
    import torch

    from icm.learned import entropy

    rows, cols = qmap.shape
    z_shape = (1, net.arch.hyper, -(-rows // HYPER_STRIDE), -(-cols // HYPER_STRIDE))
    try:
        decoder = entropy.Decoder(data)
        with torch.inference_mode():
            z_symbols = decoder.decode(_z_indexes(net, z_shape))
            z_hat = torch.from_numpy(z_symbols.reshape(z_shape)).float()
            z_hat = z_hat + net.z_mean[None, :, None, None]
            means, scales = net.hyper_synthesis(z_hat, (rows, cols))
            y_symbols = decoder.decode_last(entropy.scale_indexes(scales))
            y_hat = torch.from_numpy(y_symbols.reshape(means.shape)).float() + means
            q = torch.from_numpy(qmap - 1)[None, None]
            x_hat = net.synthesis(y_hat, q).clamp(0, 1)
    except (ValueError, RuntimeError) as exc:
        raise CorruptContainerError(f"icm-lic stream does not decode ({exc})") from None
    pixels = torch.round(x_hat[0] * 255).to(torch.uint8).permute(1, 2, 0)
    return np.ascontiguousarray(pixels.numpy())


def _z_indexes(net: LicNet, shape: tuple[int, ...]) -> np.ndarray:
    """The hyper-latent's per-channel scale indexes, broadcast to ``shape``."""
    from icm.learned import entropy

    per_channel = entropy.scale_indexes(net.z_scale().detach())
    return np.broadcast_to(per_channel[None, :, None, None], shape).ravel()


def _parse_header(data: bytes) -> tuple[int, int, int, int, int, bytes]:
    if len(data) < _HEADER.size:
        raise CorruptContainerError("icm-lic stream is shorter than its header")
    header = _HEADER.unpack_from(data)
    version, flags, milli, rows, cols, _tag = header
    if version != VERSION:
        raise CorruptContainerError(f"icm-lic stream version {version} is not {VERSION}")
    if flags & ~_HAS_MAP:
        raise CorruptContainerError(f"icm-lic stream has unknown flags 0x{flags:02x}")
    if not 1000 <= milli <= LEVELS * 1000:
        raise CorruptContainerError(f"icm-lic stream quality {milli / 1000:g} is outside "
                                    f"1..{LEVELS}")
    if rows < 1 or cols < 1:
        raise CorruptContainerError(f"icm-lic stream has an empty {rows}x{cols} latent grid")
    return header


# -- models --------------------------------------------------------------------------------------
def _model(weights: str, flavour: str) -> tuple[LicNet, bytes]:
    """The network for a ``weights`` option ('' = the flavour's shipped one) and its tag."""
    from icm.learned.files import shipped_model

    if weights:
        return _load_file(Path(weights).expanduser().resolve())
    shipped = shipped_model(flavour)
    if shipped is None:
        raise CodecUnavailableError("no icm-lic model ships in this installation; pass "
                                    "-O weights=FILE (train one with icm learned train)")
    return _load_file(shipped)


def _model_with_tag(tag: bytes, trusted: tuple[Path, ...]) -> LicNet:
    """The model, among those given and those shipped, whose digest starts with ``tag``.

    A given file that is not an icm-lic model is passed over (the decoding side may trust
    models of several codecs at once); one that loads is cached, so this stays cheap."""
    from icm.learned.files import shipped_models

    refused: list[IcmError] = []
    for path in (*trusted, *shipped_models()):
        try:
            net, found = _load_file(Path(path).resolve())
        except IcmError as exc:
            refused.append(exc)
            continue
        if found == tag:
            return net
    raise CorruptContainerError(
        f"icm-lic stream was coded with model {tag.hex()}, which is neither shipped nor among "
        f"the {len(trusted)} model file(s) given (pass it with --weights FILE)"
        + "".join(f"; {error}" for error in refused[:1]))


def _load_file(path: Path) -> tuple[LicNet, bytes]:
    """A model file, cached by path, size and modification time (a retrained file reloads)."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    return _load(str(path), (stat.st_size, stat.st_mtime_ns) if stat else None)


@functools.lru_cache(maxsize=4)
def _load(path: str, _stamp: tuple[int, int] | None) -> tuple[LicNet, bytes]:
    from icm.learned.files import load_model

    net, info = load_model(Path(path))
    if info.arch.levels != LEVELS:
        raise CodecUnavailableError(f"{path}: icm-lic models have {LEVELS} quality levels, "
                                    f"this one has {info.arch.levels}")
    return net, bytes.fromhex(info.digest[:8])
