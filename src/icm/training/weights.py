"""Weights files: safetensors holding tensors plus string metadata saying what they mean.

Shared by adapters, restoration models and learned-codec models, and the one place where a
model file from outside is checked before anything runs on it. Writes are atomic, so a crash
never leaves half a file. Reads read the file once and refuse, in one line naming the file and
of the caller's error class: a missing, torn or foreign file; a tensor of a dtype no icm model
uses, or holding NaN or infinity (it would load and quietly give garbage); metadata that is
too large, nested too deep for Python's parser, or of the wrong JSON type (``"no"`` is not
``false``); and tensors whose names, shapes or kinds do not fit the model they are loaded into.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin

from icm.errors import IcmError
from icm.fileio import read_input, write_atomic

#: deeper JSON is refused before parsing: Python's parser recurses and would die with a
#: RecursionError; real records are a few levels deep (a fine-tune's lineage adds one each)
MAX_DEPTH = 32
#: all metadata values together; real files carry a few kB
MAX_METADATA_BYTES = 256 * 1024
#: the whole JSON header (tensor index plus metadata); a tuned ViT's is tens of kB
MAX_HEADER_BYTES = 4 * 1024 * 1024
#: what constructing a network from the file's sizes may raise for sizes it cannot take
BUILD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, OverflowError)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
_REQUIRED = object()
#: a hash-named file's name ends ``-<8 hex digits>.safetensors``
_HASHED = re.compile(r"-([0-9a-f]{8})\.safetensors$")


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    from safetensors.torch import save

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(Path(path), save(contiguous, metadata=metadata))


def content_digest(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> str:
    """SHA-256 of a model's tensors and metadata, independent of their order in the file.

    Not of the file's bytes: safetensors writes its header's keys in an order that changes
    from process to process, and the same model must get the same name."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    digest.update(json.dumps(dict(metadata), sort_keys=True).encode())
    return digest.hexdigest()


def save_hashed(folder: Path, prefix: str, tensors: dict[str, Any],
                metadata: dict[str, str]) -> Path:
    """Write ``folder/<prefix>-<hash8>.safetensors`` (as CompressAI names its zoo weights)
    and return its path: a file is then checked against its own name on reading."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{prefix}-{content_digest(tensors, metadata)[:8]}.safetensors"
    save_tensors(final, tensors, metadata)
    return final


def check_hashed(path: Path, tensors: Mapping[str, Any], metadata: Metadata,
                 error: type[IcmError]) -> str:
    """The content digest of a file's tensors and metadata; a file whose name carries a
    hash it does not match is a one-line ``error`` (a corrupted or altered file would
    otherwise load as quietly wrong weights)."""
    digest = content_digest(tensors, dict(metadata.fields))
    match = _HASHED.search(Path(path).name)
    if match and not digest.startswith(match.group(1)):
        raise error("file does not match the hash in its name (corrupted or altered); "
                    "download or train it again", path)
    return digest


def read_tensors(path: Path, what: str, error: type[IcmError]
                 ) -> tuple[dict[str, Any], Metadata]:
    """(tensors, metadata) of a safetensors file, every tensor finite and of a model dtype;
    ``what`` names the kind of file in errors."""
    tensors, metadata = read_unchecked(path, what, error)
    check_tensors(tensors, what, Path(path), error)
    return tensors, metadata


def read_unchecked(path: Path, what: str, error: type[IcmError]
                   ) -> tuple[dict[str, Any], Metadata]:
    """:func:`read_tensors` without :func:`check_tensors`, for a caller with a more telling
    check to make first (a learned model's hash names what a flipped byte really is)."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} file not found", path)
    data = read_input(path, error=error)
    tensors, fields = _parse(data, what, path, error)
    return tensors, Metadata(fields, path, what, error)


def check_tensors(tensors: Mapping[str, Any], what: str, path: Path,
                  error: type[IcmError]) -> None:
    """Refuse the first tensor that cannot be a model's weight (see :func:`tensor_problem`)."""
    for name, tensor in tensors.items():
        problem = tensor_problem(tensor)
        if problem:
            raise error(f"{what} tensor {shown(name)} {problem}", path)


def _parse(data: bytes, what: str, path: Path, error: type[IcmError]
           ) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and raw metadata of a file's bytes, its header bounded before it is parsed."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    length = int.from_bytes(data[:8], "little")  # 8 bytes of header length, then JSON
    if length > MAX_HEADER_BYTES:
        raise error(f"not a safetensors {what} file (header of {length} bytes, at most "
                    f"{MAX_HEADER_BYTES} allowed)", path)
    try:
        tensors = load(data)
        header = parse_json(data[8 : 8 + length].decode("utf-8"))
    except (SafetensorError, ValueError, TypeError, RuntimeError, UnicodeDecodeError) as exc:
        raise error(f"not a safetensors {what} file ({one_line(exc)})", path) from None
    fields = (header.get("__metadata__") if isinstance(header, dict) else None) or {}
    if sum(len(k) + len(v) for k, v in fields.items()) > MAX_METADATA_BYTES:
        raise error(f"{what} metadata is larger than {MAX_METADATA_BYTES} bytes", path)
    return tensors, fields


def tensor_problem(tensor: Any) -> str:
    """Why a tensor from a file cannot be a model's weight ('' when it can): a dtype no icm
    model stores, or NaN or infinity, which would load and quietly give garbage outputs."""
    import torch

    if tensor.dtype not in _model_dtypes():
        return f"has dtype {_dtype(tensor)}, which no icm model uses"
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        return "holds NaN or infinite values"
    return ""


def _dtype(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


@cache
def _model_dtypes() -> frozenset:
    """The dtypes a model file may hold (float8, float4 and complex are none of icm's)."""
    import torch

    return frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                      torch.int8, torch.int16, torch.int32, torch.int64, torch.bool})


