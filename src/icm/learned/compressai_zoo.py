"""CompressAI's model zoo as codec families: ``bmshj2018-hyperprior@q3``, ``mbt2018-mean@q4``,
``cheng2020-anchor@q3`` ...

Each architecture is one registered family whose level is CompressAI's quality index (1-8, or
1-6 for cheng2020). Weights come from CompressAI's zoo (downloaded once into torch's hub cache,
so a network is needed the first time) or, with ``-O weights=PATH``, from a local checkpoint of
that architecture (a state dict, or a training checkpoint holding one under ``state_dict``);
the rate is then the checkpoint's, and the level only labels the point.

Bitstreams are CompressAI's own rANS strings behind an 11-byte header (version, quality, the
hyper-latent's shape, the first 4 bytes of the weights' hash so a stream is never decoded with
other weights), then each string with its length. Networks run on one thread, so decoding
gives the same pixels on every run on a CPU.

CompressAI is optional (the ``learned`` extra does not pull it: its wheel pins numpy<2, which
this package does not need). It works with numpy 2 installed without its dependencies; the
"Learned codecs" in docs/learned.md gives the command.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import struct
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from icm.codecs.base import Codec, Knob, Option
from icm.codecs.registry import register_codec
from icm.errors import CodecUnavailableError, CorruptContainerError, IcmError
from icm.fileio import read_input
from icm.learned.runtime import importable, one_thread
from icm.limits import DecodeSide

#: architecture -> number of quality levels in CompressAI's zoo
ZOO = {"bmshj2018-factorized": 8, "bmshj2018-hyperprior": 8, "mbt2018-mean": 8,
       "mbt2018": 8, "cheng2020-anchor": 6, "cheng2020-attn": 6}
VERSION = 1
_HEADER = struct.Struct("<BBHH4s")
#: pixels per position of the grid a stream records (the hyper-latent's; the factorized
#: model has no hyper-latent and records the latent's)
_GRID_STRIDE = {"bmshj2018-factorized": 16}
INSTALL_HINT = ("pip install --no-deps compressai==1.2.8 einops pytorch-msssim torch-geometric "
                "xxhash psutil pandas (see docs/learned.md)")


class CompressAICodec(Codec):
    """One CompressAI architecture; subclasses (made by :func:`_family`) set ``name``."""

    raw_suffix: str
    library = "CompressAI"
    install_hint = INSTALL_HINT
    options = {
        "weights": Option("", help="a local checkpoint (default: CompressAI's pretrained zoo)",
                          names_file=True),
        "metric": Option("mse", ("mse", "ms-ssim"), "the zoo weights' training metric"),
    }
    pad_multiple = 64
    #: the parametrised codec tests skip families whose default weights are downloaded
    weights_by_download = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        # find_spec, not an import: importing CompressAI (and torch_geometric) takes seconds,
        # and listings ask every family. A broken install is reported at first use instead.
        for module in ("torch", "compressai"):
            if not importable(module):
                return f"the Python package {module!r} is not installed"
        return None

    @classmethod
    def library_version(cls) -> str:
        from importlib.metadata import version

        return f"CompressAI {version('compressai')}, torch {version('torch')}"

    def _encode(self, rgb: np.ndarray, value: float, options: Mapping[str, Any]) -> bytes:
        import torch

        net, tag = _model(self.name, int(value), options["metric"], options["weights"])
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255
        with one_thread(), torch.inference_mode():
            out = net.compress(x)
        rows, cols = (int(v) for v in out["shape"])
        parts = [_HEADER.pack(VERSION, int(value), rows, cols, tag), bytes([len(out["strings"])])]
        for strings in out["strings"]:
            parts += [struct.pack("<I", len(strings[0])), strings[0]]
        return b"".join(parts)

    def native_chroma(self, options: Mapping[str, Any]) -> str:
        return "444"  # full-resolution RGB in and out

    def coded_size(self, data: bytes) -> tuple[int, int]:
        """The padded picture the stream's recorded latent grid makes."""
        _version, _quality, rows, cols, _tag = _unpack_header(data, self.name)
        stride = _GRID_STRIDE.get(self.name, 64)
        return cols * stride, rows * stride

    def _decode(self, data: bytes, side: DecodeSide) -> np.ndarray:
        """Decode with the weights whose hash the stream names: the zoo's at its quality (either
        metric), or a checkpoint the decoding side trusts; never a path from the file."""
        import torch

        _version, quality, rows, cols, tag = _unpack_header(data, self.name)
        strings = _unpack_strings(data[_HEADER.size :], self.name)
        net = _model_with_tag(self.name, quality, tag, side.models)
        with one_thread(), torch.inference_mode():
            x_hat = net.decompress([[s] for s in strings], (rows, cols))["x_hat"].clamp(0, 1)
        pixels = torch.round(x_hat[0] * 255).to(torch.uint8).permute(1, 2, 0)
        return np.ascontiguousarray(pixels.numpy())


def _family(name: str, levels: int) -> type[CompressAICodec]:
    """A registered codec class for one zoo architecture."""
    top = f"q{levels}"
    attributes = {
        "name": name,
        "knob": Knob("q", 1, levels, meaning="CompressAI quality index, higher is better"),
        "raw_suffix": f".{name}",
        "typical_level": "q6" if levels == 8 else "q5",
        "ladder": tuple(f"q{i}" for i in range(1, levels + 1)),
        "summary": f"CompressAI {name} ({top} levels from the zoo or a local checkpoint)",
        "__doc__": f"CompressAI's {name} as a codec family (module docstring).",
    }
    return register_codec(type(f"CompressAI_{name.replace('-', '_')}", (CompressAICodec,),
                                attributes))


