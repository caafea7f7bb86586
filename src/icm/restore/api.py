"""``restore_image``: a degraded photo in, the restored photo and what it was told out.

The network needs a condition. Given a name (``"noise"``) it gets that type; ``"unknown"`` is
the condition trained for images without metadata; ``"auto"`` asks the degradation recogniser
(``icm.degrade.recognise``) and falls back to unknown when its model cannot be loaded. A
strength of ``None`` is fed as "strength not known", a condition the network was also trained
on. An image the recogniser calls clean comes back as
it went in: there is nothing to undo, and any correction could only add damage.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icm.degrade import check_strength, get_degradation
from icm.degrade.base import check_rgb
from icm.degrade.files import image_file_bytes
from icm.degrade.recognise import CLEAN, Recogniser, get_recogniser
from icm.errors import IcmError
from icm.fileio import file_digest, refuse_overwriting_input, write_atomic
from icm.image import load_image
from icm.metrics import psnr
from icm.restore.config import AUTO, SHIPPED_INIT, UNKNOWN
from icm.restore.files import RestoreInfo, RestoreModelError, load_model
from icm.restore.network import RestoreNet

GENERAL = "restore"  # the shipped general restorer's name (data/restore.safetensors)


@dataclass(frozen=True)
class RestoreRecord:
    """What the network was told: a type (``unknown`` allowed), a strength (``None`` = not
    known), where they came from (``given``, ``recogniser`` or ``fallback``) and the
    recogniser's probabilities when it was asked."""

    name: str
    strength: float | None
    source: str
    probabilities: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name if self.strength is None else f"{self.name}@{self.strength:g}"

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "strength": self.strength,
                                  "source": self.source}
        if self.probabilities:
            record["probabilities"] = self.probabilities
        return record


@dataclass(frozen=True)
class RestoredFile:
    """What :func:`restore_file` wrote: the condition used, the image's size, how far the
    restoration moved it from the input (PSNR, dB, to 3 places) and how long it took."""

    source: Path
    output: Path
    record: RestoreRecord
    width: int
    height: int
    psnr_to_input: float
    restore_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"input": str(self.source), "output": str(self.output),
                "condition": self.record.to_json(), "width": self.width,
                "height": self.height, "psnr_to_input": self.psnr_to_input,
                "restore_ms": round(self.restore_ms, 1)}


def restore_file(source: Path, output: Path, degradation: str = AUTO,
                 strength: float | None = None, model: str | Path | None = None) -> RestoredFile:
    """Load ``source``, restore it (see :func:`restore_image`) and write ``output`` atomically
    in the format its suffix names; the input is never overwritten."""
    refuse_overwriting_input(source, output)
    pixels = load_image(source)
    started = time.perf_counter()
    restored, record = restore_image(pixels, degradation, strength, model)
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    write_atomic(output, image_file_bytes(restored, output))
    return RestoredFile(source, output, record, int(pixels.shape[1]), int(pixels.shape[0]),
                        round(psnr(pixels, restored), 3), elapsed_ms)


def start_model_path(init: str | None) -> Path | None:
    """The model file ``--init`` names: ``shipped`` is the shipped general restorer."""
    if not init:
        return None
    return shipped_model_path() if init == SHIPPED_INIT else Path(init)


def shipped_model_path(name: str = GENERAL) -> Path:
    """The shipped model file called ``name`` (``restore``, or ``restore-<codec>`` for a
    restorer trained jointly with that codec); it may not exist."""
    return Path(str(resources.files("icm.restore").joinpath(f"data/{name}.safetensors")))


def joint_model_name(codec: str) -> str:
    """The shipped model that restores ``codec``'s decoded images (LL-ICM's joint stage)."""
    return f"{GENERAL}-{codec}"


def shipped_models() -> list[str]:
    """Names of the restoration models that ship with icm."""
    folder = shipped_model_path().parent
    return sorted(path.stem for path in folder.glob("*.safetensors"))


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> tuple[RestoreNet, RestoreInfo]:
    return load_model(Path(path))


