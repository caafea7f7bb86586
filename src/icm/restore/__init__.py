"""Restoration of degraded photos by a compact network conditioned on the degradation.

``restore_image(rgb, "noise", 0.5)`` undoes (part of) ``get_degradation("noise")``; with
``"auto"`` the recogniser names the damage, with ``"unknown"`` one generic restoration is used.
The network needs torch (the ``adapt`` extra); ``import icm`` does not import this package.

Importing the package itself does not import torch either: the command line reads its
defaults from :class:`RestoreTrainConfig` (:mod:`icm.restore.config`) on every ``icm`` call.
The other names load their module, and with it torch, the first time they are used.
"""

from __future__ import annotations

from icm.lazy import lazy_exports
from icm.restore.config import UNKNOWN, RestoreTrainConfig, RestoreTrainError

#: the names that need torch, and the module each lives in
_LAZY = {
    "RestoreRecord": "icm.restore.api",
    "RestoredFile": "icm.restore.api",
    "get_model": "icm.restore.api",
    "restore_file": "icm.restore.api",
    "restore_image": "icm.restore.api",
    "run_network": "icm.restore.api",
    "RestoreInfo": "icm.restore.files",
    "RestoreModelError": "icm.restore.files",
    "load_model": "icm.restore.files",
    "read_model": "icm.restore.files",
    "save_model": "icm.restore.files",
    "Architecture": "icm.restore.network",
    "RestoreNet": "icm.restore.network",
    "parameter_count": "icm.restore.network",
    "TrainResult": "icm.restore.train",
    "train_restorer": "icm.restore.train",
}


__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "UNKNOWN",
    "Architecture",
    "RestoreInfo",
    "RestoreModelError",
    "RestoreNet",
    "RestoreRecord",
    "RestoreTrainConfig",
    "RestoreTrainError",
    "RestoredFile",
    "TrainResult",
    "get_model",
    "load_model",
    "parameter_count",
    "read_model",
    "restore_file",
    "restore_image",
    "run_network",
    "save_model",
    "train_restorer",
]
