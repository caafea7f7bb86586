"""The recogniser itself: a multinomial logistic regression on the standardised
:mod:`~icm.degrade.recognise.features` picks the class (``clean`` or a registered degradation)
and a ridge regression per class reads a rough strength. It is a few numpy arrays, stored as a
small ``.npz`` (:meth:`Recogniser.save`, :meth:`Recogniser.load`); ``get_recogniser()`` loads
the one shipped with icm, and :func:`recognise_file` is what ``icm recognise`` calls.
"""

from __future__ import annotations

import functools
import io
import os
import time
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from icm.degrade.recognise.features import FEATURE_VERSION, feature_names, image_features
from icm.degrade.registry import DEGRADATIONS
from icm.errors import IcmError
from icm.fileio import file_digest, read_input, write_atomic
from icm.image import load_image
from icm.limits import DEFAULT_MAX_PIXELS

#: the label of an undamaged image
CLEAN = "clean"
#: the model file shipped in the package
SHIPPED_MODEL = "data/recogniser.npz"
#: standardised features are clipped: an odd photo must not dominate the logits
Z_CLIP = 10.0


class BadModelError(IcmError):
    """A recogniser file that is missing, corrupt, or made for other features or classes."""


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Recognition:
    """What the recogniser sees: the most likely class, its rough strength, every probability.

    ``strength`` is 0 for ``clean``; ``probabilities`` maps every class to its probability.
    """

    name: str
    strength: float
    probabilities: dict[str, float] = field(hash=False)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely classes, most likely first."""
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength,
                "probabilities": dict(self.top(len(self.probabilities)))}


@dataclass(frozen=True, eq=False)
class Recogniser:
    """Standardisation, a softmax classifier and per-class strength regressors, in numpy.

    ``weights`` is ``(classes, features)``; ``strength_weights`` likewise, one ridge regressor
    per class (the ``clean`` row is unused: its strength is 0).
    """

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    strength_weights: np.ndarray
    strength_bias: np.ndarray
    feature_version: int = FEATURE_VERSION

    def _standardised(self, features: np.ndarray) -> np.ndarray:
        return np.clip((features - self.mean) / self.scale, -Z_CLIP, Z_CLIP)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for a ``(n, features)`` array of :func:`image_features` rows."""
        return softmax(self._standardised(np.atleast_2d(features)) @ self.weights.T
                        + self.bias)

    def strengths(self, features: np.ndarray) -> np.ndarray:
        """``(n, classes)``: the strength each class's regressor reads, clipped to [0, 1]."""
        z = self._standardised(np.atleast_2d(features))
        return np.clip(z @ self.strength_weights.T + self.strength_bias, 0.0, 1.0)

    def predict_features(self, features: np.ndarray) -> Recognition:
        """The :class:`Recognition` for one :func:`image_features` vector."""
        probabilities = self.probabilities(features)[0]
        best = int(np.argmax(probabilities))
        name = self.classes[best]
        strength = 0.0 if name == CLEAN else float(self.strengths(features)[0, best])
        return Recognition(name, round(strength, 4),
                           {c: float(p) for c, p in zip(self.classes, probabilities,
                                                        strict=True)})

    def predict(self, rgb: np.ndarray) -> Recognition:
        """Recognise the degradation of an ``(H, W, 3)`` uint8 image."""
        return self.predict_features(image_features(rgb))

    # -- files --------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, classes=np.array(self.classes), feature_names=np.array(feature_names()),
            feature_version=np.array(self.feature_version), mean=self.mean, scale=self.scale,
            weights=self.weights, bias=self.bias, strength_weights=self.strength_weights,
            strength_bias=self.strength_bias)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically as a small ``.npz`` (no pickles inside)."""
        return write_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recogniser:
        """Read a model file, or a one-line :class:`BadModelError` naming it."""
        data = read_input(path, error=BadModelError)
        return cls.from_bytes(data, path)

    @classmethod
    def from_bytes(cls, data: bytes, path: str | os.PathLike[str] = "<bytes>") -> Recogniser:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            model = cls(
                classes=tuple(str(name) for name in arrays["classes"]),
                mean=arrays["mean"].astype(np.float64),
                scale=arrays["scale"].astype(np.float64),
                weights=arrays["weights"].astype(np.float64),
                bias=arrays["bias"].astype(np.float64),
                strength_weights=arrays["strength_weights"].astype(np.float64),
                strength_bias=arrays["strength_bias"].astype(np.float64),
                feature_version=int(arrays["feature_version"]))
            names = tuple(str(name) for name in arrays["feature_names"])
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            raise BadModelError("not a recogniser model (corrupt or not an .npz from "
                                "Recogniser.save)", path) from None
        if model.feature_version != FEATURE_VERSION:
            raise BadModelError(f"recogniser model is for feature version "
                                f"{model.feature_version}, this icm computes version "
                                f"{FEATURE_VERSION}: train it again", path)
        if names != feature_names():
            raise BadModelError("recogniser model was fitted on other features than this icm "
                                "computes: train it again", path)
        model._check(path)
        return model

    def _check(self, path: str | os.PathLike[str]) -> None:
        n_classes, n_features = len(self.classes), len(feature_names())
        shapes = {"mean": (n_features,), "scale": (n_features,),
                  "weights": (n_classes, n_features), "bias": (n_classes,),
                  "strength_weights": (n_classes, n_features), "strength_bias": (n_classes,)}
        for key, shape in shapes.items():
            value = getattr(self, key)
            if value.shape != shape or not np.isfinite(value).all():
                raise BadModelError(f"recogniser model: {key} is {value.shape}, not {shape} "
                                    "finite values", path)
        if (self.scale <= 0).any() or len(set(self.classes)) != n_classes or n_classes < 2:
            raise BadModelError("recogniser model: bad scales or classes", path)
        unknown = [c for c in self.classes if c != CLEAN and c not in DEGRADATIONS]
        if unknown:
            raise BadModelError(f"recogniser model knows degradations this icm does not: "
                                f"{', '.join(unknown)}", path)


@functools.lru_cache(maxsize=1)
def get_recogniser() -> Recogniser:
    """The model shipped with icm (trained on CBSD68 + McMaster), loaded once per process."""
    model_file = resources.files("icm.degrade").joinpath(SHIPPED_MODEL)
    try:
        data = model_file.read_bytes()
    except OSError:
        raise BadModelError("the shipped recogniser model is missing (reinstall icm)",
                            str(model_file)) from None
    return Recogniser.from_bytes(data, str(model_file))


def recogniser_fingerprint() -> str:
    """A short hash of the shipped model's bytes (cached results name the model they used)."""

    return file_digest(str(resources.files("icm.degrade").joinpath(SHIPPED_MODEL)), digits=16)


def recognise_image(rgb: np.ndarray) -> Recognition:
    """Recognise an image's degradation with the shipped model."""
    return get_recogniser().predict(rgb)


def recognise_file(
    source: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    top: int = 3,
) -> dict[str, Any]:
    """Load an image, recognise its degradation (shipped model unless ``model``), report it."""
    recogniser = Recogniser.load(model) if model is not None else get_recogniser()
    rgb = load_image(source, max_pixels=max_pixels)
    start = time.perf_counter()
    result = recogniser.predict(rgb)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    height, width = rgb.shape[:2]
    return {"input": str(source), "name": result.name, "strength": result.strength,
            "top": [{"name": name, "probability": p} for name, p in result.top(top)],
            "probabilities": result.to_json()["probabilities"],
            "model": str(model) if model is not None else "shipped",
            "width": width, "height": height, "recognise_ms": elapsed_ms}