def check_fits(expected: Mapping[str, Any], tensors: Mapping[str, Any], what: str,
               path: Path, error: type[IcmError]) -> None:
    """Refuse tensors that do not fit a model's own: names, shapes and float-or-integer kind.

    Checked before loading, so the error names the first misfit in one line rather than
    torch's multi-line report, and integers never silently become float weights.
    """
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        misfits = [f"{label} {shown(names[:3])}" for label, names in
                   (("missing", missing), ("unexpected", extra)) if names]
        raise error(f"{what} tensors do not fit the model ({', '.join(misfits)})", path)
    for name, tensor in tensors.items():
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape):
            raise error(f"{what} tensor {shown(name)} has shape {tuple(tensor.shape)}, the "
                        f"model needs {tuple(want.shape)}", path)
        if tensor.is_floating_point() != want.is_floating_point():
            raise error(f"{what} tensor {shown(name)} is {_dtype(tensor)}, the model needs "
                        f"{_dtype(want)}", path)


def load_module(build: Callable[[], Any], tensors: Mapping[str, Any], what: str, path: Path,
                error: type[IcmError], convert: Callable[[Any], Any] | None = None) -> Any:
    """``build()`` holding ``tensors`` (each passed through ``convert`` once checked, e.g. to
    float32), or a one-line error.

    The network is first built on torch's meta device, which allocates nothing, so sizes read
    from a hostile file cannot exhaust memory before they are compared with its tensors; only
    a network whose every tensor the file really holds is then built for real.
    """
    import torch

    try:
        with torch.device("meta"):
            expected = build().state_dict()
    except BUILD_ERRORS as exc:
        raise error(f"{what} architecture cannot be built ({one_line(exc)})", path) from None
    check_fits(expected, tensors, what, path, error)
    try:
        module = build()
        module.load_state_dict({name: convert(tensor) if convert else tensor
                                for name, tensor in tensors.items()}, strict=True)
    except BUILD_ERRORS as exc:
        raise error(f"{what} weights do not fit the model's architecture ({one_line(exc)})",
                    path) from None
    return module


