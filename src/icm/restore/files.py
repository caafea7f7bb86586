"""Restoration model files: safetensors holding the weights plus what they mean.

The metadata carries the architecture sizes (the network is rebuilt from them, not from the
code's defaults, so a file made with other widths still loads), the degradation vocabulary
(embedding row ``i`` means ``vocabulary[i]``; ids are meaningless without it) and a training
summary. A missing, torn, foreign or mismatched file is a one-line error naming the file, not a
traceback or silently wrong pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from icm.errors import IcmError
from icm.restore.network import UNKNOWN, Architecture, RestoreNet
from icm.tensorfiles import read_tensors, save_tensors

FORMAT = "icm-restore/1"


class RestoreModelError(IcmError):
    """A restoration model file that is missing, not safetensors, or not an icm restorer."""


@dataclass(frozen=True)
class RestoreInfo:
    vocabulary: tuple[str, ...]
    arch: Architecture
    trained: dict

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT, "vocabulary": json.dumps(list(self.vocabulary)),
                "architecture": json.dumps(self.arch.to_json()),
                "trained": json.dumps(self.trained, sort_keys=True)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None, path: Path) -> RestoreInfo:
        if not metadata or metadata.get("format") != FORMAT:
            raise RestoreModelError(
                f"not an icm restoration model (format {(metadata or {}).get('format')!r}, "
                f"expected {FORMAT!r})", path)
        try:
            vocabulary = tuple(str(v) for v in json.loads(metadata["vocabulary"]))
            arch = Architecture.from_json(json.loads(metadata["architecture"]))
            trained = json.loads(metadata.get("trained", "{}"))
        except (KeyError, ValueError, TypeError) as exc:
            raise RestoreModelError(f"model metadata is damaged ({exc})", path) from None
        if not vocabulary or vocabulary[0] != UNKNOWN:
            raise RestoreModelError(f"model vocabulary must start with {UNKNOWN!r}", path)
        return cls(vocabulary, arch, trained)


def save_model(path: Path, net: RestoreNet, info: RestoreInfo) -> None:
    save_tensors(path, net.state_dict(), info.metadata())


def read_model(path: Path) -> tuple[dict[str, torch.Tensor], RestoreInfo]:
    """The tensors and info of a model file, or a one-line :class:`RestoreModelError`."""
    tensors, metadata = read_tensors(path, "restoration model", RestoreModelError)
    return tensors, RestoreInfo.from_metadata(metadata, Path(path))


def load_model(path: Path) -> tuple[RestoreNet, RestoreInfo]:
    """The network in a file, in eval mode; tensors that do not fit its architecture are an
    error naming the file."""
    tensors, info = read_model(path)
    try:
        net = RestoreNet(info.vocabulary, info.arch)
        net.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RestoreModelError(f"weights do not fit the model's architecture ({first})",
                                path) from None
    return net.eval(), info
