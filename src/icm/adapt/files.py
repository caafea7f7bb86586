"""Adapter files: safetensors holding the adapter's tensors plus what it was made for.

The metadata names the machine and its fingerprint (weights, preprocessing), the codec
vocabulary and bpp edges (ids are meaningless without them), and whether it is conditioned,
so loading an adapter onto the wrong encoder or vocabulary fails with one line, not with
silently wrong outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import torch

from icm.adapt.conditioning import Conditioning
from icm.adapt.encoders import AdaptedEncoder, AdapterError
from icm.tensorfiles import (
    BUILD_ERRORS,
    Metadata,
    check_fits,
    one_line,
    read_tensors,
    save_tensors,
    shown,
)

FORMAT = "icm-adapter/1"


@dataclass(frozen=True)
class AdapterInfo:
    machine: str
    fingerprint: str
    conditioning: Conditioning
    conditioned: bool
    kind: str
    trained: dict
    #: the encoder's weights are in the file, fine-tuned: a reference, not an adapter
    tuned_encoder: bool = False

    def metadata(self) -> dict[str, str]:
        return {
            "encoder": "tuned" if self.tuned_encoder else "frozen",
            "format": FORMAT, "machine": self.machine, "fingerprint": self.fingerprint,
            "codecs": json.dumps(list(self.conditioning.codecs)),
            "edges": json.dumps(list(self.conditioning.edges)),
            "conditioned": json.dumps(self.conditioned), "kind": self.kind,
            "trained": json.dumps(self.trained, sort_keys=True),
        }

    @classmethod
    def from_metadata(cls, metadata: Metadata) -> AdapterInfo:
        """The info an adapter file's metadata holds, each field of its own JSON type."""
        found = metadata.text("format", None)
        if found != FORMAT:
            raise metadata.fail(f"not an icm adapter (format {shown(found)}, expected "
                                f"{FORMAT!r})")
        edges = tuple(metadata.value("edges", list[float]))
        metadata.require(all(a < b for a, b in pairwise(edges)),
                         "'edges' must be increasing bpp values")
        encoder = metadata.text("encoder", "frozen")
        metadata.require(encoder in ("frozen", "tuned"),
                         f"'encoder' must be 'frozen' or 'tuned', not {shown(encoder)}")
        return cls(metadata.text("machine"), metadata.text("fingerprint"),
                   Conditioning(tuple(metadata.value("codecs", list[str])), edges),
                   metadata.value("conditioned", bool), metadata.text("kind"),
                   metadata.value("trained", dict, {}), encoder == "tuned")


def save_adapter(path: Path, adapted: AdaptedEncoder, info: AdapterInfo) -> None:
    save_tensors(path, adapted.trainable_state(), info.metadata())


def read_adapter(path: Path) -> tuple[dict[str, torch.Tensor], AdapterInfo]:
    """The tensors and info of an adapter file, or a one-line :class:`AdapterError`."""
    tensors, metadata = read_tensors(path, "adapter", AdapterError)
    return tensors, AdapterInfo.from_metadata(metadata)


def load_adapter(path: Path, encoder: torch.nn.Module, machine: str,
                 fingerprint: str) -> AdaptedEncoder:
    """``encoder`` with the adapter at ``path``; refuses one made for another machine."""
    tensors, info = read_adapter(path)
    if info.fingerprint != fingerprint:
        raise AdapterError(f"adapter was trained for {info.machine} ({info.fingerprint[:60]}), "
                           f"not {machine} ({fingerprint[:60]})", path)
    adapted = AdaptedEncoder(encoder, info.conditioning, conditioned=info.conditioned,
                             tune_encoder=info.tuned_encoder)
    check_fits(adapted.trainable_state(), tensors, "adapter", Path(path), AdapterError)
    try:
        adapted.load_trainable(tensors, str(path))
    except BUILD_ERRORS as exc:  # check_fits leaves little, but torch has the last word
        raise AdapterError(f"adapter weights do not load ({one_line(exc)})", path) from None
    return adapted.eval()
