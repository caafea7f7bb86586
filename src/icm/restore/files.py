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
from icm.training.weights import (
    Metadata,
    load_module,
    positive,
    read_tensors,
    save_tensors,
)

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
    def from_metadata(cls, metadata: Metadata) -> RestoreInfo:
        """The info a model file's metadata holds, each field of its own JSON type."""
        metadata.require_format(FORMAT, "icm restoration model")
        vocabulary = tuple(metadata.value("vocabulary", list[str]))
        metadata.require(vocabulary[:1] == (UNKNOWN,),
                         f"model vocabulary must start with {UNKNOWN!r}")
        sizes = metadata.record("architecture", {"widths": list[int], "embed": int,
                                                 "condition": int})
        metadata.require(len(sizes["widths"]) == 3 and positive(
            [*sizes["widths"], sizes["embed"], sizes["condition"]]),
            "architecture must be 3 widths, an embed and a condition size, all positive")
        return cls(vocabulary, Architecture.from_json(sizes),
                   metadata.value("trained", dict, {}))


def save_model(path: Path, net: RestoreNet, info: RestoreInfo) -> None:
    save_tensors(path, net.state_dict(), info.metadata())


def read_model(path: Path) -> tuple[dict[str, torch.Tensor], RestoreInfo]:
    """The tensors and info of a model file, or a one-line :class:`RestoreModelError`."""
    tensors, metadata = read_tensors(path, "restoration model", RestoreModelError)
    return tensors, RestoreInfo.from_metadata(metadata)


def load_model(path: Path) -> tuple[RestoreNet, RestoreInfo]:
    """The network in a file, in eval mode; tensors that do not fit its architecture are an
    error naming the file."""
    tensors, info = read_model(path)
    net = load_module(lambda: RestoreNet(info.vocabulary, info.arch), tensors,
                      "restoration model", Path(path), RestoreModelError)
    return net.eval(), info
