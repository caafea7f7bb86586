"""Learned-codec model files: float16 safetensors named by a hash of their contents.

A file holds the network's weights (stored as float16, which halves the file; the codec
computes in float32, and the weights it computes with are exactly the stored ones, so a file
always decodes the same) plus metadata: the architecture (the network is rebuilt from it, not
from the code's defaults) and a training summary (steps, wall time, data, losses).

Names carry the first 8 hex digits of the model's digest (``icm-lic-1a2b3c4d.safetensors``, as
CompressAI names its zoo weights), so a file is checked against its own name on load: a
corrupted or truncated file is a one-line error naming it, never silently wrong pixels. The
digest is a SHA-256 of the content (tensor names, dtypes, shapes and bytes in sorted order, then
the metadata as sorted JSON), not of the file's bytes: safetensors writes its header's keys in
an order that changes from process to process, and the same model must get the same name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from icm.errors import IcmError
from icm.learned.network import Architecture, LicNet, parameter_count
from icm.training.weights import (
    Metadata,
    check_hashed,
    check_tensors,
    load_module,
    positive,
    read_unchecked,
    save_hashed,
    shown,
)

FORMAT = "icm-lic/1"
PREFIX = "icm-lic"


class LearnedModelError(IcmError):
    """A learned-codec file that is missing, corrupted, or not an icm-lic model."""


@dataclass(frozen=True)
class ModelInfo:
    arch: Architecture
    trained: dict
    #: the content digest (hex SHA-256); bitstreams carry its first 4 bytes
    digest: str = ""

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT, "architecture": json.dumps(self.arch.to_json()),
                "trained": json.dumps(self.trained, sort_keys=True)}

    @classmethod
    def from_metadata(cls, metadata: Metadata) -> ModelInfo:
        """The info a model file's metadata holds, each field of its own JSON type."""
        found = metadata.text("format", None)
        if found != FORMAT:
            raise metadata.fail(f"not an icm-lic model (format {shown(found)}, expected "
                                f"{FORMAT!r})")
        sizes = metadata.record(
            "architecture", {"channels": int, "latent": int, "hyper": int,
                             "lambdas": list[float], "block_path": bool}, {"block_path": False})
        metadata.require(positive([sizes["channels"], sizes["latent"], sizes["hyper"]]),
                         "architecture sizes must be positive")
        metadata.require(bool(sizes["lambdas"]) and positive(sizes["lambdas"]),
                         "architecture lambdas must be positive, at least one")
        return cls(Architecture.from_json(sizes), metadata.value("trained", dict, {}))


def save_model(folder: Path, net: LicNet, trained: dict) -> Path:
    """Write ``folder/icm-lic-<hash8>.safetensors`` (float16) and return its path."""
    tensors = {k: v.to(torch.float16) for k, v in net.state_dict().items()}
    return save_hashed(folder, PREFIX, tensors, ModelInfo(net.arch, trained).metadata())


def load_model(path: Path) -> tuple[LicNet, ModelInfo]:
    """The network in a file, in float32 eval mode, after checking the file against its name."""
    path = Path(path)
    tensors, metadata = read_unchecked(path, "icm-lic model", LearnedModelError)
    digest = check_hashed(path, tensors, metadata, LearnedModelError)
    check_tensors(tensors, "icm-lic model", path, LearnedModelError)
    info = replace(ModelInfo.from_metadata(metadata), digest=digest)
    net = load_module(lambda: LicNet(info.arch), tensors, "icm-lic model", path,
                      LearnedModelError, convert=lambda tensor: tensor.float())
    return net.eval(), info


def shipped_model(flavour: str = "") -> Path | None:
    """The model that ships in the package for a flavour, if any: ``icm/learned/data`` holds
    the default (pixels first), ``icm/learned/data/<flavour>`` each model tuned for a machine."""
    folder = Path(__file__).parent / "data" / flavour
    found = sorted(folder.glob(f"{PREFIX}-*.safetensors"))
    return found[-1] if found else None


def describe_model(model: Path | None = None) -> dict[str, Any]:
    """What ``icm learned info`` shows of a model file (default: the shipped one): its size,
    parameter count, architecture and training record."""
    path = model or shipped_model()
    if path is None:
        raise IcmError("no icm-lic model ships in this installation; give a file")
    net, info = load_model(path)
    return {"file": str(path), "bytes": Path(path).stat().st_size,
            "parameters": parameter_count(net), "architecture": info.arch.to_json(),
            "trained": info.trained}


def shipped_models() -> list[Path]:
    """Every model that ships in the package, the default first."""
    folder = Path(__file__).parent / "data"
    return sorted(folder.glob(f"{PREFIX}-*.safetensors")) + sorted(
        folder.glob(f"*/{PREFIX}-*.safetensors"))