FAMILIES = {name: _family(name, levels) for name, levels in ZOO.items()}


# -- weights -----------------------------------------------------------------------------------
def _model(name: str, quality: int, metric: str, weights: str) -> tuple[Any, bytes]:
    if weights:
        path = Path(weights).expanduser().resolve()
        stat = path.stat() if path.is_file() else None
        stamp = (stat.st_size, stat.st_mtime_ns) if stat else None
        return _local(name, str(path), stamp)
    return _zoo(name, quality, metric)


def _model_with_tag(name: str, quality: int, tag: bytes, trusted: tuple[Path, ...]) -> Any:
    """The network whose weights' hash starts with ``tag``: a trusted checkpoint of this
    architecture, or the zoo's (its tag is in the download name, so nothing loads to look)."""
    refused: list[IcmError] = []
    for path in trusted:
        try:
            net, found = _model(name, quality, "mse", str(path))
        except IcmError as exc:
            refused.append(exc)
            continue  # another architecture's checkpoint, or not one at all
        if found == tag:
            return net
    for metric in ("mse", "ms-ssim"):
        if _zoo_tag(name, quality, metric) == tag:
            return _zoo(name, quality, metric)[0]
    raise CorruptContainerError(
        f"{name} stream was coded with weights {tag.hex()}, which are neither CompressAI's "
        f"pretrained q{quality} nor among the {len(trusted)} checkpoint(s) given "
        "(pass it with --weights FILE)" + "".join(f"; {error}" for error in refused[:1]))


def _zoo_tag(name: str, quality: int, metric: str) -> bytes | None:
    url = _zoo_module().model_urls.get(name, {}).get(metric, {}).get(quality)
    return None if url is None else _tag_of_url(url)


def _tag_of_url(url: str) -> bytes:
    """The weights' hash prefix, which CompressAI writes in each download's name."""
    return bytes.fromhex(url.rsplit("-", 1)[1].split(".")[0][:8])


def _zoo_module() -> Any:
    """``compressai.zoo.image``, or a one-line error when CompressAI's install is incomplete."""
    try:
        with _quiet():
            from compressai.zoo import image
    except ImportError as exc:
        raise CodecUnavailableError(f"CompressAI does not import ({exc}); {INSTALL_HINT}") from None
    return image


@functools.lru_cache(maxsize=8)
def _zoo(name: str, quality: int, metric: str) -> tuple[Any, bytes]:
    image = _zoo_module()
    url = image.model_urls.get(name, {}).get(metric, {}).get(quality)
    if url is None:
        raise CodecUnavailableError(f"CompressAI has no pretrained {name} q{quality} ({metric})")
    try:
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):  # torch's "Downloading: ..."
            net = image._load_model(name, metric, quality, pretrained=True, progress=False)
    except OSError as exc:  # urllib's URLError is an OSError
        raise CodecUnavailableError(
            f"CompressAI's pretrained {name} q{quality} weights are not cached and did not "
            f"download ({getattr(exc, 'reason', exc)}); connect once, or pass -O weights=PATH"
        ) from None
    return _ready(net), _tag_of_url(url)


@functools.lru_cache(maxsize=8)
def _local(name: str, path: str, _stamp: tuple[int, int] | None) -> tuple[Any, bytes]:
    import torch

    if _stamp is None:
        raise CodecUnavailableError(f"{path}: CompressAI weights file not found")
    data = read_input(path, error=CodecUnavailableError)
    image = _zoo_module()
    try:
        with _quiet():
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            net = image.model_architectures[name].from_state_dict(image.load_pretrained(state))
    except Exception as exc:  # torn file, another architecture, not a checkpoint
        raise CodecUnavailableError(
            f"{path}: not a {name} checkpoint ({type(exc).__name__}); give a state dict saved "
            "with torch.save") from None
    return _ready(net), hashlib.sha256(data).digest()[:4]


def _ready(net: Any) -> Any:
    """Eval mode with CDF tables built (``update``), as ``compress`` needs."""
    with _quiet():
        net.update(force=True)
    return net.eval()


def _unpack_header(data: bytes, name: str) -> tuple[int, int, int, int, bytes]:
    if len(data) < _HEADER.size + 1:
        raise CorruptContainerError(f"{name} stream is shorter than its header")
    header = _HEADER.unpack_from(data)
    if header[0] != VERSION:
        raise CorruptContainerError(f"{name} stream version {header[0]} is not {VERSION}")
    return header


def _unpack_strings(data: bytes, name: str) -> list[bytes]:
    count, offset, strings = data[0], 1, []
    for _ in range(count):
        if offset + 4 > len(data):
            raise CorruptContainerError(f"{name} stream is truncated")
        (length,) = struct.unpack_from("<I", data, offset)
        strings.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    if offset != len(data):
        raise CorruptContainerError(f"{name} stream has {len(data) - offset} stray bytes")
    return strings


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """CompressAI's import warns that ``torch.jit.script`` is deprecated; that is not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield
