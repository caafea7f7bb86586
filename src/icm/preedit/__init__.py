"""Semantic pre-editing: a learned editor in front of a standard codec.

A compact network changes the photo before JPEG, HEVC or VVC codes it, keeping what the
machine reads and removing what it ignores; every file stays a standard bitstream and the
decoder changes nothing. The editor is trained through a differentiable proxy of the codec
(:mod:`icm.preedit.proxy`) on rate plus machine distortion, weighed at the codec's own
rate-distortion slope (:mod:`icm.preedit.train`). In a point it is the tool
``+preedit[=MODEL]`` (:mod:`icm.pipeline.recipe`).

Importing the package does not import torch (the command line reads its defaults from
:class:`PreeditTrainConfig`); the other names load their module the first time they are used.
"""

from __future__ import annotations

from icm.lazy import lazy_exports
from icm.preedit.config import PreeditError, PreeditTrainConfig, family_of

_LAZY = {
    "edit_image": "icm.preedit.api",
    "get_editor": "icm.preedit.api",
    "describe_model": "icm.preedit.api",
    "fingerprint": "icm.preedit.api",
    "model_path": "icm.preedit.api",
    "EditorInfo": "icm.preedit.files",
    "PreeditModelError": "icm.preedit.files",
    "load_model": "icm.preedit.files",
    "save_model": "icm.preedit.files",
    "shipped_model": "icm.preedit.files",
    "EditorNet": "icm.preedit.network",
    "CodecProxy": "icm.preedit.proxy",
    "TrainResult": "icm.preedit.train",
    "train_editor": "icm.preedit.train",
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = ["PreeditError", "PreeditTrainConfig", "family_of", *_LAZY]
