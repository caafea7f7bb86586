"""Adapter files: safetensors holding the adapter's tensors plus what it was made for.

The metadata names the machine and its fingerprint (weights, preprocessing), the codec
vocabulary, bpp edges and input side (ids are meaningless without them), whether it is
conditioned, and its gate: per condition, whether validation showed a gain and so whether the
adapter acts there (:mod:`icm.adapt.gate`). Loading an adapter onto the wrong encoder or
vocabulary fails with one line, not with silently wrong outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from icm.adapt.conditioning import Conditioning
from icm.adapt.encoders import AdaptedEncoder, AdapterError
from icm.adapt.gate import ALL, GateEntry, describe_gate, open_keys
from icm.training.weights import (
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
    #: per condition key, validation's verdict; None: no gate (acts everywhere)
    gate: dict[str, GateEntry] | None = None
    #: the first CNN stage with an adapter (the ones before stay plain)
    first_stage: int = 0

    def metadata(self) -> dict[str, str]:
        record = {
            "encoder": "tuned" if self.tuned_encoder else "frozen",
            "format": FORMAT, "machine": self.machine, "fingerprint": self.fingerprint,
            "codecs": json.dumps(list(self.conditioning.codecs)),
            "edges": json.dumps(list(self.conditioning.edges)),
            "input_side": json.dumps(self.conditioning.input_side),
            "first_stage": json.dumps(self.first_stage),
            "conditioned": json.dumps(self.conditioned), "kind": self.kind,
            "trained": json.dumps(self.trained, sort_keys=True),
        }
        if self.gate is not None:
            record["gate"] = json.dumps({k: e.record() for k, e in self.gate.items()},
                                        sort_keys=True)
        return record

    @property
    def open_keys(self) -> frozenset[str] | None:
        return None if self.gate is None else open_keys(self.gate)

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
        input_side = metadata.value("input_side", int, 0)
        metadata.require(input_side >= 0, "'input_side' must be a side in px or 0")
        conditioning = Conditioning(tuple(metadata.value("codecs", list[str])), edges,
                                    input_side)
        conditioned = metadata.value("conditioned", bool)
        first_stage = metadata.value("first_stage", int, 0)
        metadata.require(0 <= first_stage < 64, "'first_stage' must be a stage index")
        return cls(metadata.text("machine"), metadata.text("fingerprint"), conditioning,
                   conditioned, metadata.text("kind"), metadata.value("trained", dict, {}),
                   encoder == "tuned", _read_gate(metadata, conditioning, conditioned),
                   first_stage)


def _read_gate(metadata: Metadata, conditioning: Conditioning, conditioned: bool
               ) -> dict[str, GateEntry] | None:
    """The file's gate, each key a condition this adapter has and each entry well typed."""
    found = metadata.value("gate", dict, None)
    if found is None:
        return None
    keys = _gate_keys(conditioning, conditioned)
    gate = {}
    for key, entry in found.items():
        metadata.require(key in keys, f"gate key {shown(key)} is not a condition of this "
                         f"adapter")
        where = f"gate.{key}"
        fields = metadata.check(entry, dict, repr(where))
        gate[key] = GateEntry(
            _field(metadata, fields, "open", bool, where),
            _field(metadata, fields, "samples", int, where),
            _field(metadata, fields, "photos", int, where),
            _field(metadata, fields, "gain", float, where),
            _field(metadata, fields, "gain_low", float, where, optional=True),
            _field(metadata, fields, "top1_change", float, where, optional=True))
    return gate


def _field(metadata: Metadata, fields: dict, name: str, kind: type, where: str,
           optional: bool = False) -> Any:
    """One typed field of a gate entry (``optional`` ones may be null)."""
    if name not in fields:
        raise metadata.fail(f"{metadata.what} metadata {where} lacks {name!r}")
    value = fields[name]
    return None if optional and value is None else metadata.check(
        value, kind, repr(f"{where}.{name}"))


def _gate_keys(conditioning: Conditioning, conditioned: bool) -> set[str]:
    if not conditioned:
        return {ALL}
    names = ["unknown", *conditioning.codecs]
    return {f"{name}@{bucket}" for name in names for bucket in range(conditioning.bucket_slots)}


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
    try:
        adapted = AdaptedEncoder(encoder, info.conditioning, conditioned=info.conditioned,
                                 tune_encoder=info.tuned_encoder, gate=info.open_keys,
                                 first_stage=info.first_stage)
    except AdapterError as exc:
        raise AdapterError(exc.problem, path) from None
    check_fits(adapted.trainable_state(), tensors, "adapter", Path(path), AdapterError)
    try:
        adapted.load_trainable(tensors, str(path))
    except BUILD_ERRORS as exc:  # check_fits leaves little, but torch has the last word
        raise AdapterError(f"adapter weights do not load ({one_line(exc)})", path) from None
    return adapted.eval()


def describe_adapter(path: Path) -> dict[str, Any]:
    """What an adapter file was made for, how it was trained, and where it acts."""
    tensors, info = read_adapter(path)
    return {"machine": info.machine, "fingerprint": info.fingerprint, "kind": info.kind,
            "conditioned": info.conditioned, "tuned_encoder": info.tuned_encoder,
            "codecs": list(info.conditioning.codecs),
            "bpp_edges": list(info.conditioning.edges),
            "input_side": info.conditioning.input_side,
            "gate": describe_gate(info.gate, info.conditioning), "trained": info.trained,
            "parameters": int(sum(t.numel() for t in tensors.values()))}
