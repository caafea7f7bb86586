"""Codec-conditional adapters: teach a frozen vision encoder to read decoded images as it
reads pristine ones, told (or not) which codec and rate made them.

``train_adapter(TrainConfig(...))`` distils; ``load_adapter(path, encoder, ...)`` puts a
trained adapter back on an encoder. Adapter files are small safetensors.
"""

from icm.adapt.conditioning import Condition, Conditioning
from icm.adapt.encoders import AdaptedEncoder, AdapterError
from icm.adapt.files import AdapterInfo, load_adapter, read_adapter, save_adapter
from icm.adapt.train import TrainConfig, TrainResult, train_adapter

__all__ = [
    "AdaptedEncoder",
    "AdapterError",
    "AdapterInfo",
    "Condition",
    "Conditioning",
    "TrainConfig",
    "TrainResult",
    "load_adapter",
    "read_adapter",
    "save_adapter",
    "train_adapter",
]
