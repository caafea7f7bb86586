"""``edit_image``: a photo in, the photo the pre-editor would have the codec code, out.

The editor runs on the encoder side only: the file it leads to is a standard bitstream of the
edited pixels, and a decoder needs nothing from icm. It is told the codec's proxy family and
the level's quantiser step (:func:`icm.preedit.config.condition`), so the same model edits
lightly at fine levels and more at coarse ones.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from icm.codecs import Codec
from icm.image.datasets import content_hash
from icm.importance.fisher import machine_block_weights
from icm.machines import get_machine
from icm.preedit.config import PreeditError, condition, family_of, level_value
from icm.preedit.files import EditorInfo, load_model, shipped_model
from icm.preedit.network import IMPORTANCE_BLOCK, SHUFFLE, EditorNet, relative_importance
from icm.training import to_tensor


def model_path(model: str | None) -> Path:
    """The file a ``+preedit[=MODEL]`` tool names: the shipped editor when none is named."""
    if model:
        return Path(model).expanduser()
    shipped = shipped_model()
    if shipped is None:
        raise PreeditError("no pre-editor ships with this installation; train one with "
                           "icm preedit train and name it: +preedit=PATH")
    return shipped


@functools.cache
def get_editor(model: str | None = None) -> tuple[EditorNet, EditorInfo]:
    """The editor a tool names, loaded once per process."""
    return load_model(model_path(model))


def importance_of(rgb: np.ndarray, machine: str) -> np.ndarray:
    """The editor's importance input for ``rgb``: the machine's Fisher block map, relative
    (:func:`icm.preedit.network.relative_importance`). Kept for the last few images: every
    level of a point edits the same pixels, and the map takes nine passes of the machine."""
    key = (content_hash(rgb), machine)
    if key not in _MAPS:
        parts = get_machine(machine).torch_parts()
        if parts is None:
            raise PreeditError(f"the pre-editor needs a differentiable machine; {machine} "
                               "is not")
        if len(_MAPS) >= 4:
            _MAPS.clear()
        _MAPS[key] = relative_importance(machine_block_weights(parts, rgb, IMPORTANCE_BLOCK))
    return _MAPS[key]


_MAPS: dict[tuple[str, str], np.ndarray] = {}


def edit_image(rgb: np.ndarray, codec: Codec, level: str | None,
               model: str | None = None) -> np.ndarray:
    """``rgb`` (H, W, 3 uint8) as the editor changes it for ``codec`` at ``level`` (the
    middle of the ladder for a bpp target), any size: its machine's importance map is
    computed on it, the photo padded to whole 4x4 patches by edge replication, edited,
    cropped back and rounded."""
    net, info = get_editor(model)
    family = family_of(codec)
    importance = torch.from_numpy(importance_of(rgb, info.machine))[None, None]
    state = torch.tensor([condition(family, level_value(codec, level))])
    height, width = rgb.shape[:2]
    x = to_tensor(rgb)[None]
    pad_h, pad_w = -height % SHUFFLE, -width % SHUFFLE
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    with torch.inference_mode():
        edited = net(x, state, importance)[0, :, :height, :width]
    pixels = (edited.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def fingerprint(model: str | None = None) -> str:
    """What identifies an editor's effect: its content digest (first 16 hex digits)."""
    return get_editor(model)[1].digest[:16]


def describe_model(model: str | None = None) -> dict:
    """What ``icm preedit info`` shows of an editor file (default: the shipped one)."""
    from icm.preedit.network import parameter_count

    path = model_path(model)
    net, info = get_editor(model)
    trained = {key: value for key, value in info.trained.items() if key != "losses"}
    return {"file": str(path), "bytes": path.stat().st_size, "machine": info.machine,
            "parameters": parameter_count(net), "architecture": info.arch.to_json(),
            "digest": info.digest[:16], "trained": trained}
