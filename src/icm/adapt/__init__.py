"""Codec-conditional adapters: teach a frozen vision encoder to read decoded images as it
reads pristine ones, told (or not) which codec and rate made them.

``train_adapter(TrainConfig(...))`` distils on coded views of the training photos, stops
early on held-out ones and gates the conditions where it did not help there;
``load_adapter(path, encoder, ...)`` puts a trained adapter back on an encoder. Adapter files
are small safetensors.

Importing the package does not import torch (the command line reads its defaults from
:mod:`icm.adapt.config` on every call); the names that need it load on first use.
"""

from __future__ import annotations

from icm.adapt.conditioning import BPP_EDGES, INPUT_BPP_EDGES, Condition, Conditioning
from icm.adapt.config import TrainConfig, ViewPlan
from icm.adapt.gate import GateEntry
from icm.lazy import lazy_exports

#: the names that need torch, and the module each lives in
_LAZY = {
    "AdaptedEncoder": "icm.adapt.encoders",
    "AdapterError": "icm.adapt.encoders",
    "AdapterInfo": "icm.adapt.files",
    "load_adapter": "icm.adapt.files",
    "read_adapter": "icm.adapt.files",
    "save_adapter": "icm.adapt.files",
    "TrainResult": "icm.adapt.train",
    "train_adapter": "icm.adapt.train",
}
__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BPP_EDGES",
    "INPUT_BPP_EDGES",
    "AdaptedEncoder",
    "AdapterError",
    "AdapterInfo",
    "Condition",
    "Conditioning",
    "GateEntry",
    "TrainConfig",
    "TrainResult",
    "ViewPlan",
    "load_adapter",
    "read_adapter",
    "save_adapter",
    "train_adapter",
]
