"""Restoration of degraded photos by a compact network conditioned on the degradation.

``restore_image(rgb, "noise", 0.5)`` undoes (part of) ``get_degradation("noise")``; with
``"auto"`` the recogniser names the damage, with ``"unknown"`` one generic restoration is used.
Needs torch (the ``adapt`` extra); ``import icm`` does not import this package.
"""

from icm.restore.api import RestoreRecord, get_model, restore_image, run_network
from icm.restore.files import RestoreInfo, RestoreModelError, load_model, read_model, save_model
from icm.restore.network import UNKNOWN, Architecture, RestoreNet, parameter_count
from icm.restore.train import RestoreTrainConfig, RestoreTrainError, TrainResult, train_restorer

__all__ = [
    "UNKNOWN",
    "Architecture",
    "RestoreInfo",
    "RestoreModelError",
    "RestoreNet",
    "RestoreRecord",
    "RestoreTrainConfig",
    "RestoreTrainError",
    "TrainResult",
    "get_model",
    "load_model",
    "parameter_count",
    "read_model",
    "restore_image",
    "run_network",
    "save_model",
    "train_restorer",
]
