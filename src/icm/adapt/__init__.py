"""Codec-conditional adapters: teach a frozen vision encoder to read decoded images as it
reads pristine ones, told (or not) which codec and rate made them.

``train_adapter(TrainConfig(...))`` distils on coded views of the training photos, stops
early on held-out ones and gates the conditions where it did not help there;
``load_adapter(path, encoder, ...)`` puts a trained adapter back on an encoder. Adapter files
are small safetensors.
"""

from icm.adapt.conditioning import BPP_EDGES, INPUT_BPP_EDGES, Condition, Conditioning
from icm.adapt.config import TrainConfig, ViewPlan
from icm.adapt.encoders import AdaptedEncoder, AdapterError
from icm.adapt.files import AdapterInfo, load_adapter, read_adapter, save_adapter
from icm.adapt.gate import GateEntry
from icm.adapt.train import TrainResult, train_adapter

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
