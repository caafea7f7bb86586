"""Pre-editor model files: safetensors named by a hash of their contents, as the learned
codec's (:func:`icm.training.weights.save_hashed`), so a file is checked against its own name.

The metadata holds the architecture (the network is rebuilt from it), the machine the editor
was trained for, and the training record (settings, wall time, losses, held-out figures). A
missing, torn, foreign or altered file is a one-line error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from icm.errors import IcmError
from icm.preedit.network import Architecture, EditorNet
from icm.training.weights import (
    Metadata,
    check_hashed,
    check_tensors,
    load_module,
    positive,
    read_unchecked,
    save_hashed,
)

FORMAT = "icm-preedit/1"
PREFIX = "preedit"


class PreeditModelError(IcmError):
    """A pre-editor file that is missing, corrupted, or not an icm pre-editor."""


@dataclass(frozen=True)
class EditorInfo:
    arch: Architecture
    machine: str
    trained: dict
    digest: str = ""

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT, "architecture": json.dumps(self.arch.to_json()),
                "machine": self.machine, "trained": json.dumps(self.trained, sort_keys=True)}

    @classmethod
    def from_metadata(cls, metadata: Metadata) -> EditorInfo:
        metadata.require_format(FORMAT, "icm pre-editor")
        sizes = metadata.record("architecture", {"width": int, "blocks": int})
        metadata.require(positive([sizes["width"], sizes["blocks"]]) and sizes["blocks"] <= 16
                         and sizes["width"] <= 512,
                         "architecture needs a width of 1-512 and 1-16 blocks")
        return cls(Architecture.from_json(sizes), metadata.text("machine"),
                   metadata.value("trained", dict, {}))


def save_model(folder: Path, net: EditorNet, info: EditorInfo) -> Path:
    """Write ``folder/preedit-<hash8>.safetensors`` (float16, half the size; the editor
    computes in float32 with exactly the stored weights) and return its path."""
    import torch

    tensors = {name: tensor.to(torch.float16) for name, tensor in net.state_dict().items()}
    return save_hashed(folder, PREFIX, tensors, info.metadata())


def load_model(path: Path) -> tuple[EditorNet, EditorInfo]:
    """The editor in a file, in eval mode, after checking the file against its name."""
    path = Path(path)
    tensors, metadata = read_unchecked(path, "pre-editor", PreeditModelError)
    digest = check_hashed(path, tensors, metadata, PreeditModelError)
    check_tensors(tensors, "pre-editor", path, PreeditModelError)
    info = replace(EditorInfo.from_metadata(metadata), digest=digest)
    net = load_module(lambda: EditorNet(info.arch), tensors, "pre-editor", path,
                      PreeditModelError, convert=lambda tensor: tensor.float())
    return net.eval(), info


def shipped_model() -> Path | None:
    """The editor that ships in the package (trained for EfficientNet-Lite0), if any."""
    found = sorted((Path(__file__).parent / "data").glob(f"{PREFIX}-*.safetensors"))
    return found[-1] if found else None