def parse_json(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses, as ValueError, nesting deeper than ``max_depth`` (checked
    before parsing: Python's parser recurses) and NaN or Infinity (not JSON numbers)."""
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > max_depth:
            raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True)
class Metadata:
    """A weights file's metadata, read field by field with the JSON type each must have.

    Every field is a string in the file; most hold JSON. Each read says the type it expects and
    gets exactly that or a one-line error: truthiness would read ``"no"`` as true.
    """

    fields: Mapping[str, str]
    path: Path
    what: str
    error: type[IcmError]

    def fail(self, problem: str) -> IcmError:
        """The caller's error naming this file, to raise."""
        return self.error(problem, self.path)

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        """A field that is a plain string (not JSON), such as a name: one printable line, as
        it ends up in messages and reports."""
        if key not in self.fields:
            return self._missing(key, default)
        value = self.fields[key]
        if not value.isprintable():
            raise self.fail(f"{self.what} metadata {key!r} must be one printable line, not "
                            f"{shown(value)}")
        return value

    def value(self, key: str, kind: Any, default: Any = _REQUIRED) -> Any:
        """A JSON field, checked against ``kind``: bool, int, float, str, dict, or list[...]."""
        if key not in self.fields:
            return self._missing(key, default)
        try:
            value = parse_json(self.fields[key])
        except ValueError as exc:
            raise self.fail(f"{self.what} metadata {key!r} is not JSON ({one_line(exc)})"
                            ) from None
        return self.check(value, kind, repr(key))

    def record(self, key: str, kinds: Mapping[str, Any],
               defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A JSON object field whose own fields have the given kinds (those in ``defaults`` may
        be absent); fields not named are dropped."""
        found, defaults = self.value(key, dict), defaults or {}
        out = {}
        for name, kind in kinds.items():
            if name in found:
                out[name] = self.check(found[name], kind, repr(f"{key}.{name}"))
            elif name in defaults:
                out[name] = defaults[name]
            else:
                raise self.fail(f"{self.what} metadata {key!r} lacks {name!r}")
        return out

    def check(self, value: Any, kind: Any, where: str) -> Any:
        """``value`` if it is of ``kind`` (ints are accepted as floats), else a one-line error."""
        if not _matches(value, kind):
            raise self.fail(f"{self.what} metadata {where} must be {_describe(kind)}, not "
                            f"{_json_type(value)} {shown(value)}")
        return float(value) if kind is float else value

    def require_format(self, expected: str, kind: str) -> None:
        """Refuse a file whose ``format`` field is not ``expected`` (another kind of model
        file, or none of ours): ``kind`` names what was expected, e.g. "icm adapter"."""
        found = self.text("format", None)
        if found != expected:
            raise self.fail(f"not an {kind} (format {shown(found)}, expected {expected!r})")

    def require(self, condition: bool, problem: str) -> None:
        """Refuse the file with ``problem`` unless ``condition`` holds."""
        if not condition:
            raise self.fail(f"{self.what} metadata: {problem}")

    def _missing(self, key: str, default: Any) -> Any:
        if default is _REQUIRED:
            raise self.fail(f"{self.what} metadata lacks {key!r}")
        return default


def _matches(value: Any, kind: Any) -> bool:
    if get_origin(kind) is list:
        (inner,) = get_args(kind)
        return isinstance(value, list) and all(_matches(item, inner) for item in value)
    if kind in (int, float) and isinstance(value, bool):
        return False  # JSON true is not 1
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


_NAMES = {bool: "a JSON boolean", int: "an integer", float: "a number", str: "a string",
          dict: "a JSON object"}


def _describe(kind: Any) -> str:
    if get_origin(kind) is list:
        return f"a list of {_describe(get_args(kind)[0]).split(' ', 1)[1]}s"
    return _NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = ((int, "a number"), (float, "a number"), (str, "a string"), (list, "a list"),
             (dict, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters: names and values from a hostile file may be huge
    (repr already escapes their newlines, so the error stays one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message as one short line (torch's and safetensors' span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def positive(values: Iterable[Any]) -> bool:
    """Whether every size is at least 1 (a network cannot have zero or negative widths)."""
    return all(v > 0 for v in values)
