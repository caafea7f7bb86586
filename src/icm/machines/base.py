"""The machine interface: a model that reads images, and how faithfully it still reads them.

A machine has an input profile (the resolution and preprocessing it consumes), ``predict`` on a
batch of RGB images, and ``fidelity(pristine, decoded)``: how close its output on a decoded image
is to its own output on the pristine image (agreement needs no labels). Where ground truth
exists (rendered text for OCR), ``accuracy(output, truth)`` scores against it.

Outputs are plain JSON-ready dicts so the ledger can store pristine outputs and any run can be
re-scored without re-running the model.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from icm.image.datasets import Truth

THREADS_VARIABLE = "ICM_THREADS"


def math_threads() -> int | None:
    """The math-thread budget a bench worker set for this process, or None (the library's own
    default). ONNX Runtime and ncnn ignore OMP_NUM_THREADS, so their machines pass it on."""
    value = os.environ.get(THREADS_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else None

Output = dict[str, Any]
Scores = dict[str, float]


@dataclass(frozen=True)
class InputProfile:
    """What the machine actually consumes, so codecs and reports can reason about it.

    ``size`` is the square side (or ``(width, height)``) the model resizes to, ``None`` when it
    reads the native resolution (OCR); ``resize`` names how (``shorter-side+center-crop``,
    ``stretch``, ``letterbox``, ``native``); ``max_pixels`` bounds what a VLM tiles.
    """

    size: int | tuple[int, int] | None
    resize: str = "native"
    max_pixels: int | None = None
    notes: str = ""

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The smallest size, same aspect, that still gives the model everything it reads.

        A square ``size`` read through ``shorter-side+center-crop`` or ``stretch`` needs the
        shorter side at ``size``; ``letterbox`` needs the longer side at ``size``; ``native``
        needs every pixel up to ``max_pixels``. Never upscales.
        """
        scale = 1.0
        if self.size is not None:
            side_w, side_h = (self.size, self.size) if isinstance(self.size, int) else self.size
            if self.resize == "letterbox":
                scale = min(side_w / width, side_h / height)
            else:
                scale = max(side_w / width, side_h / height)
        if self.max_pixels is not None:
            scale = min(scale, (self.max_pixels / (width * height)) ** 0.5)
        if scale >= 1.0:
            return width, height
        return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass(frozen=True)
class TorchParts:
    """A machine's torch model in pieces, for training adapters on it (``icm.adapt``).

    ``prepare`` turns a (1, 3, H, W) float RGB tensor in 0..255, at any size, into the model's
    input, differentiably (feature-sensitivity maps differentiate through it);
    ``features(module, x)`` and ``logits(module, x)`` run the given module (the machine's own,
    or an adapted copy) on prepared inputs.
    """

    module: Any
    prepare: Callable[[Any], Any]
    features: Callable[[Any, Any], Any]
    logits: Callable[[Any, Any], Any] | None = None
    #: the machine's output for one image, computed with the given module
    predict: Callable[[Any, np.ndarray], Output] | None = None

    def prepare_image(self, rgb: np.ndarray) -> Any:
        """One (H, W, 3) uint8 RGB image -> the model's (1, 3, h, w) input."""
        import torch

        pixels = torch.from_numpy(np.array(rgb, dtype=np.float32))
        return self.prepare(pixels.permute(2, 0, 1)[None])

    def features_of(self, x: Any) -> Any:
        """The machine's own features of a raw 0..255 tensor (what sensitivity maps
        differentiate)."""
        return self.features(self.module, self.prepare(x))


@dataclass(frozen=True)
class MachineSpec:
    """A parsed machine name: ``family:model[@variant]`` (``clip:ViT-B-32@laion2b_s34b_b79k``)."""

    family: str
    model: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.family}:{self.model}"
        return f"{text}@{self.variant}" if self.variant else text


class Machine(ABC):
    """One model family. Subclasses set the class attributes and implement three methods.

    ``primary`` names the fidelity score that BD tables and plots use; every fidelity score is
    in [0, 1] with 1 meaning "the same answers as on the pristine image" unless its name says
    otherwise (``kl`` is a divergence: lower is better and it is not the primary).
    ``kinds`` says which images the machine is meant for (``photo``, ``document``).
    """

    family: ClassVar[str]
    primary: ClassVar[str]
    kinds: ClassVar[frozenset[str]] = frozenset({"photo", "document"})
    summary: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    default_batch: ClassVar[int] = 8
    #: whether :meth:`tag` gives labels for the semantic side channel
    can_tag: ClassVar[bool] = False
    # True for machines that run faster on a GPU (they read ICM_DEVICE): a Ray bench gives
    # each of their actors one GPU when the cluster has any.
    wants_gpu: ClassVar[bool] = False

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return str(self.spec)

    # -- availability (checked before any model loads) ----------------------------------------
    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        return None

    # -- the model ----------------------------------------------------------------------------
    @property
    @abstractmethod
    def profile(self) -> InputProfile: ...

    @abstractmethod
    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        """Outputs for a batch of (H, W, 3) uint8 RGB images, deterministic for equal input."""

    @abstractmethod
    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        """Agreement of the decoded image's output with the pristine image's, ``primary`` first."""

    def predict_coded(
        self, images: Sequence[np.ndarray], coded: Sequence[tuple[str, float]]
    ) -> list[Output]:
        """Outputs for decoded images whose (codec, bpp) is known. Plain machines ignore it;
        codec-conditional adapted machines (``icm.adapt``) are told."""
        return self.predict(images)

    def prepare(self, truths: Sequence[Truth]) -> None:
        """Called once with every dataset image's truth before predictions (e.g. CLIP builds
        its label set and caption pool for retrieval here). Default: nothing to prepare."""
        return None

    def accuracy(self, output: Output, truth: Truth) -> Scores | None:
        """Score against ground truth when the image has it; None when the family has none."""
        return None

    # -- hooks for machine-aware coding (icm.importance, icm.pipeline.recipe) -----------------
    def fit_size(self, image: np.ndarray) -> tuple[int, int]:
        """(width, height) to resample ``image`` to before coding, losing nothing this machine
        reads. Default: from the input profile; content-aware machines (OCR) override it."""
        height, width = image.shape[:2]
        return self.profile.fit(width, height)

    def torch_parts(self) -> TorchParts | None:
        """The model as :class:`TorchParts` (for adapters and feature-sensitivity maps), or
        None for non-torch machines (ncnn, ONNX)."""
        return None

    def default_importance(self) -> str:
        """The importance provider that serves this machine best (``--for`` uses it)."""
        return "saliency"

    def tag(self, image: np.ndarray, count: int) -> tuple[str, list[int]] | None:
        """The ``count`` most likely labels as ``(vocabulary, ids)`` for the semantic side
        channel, or None when this machine cannot tag."""
        return None

    def fingerprint(self) -> str:
        """Identifies model + weights + preprocessing, so cached outputs are never stale."""
        return self.name

    def versions(self) -> Mapping[str, str]:
        """Library versions that produced the outputs, for the ledger."""
        return {}