def _model_file(model: str | Path | None) -> Path:
    path = Path(model) if model is not None else shipped_model_path()
    if not path.is_file():
        raise RestoreModelError("restoration model file not found", path)
    return path


def _loaded(model: str | Path | None) -> tuple[RestoreNet, RestoreInfo]:
    """The network and its metadata, loaded once per process (again if the file changes)."""
    path = _model_file(model)
    return _cached(str(path.resolve()), path.stat().st_mtime_ns)


def get_model(model: str | Path | None = None) -> RestoreNet:
    """The network in ``model`` (default: the shipped one), loaded once per process."""
    return _loaded(model)[0]


def model_fingerprint(model: str | Path | None = None) -> str:
    """A short hash of the model file's bytes: what decides a restored image."""
    return file_digest(_model_file(model), digits=16)


def is_joint(model: str | Path | None = None) -> bool:
    """True for a model trained on a codec's decoded images (it also removes coding
    artefacts, so it has work to do even on an image that was clean before coding)."""
    return bool(_loaded(model)[1].trained.get("codec"))


def resolve(rgb: np.ndarray, degradation: str, strength: float | None) -> RestoreRecord:
    """The condition to restore ``rgb`` with (a name is checked against the registry)."""
    name = degradation.strip().lower()
    value = None if strength is None else check_strength(strength)
    if name == UNKNOWN:
        return RestoreRecord(UNKNOWN, value, "given")
    if name != AUTO:
        return RestoreRecord(get_degradation(name).name, value, "given")
    recogniser = _recogniser()
    if recogniser is None:
        return RestoreRecord(UNKNOWN, value, "fallback")
    seen = recogniser.predict(rgb)
    probabilities = {k: round(float(v), 4) for k, v in dict(seen.probabilities).items()}
    return RestoreRecord(seen.name, value if value is not None else float(seen.strength),
                         "recogniser", probabilities)


def _recogniser() -> Recogniser | None:
    """The shipped recogniser, or None where its model file is missing or damaged: "auto"
    then means "unknown", which the network was trained for, rather than an error for a part
    of icm the caller did not ask for by name."""
    try:
        return get_recogniser()
    except (IcmError, OSError):
        return None


def run_network(net: RestoreNet, rgb: np.ndarray, name: str, strength: float | None
                ) -> np.ndarray:
    """One image through the network: uint8 in, uint8 out (rounded, clipped)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255.0
    known = strength is not None
    with torch.no_grad():
        y = net(x, torch.tensor([net.type_index(name)]),
                torch.tensor([float(strength) if known else 0.0]),
                torch.tensor([1.0 if known else 0.0]))
    out = (y[0] * 255.0).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def restore_image(rgb: np.ndarray, degradation: str = AUTO, strength: float | None = None,
                  model: str | Path | None = None) -> tuple[np.ndarray, RestoreRecord]:
    """Restore an ``(H, W, 3)`` uint8 image; return it with the condition used."""
    check_rgb(rgb, "restore_image")
    record = resolve(rgb, degradation, strength)
    net = get_model(model)
    if record.name == CLEAN:
        return rgb.copy(), record
    return run_network(net, rgb, record.name, record.strength), record


def restore_decoded(rgb: np.ndarray, model: str, degradation: str,
                    strength: float | None) -> np.ndarray:
    """What a decoder does with a file's RESTORE field: run the shipped ``model`` told what the
    encoder saw. An image the encoder called clean is left alone by a general restorer (there
    is nothing to undo) and given to a joint one as "unknown at strength 0", the condition it
    was trained to read as "coding artefacts only"."""
    check_rgb(rgb, "restore_decoded")
    if model not in shipped_models():  # a name from a file: never joined into a path unchecked
        known = ", ".join(shipped_models())
        raise RestoreModelError(f"no restoration model {model[:40]!r} ships with this icm "
                                f"(it has: {known})")
    path = shipped_model_path(model)
    if degradation == CLEAN:
        if not is_joint(path):
            return rgb.copy()
        degradation, strength = UNKNOWN, 0.0
    return run_network(get_model(path), rgb, degradation, strength)
