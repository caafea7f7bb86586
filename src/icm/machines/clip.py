"""CLIP through open_clip: an embedding, zero-shot labels and caption retrieval per image.

Names are ``clip:<arch>@<weights>``. ``<weights>`` is an open_clip pretrained tag
(``laion2b_s34b_b79k``; open_clip downloads it on first use), a local checkpoint file
(``clip:ViT-B-32@/models/open_clip_pytorch_model.bin``) or ``none`` for random weights. The model
part may instead carry its own weights, as open_clip allows: ``clip:hf-hub:org/repo`` or
``clip:local-dir:/path`` (a folder with ``open_clip_config.json`` and the weights); those take
no ``@weights``.

Fidelity compares the decoded image's embedding with the pristine one (raw cosine, see
``ClipMachine.fidelity``), plus whether the zero-shot top-1 label and the retrieved captions
stay the same. Outputs carry label and caption *texts*, not just indices, so they stay
meaningful when a ledger is re-scored against a different dataset's label set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from icm.image.datasets import Truth
from icm.machines.base import (
    InputProfile,
    Machine,
    MachineSpec,
    Output,
    Scores,
    TorchParts,
)
from icm.machines.registry import MachineUnavailableError, register_machine

#: zero-shot vocabulary when the dataset has no labels: common objects and scenes
DEFAULT_LABELS: tuple[str, ...] = (
    "person", "man", "woman", "child", "baby", "face", "crowd", "dog", "cat", "horse",
    "cow", "sheep", "bird", "fish", "insect", "butterfly", "elephant", "bear", "zebra",
    "giraffe", "car", "truck", "bus", "bicycle", "motorcycle", "train", "airplane", "boat",
    "ship", "rocket", "traffic light", "street sign", "bench", "chair", "couch", "bed",
    "table", "desk", "lamp", "door", "window", "clock", "television", "laptop", "computer",
    "keyboard", "phone", "camera", "book", "newspaper", "document", "sign", "poster", "map",
    "bottle", "cup", "mug", "glass", "plate", "bowl", "knife", "fork", "spoon", "food",
    "fruit", "apple", "banana", "orange", "vegetable", "bread", "cake", "pizza", "flower",
    "tree", "plant", "grass", "leaf", "rock", "mountain", "hill", "beach", "sea", "lake",
    "river", "sky", "cloud", "snow", "forest", "field", "desert", "city", "street",
    "building", "house", "bridge", "tower", "church", "room", "kitchen", "office", "shop",
    "garden", "road", "ball", "toy", "bag", "hat", "shoe", "shirt", "coin", "tool",
    "painting", "statue", "astronaut", "space", "moon", "night",
)  # fmt: skip

#: how each label becomes a text query (CLIP's standard single prompt)
PROMPT = "a photo of a {}"
#: captions kept per image for retrieval (recall@5 needs five)
RETRIEVAL_TOP = 5

_CHECKPOINT_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".safetensors", ".ckpt"})
_SCHEMAS = ("hf-hub:", "local-dir:")
# open_clip's inference resize modes, in the profile's vocabulary
_RESIZE = {"shortest": "shorter-side+center-crop", "longest": "letterbox", "squash": "stretch"}


def torch_device() -> str:
    """The torch device for inference: ``ICM_DEVICE`` (``cuda``, ``cuda:1``, ``mps``), else CPU.

    An accelerator that is asked for but absent falls back to the CPU with a warning rather
    than failing, so the same command line works on a laptop and on a GPU box.
    """
    import torch

    wanted = os.environ.get("ICM_DEVICE", "").strip().lower() or "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"ICM_DEVICE={wanted} but CUDA is unavailable; using the CPU", stacklevel=2)
        return "cpu"
    if wanted == "mps" and not torch.backends.mps.is_available():
        warnings.warn("ICM_DEVICE=mps but MPS is unavailable; using the CPU", stacklevel=2)
        return "cpu"
    return wanted


def offline_cache_miss(repo_id: str, filename: str, revision: str | None = None) -> str | None:
    """Why a Hub model cannot load, when ``HF_HUB_OFFLINE`` is set and it is not cached.

    Only checked offline (with a network a missing model simply downloads), so naming a
    machine fails at once, in one line, instead of in every worker on first use.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return None
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str):
        return None
    return f"{repo_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set"


def file_identity(path: str | os.PathLike[str]) -> str:
    """Size and mtime of a local weights file or folder: cheap, and changes when they change.

    Hashing multi-gigabyte checkpoints on every run would cost more than the bench itself.
    """
    root = Path(path).expanduser()
    entries = sorted(root.iterdir()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for entry in entries:
        if entry.is_file():
            stat = entry.stat()
            digest.update(f"{entry.name}|{stat.st_size}|{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _digest(items: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:12]


def _is_path(weights: str) -> bool:
    """A weights variant names a file (not a tag) when it looks like a path."""
    return (
        "/" in weights
        or os.sep in weights
        or weights.startswith(("~", "."))
        or Path(weights).suffix.lower() in _CHECKPOINT_SUFFIXES
    )


@register_machine(
    "clip:ViT-B-32@laion2b_s34b_b79k",
    "clip:ViT-B-16@openai",
    "clip:hf-hub:timm/ViT-B-16-SigLIP",
)
class ClipMachine(Machine):
    family = "clip"
    wants_gpu = True
    primary = "cosine"
    kinds = frozenset({"photo"})
    summary = "open_clip image embedding, zero-shot labels, caption retrieval"
    install_hint = "CLIP needs open_clip: pip install 'icm[clip]'"
    default_batch = 16
    text_batch: ClassVar[int] = 256

    def __init__(self, spec: MachineSpec) -> None:
        super().__init__(spec)
        self._model: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"
        self._labels: tuple[str, ...] = DEFAULT_LABELS
        self._captions: tuple[str, ...] = ()
        self._text_cache: dict[tuple[str, ...], Any] = {}

    # -- names --------------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        if importlib.util.find_spec("open_clip") is None:
            return "open_clip is not installed"
        if spec.model.startswith(_SCHEMAS):
            schema, _, where = spec.model.partition(":")
            if spec.variant:
                return f"{schema}: models carry their own weights; drop '@{spec.variant}'"
            if schema == "hf-hub":
                return offline_cache_miss(where, "open_clip_config.json")
            return None if Path(where).expanduser().is_dir() else f"no such folder: {where}"
        if not spec.variant:
            return (
                f"name the weights: clip:{spec.model}@<open_clip pretrained tag, "
                "checkpoint path, or none>"
            )
        if _is_path(spec.variant) and not Path(spec.variant).expanduser().is_file():
            return f"no checkpoint file at {spec.variant}"
        return None

    def _open_clip_args(self) -> tuple[str, str | None]:
        """(model_name, pretrained) for open_clip; schemas carry their own weights."""
        if self.spec.model.startswith(_SCHEMAS):
            schema, _, where = self.spec.model.partition(":")
            if schema == "local-dir":
                return f"local-dir:{Path(where).expanduser()}", None
            return self.spec.model, None
        arch = self.spec.model.replace("/", "-")  # open_clip's own spelling of ViT-B/32
        weights = self.spec.variant
        if weights is None or weights.lower() == "none":
            return arch, None
        return arch, str(Path(weights).expanduser()) if _is_path(weights) else weights

    # -- the model ----------------------------------------------------------------------------
    def _load(self) -> Any:
        """Build the model once, on first use: ``get_machine`` and planning stay cheap."""
        if self._model is not None:
            return self._model
        import open_clip

        name, pretrained = self._open_clip_args()
        if not name.startswith(_SCHEMAS) and name not in open_clip.list_models():
            raise MachineUnavailableError(
                f"machine {self.name}: open_clip has no architecture {name!r} "
                "(open_clip.list_models() lists them)"
            )
        self._device = torch_device()
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=pretrained,
                device=self._device,
                # random init must not fetch a text tower's base weights from the hub
                pretrained_text=pretrained is not None,
            )
            self._tokenizer = open_clip.get_tokenizer(name)
        except (RuntimeError, OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
            raise MachineUnavailableError(f"machine {self.name} did not load: {first}") from exc
        self._model, self._preprocess = model.eval(), preprocess
        return self._model

    @property
    def profile(self) -> InputProfile:
        """Input side and resize rule, from the preprocessing open_clip builds for the model."""
        cfg = self._load().visual.preprocess_cfg
        size = cfg["size"]
        if not isinstance(size, int):  # open_clip's (height, width)
            size = int(size[0]) if size[0] == size[1] else (int(size[1]), int(size[0]))
        mode = cfg.get("resize_mode", "shortest")
        return InputProfile(
            size=size,
            resize=_RESIZE.get(mode, mode),
            notes=f"{cfg.get('interpolation', 'bicubic')} resampling",
        )

    def prepare(self, truths: Sequence[Truth]) -> None:
        """Label set = every label in the dataset (else ``DEFAULT_LABELS``); caption pool =
        every caption, each once. Both sorted, so a dataset's order does not matter."""
        labels = sorted({label for truth in truths for label in truth.labels})
        self._labels = tuple(labels) if labels else DEFAULT_LABELS
        self._captions = tuple(sorted({c for truth in truths for c in truth.captions}))

    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        model = self._load()
        outputs: list[Output] = []
        for start in range(0, len(images), self.default_batch):
            features = self._encode_images(model, images[start : start + self.default_batch])
            outputs.extend(self._outputs(model, features))
        return outputs

    # -- the loaded model, for importance providers (icm.importance.providers.clip) ----------
    def model(self) -> Any:
        """The loaded open_clip model (eval mode, on this machine's device)."""
        return self._load()

    def image_input(self, image: np.ndarray) -> Any:
        """The (1, 3, S, S) tensor this machine feeds the model for ``image``."""
        from PIL import Image

        self._load()
        batch = self._preprocess(Image.fromarray(np.ascontiguousarray(image)))
        return batch.unsqueeze(0).to(self._device)

    def preprocess_tensor(self, x: Any) -> Any:
        """(1, 3, H, W) float RGB in 0..255, any size -> this model's input, differentiably.

        The same geometry and normalisation as open_clip's inference transform (the PIL path
        ``predict`` takes), in torch ops so gradients reach the pixels. Resampling is torch's
        antialiased bilinear/bicubic, which are PIL's filters, run as PIL runs them: width
        first, then height, each pass clipped to 0..255 (bicubic overshoots). The clipping
        passes gradients straight through: a pixel in a saturated area still moves the model
        when a codec darkens it, so it must not get a weight of zero. What PIL adds is rounding
        each pass to uint8, which is not differentiable and is left out (at most about 1/255
        before normalisation).
        """
        import torch
        import torch.nn.functional as F

        cfg = self._load().visual.preprocess_cfg
        x = x.to(device=self._device, dtype=torch.float32)
        plan = input_geometry(cfg, *x.shape[-2:])
        height, width = x.shape[-2:]
        for size in ((height, plan.resized[1]), plan.resized):
            if size != tuple(x.shape[-2:]):
                x = F.interpolate(
                    x, size=size, mode=plan.interpolation, antialias=True, align_corners=False
                )
                x = x + (x.clamp(0.0, 255.0) - x).detach()
        if any(plan.pad):
            left, top, right, bottom = plan.pad
            x = F.pad(x, (left, right, top, bottom), value=float(cfg.get("fill_color", 0)))
        top, left = plan.crop
        height, width = plan.size
        x = x[..., top : top + height, left : left + width]
        mean = torch.tensor(_per_channel(cfg["mean"]), device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(_per_channel(cfg["std"]), device=x.device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def torch_parts(self) -> TorchParts:
        """The vision tower as :class:`TorchParts`: ``features`` is the image embedding
        (``encode_image`` before normalisation), on the CPU like every consumer's tensors;
        there are no fixed classes, so no ``logits``."""
        model = self._load()
        return TorchParts(
            module=model.visual,
            prepare=self.preprocess_tensor,
            features=_visual_features,
            logits=None,
            predict=self._predict_with,
        )

    def _predict_with(self, module: Any, rgb: np.ndarray) -> Output:
        """The machine's output for one image, its embedding computed by ``module``."""
        import torch

        model = self._load()
        with torch.inference_mode():
            features = _visual_features(
                module,
                self.preprocess_tensor(
                    torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
                ),
            )
        return self._outputs(model, torch.nn.functional.normalize(features, dim=-1))[0]

    def text_features(self, texts: Sequence[str]) -> Any:
        """Unit-norm text embeddings (CPU), cached per tuple of texts."""
        return self._encode_texts(self._load(), tuple(texts))

    def _encode_images(self, model: Any, images: Sequence[np.ndarray]) -> Any:
        import torch
        from PIL import Image

        batch = torch.stack([self._preprocess(Image.fromarray(image)) for image in images])
        with torch.inference_mode():
            features = model.encode_image(batch.to(self._device)).float()
        return torch.nn.functional.normalize(features, dim=-1).cpu()

    def _encode_texts(self, model: Any, texts: tuple[str, ...]) -> Any:
        """Normalised text embeddings, cached: labels and captions are encoded once per set."""
        import torch

        if texts not in self._text_cache:
            chunks = []
            with torch.inference_mode():
                for start in range(0, len(texts), self.text_batch):
                    tokens = self._tokenizer(list(texts[start : start + self.text_batch]))
                    chunks.append(model.encode_text(tokens.to(self._device)).float().cpu())
            features = torch.cat(chunks) if chunks else torch.zeros(0)
            self._text_cache[texts] = torch.nn.functional.normalize(features, dim=-1)
        return self._text_cache[texts]

    def _outputs(self, model: Any, features: Any) -> list[Output]:
        import torch

        queries = tuple(PROMPT.format(label) for label in self._labels)
        scale = model.logit_scale.detach().exp().item() if hasattr(model, "logit_scale") else 100.0
        probs = (scale * features @ self._encode_texts(model, queries).T).softmax(dim=-1)
        top = probs.topk(min(5, len(self._labels)), dim=-1)
        ranked = None
        if self._captions:
            sims = features @ self._encode_texts(model, self._captions).T
            ranked = torch.argsort(sims, dim=-1, descending=True, stable=True)[:, :RETRIEVAL_TOP]
        vocab = _digest(self._labels)
        outputs = []
        for row, embedding in enumerate(features.tolist()):
            indices = top.indices[row].tolist()
            output: Output = {
                "embedding": [round(value, 6) for value in embedding],
                "zeroshot": {
                    "top1": indices[0],
                    "label": self._labels[indices[0]],
                    "top5": indices,
                    "scores": [round(p, 6) for p in top.values[row].tolist()],
                    "vocab": vocab,
                },
            }
            if ranked is not None:
                output["retrieval"] = {"top": [self._captions[i] for i in ranked[row].tolist()]}
            outputs.append(output)
        return outputs

    # -- scores -------------------------------------------------------------------------------
    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        """``cosine``: raw cosine of the two embeddings, clipped to [0, 1], not ``(1+cos)/2``.

        For one image before and after coding the cosine lives in roughly 0.8-1.0; the affine
        map would squeeze that into 0.9-1.0 and make 0.5 mean "orthogonal", whereas the raw
        value is what CLIP literature reports. Negative cosines (never seen for the same image)
        clip to 0. ``zeroshot_top1``: 1 when the top label is unchanged.
        ``retrieval_top5_overlap``: share of the pristine top-5 captions still in the top 5.
        """
        a = np.asarray(pristine["embedding"], dtype=np.float64)
        b = np.asarray(decoded["embedding"], dtype=np.float64)
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(a @ b) / norm if norm > 0 else 0.0
        scores: Scores = {"cosine": round(min(1.0, max(0.0, cosine)), 6)}
        if "zeroshot" in pristine and "zeroshot" in decoded:
            same = pristine["zeroshot"]["label"] == decoded["zeroshot"]["label"]
            scores["zeroshot_top1"] = float(same)
        if "retrieval" in pristine and "retrieval" in decoded:
            kept = set(pristine["retrieval"]["top"]) & set(decoded["retrieval"]["top"])
            scores["retrieval_top5_overlap"] = len(kept) / max(1, len(pristine["retrieval"]["top"]))
        return scores

    def accuracy(self, output: Output, truth: Truth) -> Scores | None:
        """``recall@1``/``recall@5``: one of the image's own captions ranks first / in the top
        five of the dataset's caption pool; ``zeroshot_correct``: the top label is one of its
        labels."""
        scores: Scores = {}
        if truth.captions and "retrieval" in output:
            own = set(truth.captions)
            top = output["retrieval"]["top"]
            scores["recall@1"] = float(bool(top) and top[0] in own)
            scores["recall@5"] = float(any(caption in own for caption in top[:5]))
        if truth.labels and "zeroshot" in output:
            scores["zeroshot_correct"] = float(output["zeroshot"]["label"] in truth.labels)
        return scores or None

    def default_importance(self) -> str:
        """CoTAM's shallow-attention map of this very model."""
        model = f"{self.spec.model}@{self.spec.variant}" if self.spec.variant else self.spec.model
        return f"clip-attention={model}"

    # -- provenance ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Name, the identity of local weights, and the prompt; not the dataset's label set,
        which ``prepare`` sets after planning (outputs carry a ``vocab`` digest instead)."""
        name, pretrained = self._open_clip_args()
        local = name.removeprefix("local-dir:") if name.startswith("local-dir:") else pretrained
        parts = [self.name, f"prompt={PROMPT}", f"top={RETRIEVAL_TOP}"]
        if local and Path(local).exists():
            parts.append(f"weights={file_identity(local)}")
        return "|".join(parts)

    def versions(self) -> Mapping[str, str]:
        return {name: metadata.version(dist) for name, dist in _DISTRIBUTIONS.items()}


_DISTRIBUTIONS = {"open_clip": "open_clip_torch", "torch": "torch"}


@dataclass(frozen=True)
class InputGeometry:
    """How open_clip's inference transform maps an (H, W) image onto the model's input.

    ``resized`` (h, w) after resampling with ``interpolation``; then ``pad`` (left, top, right,
    bottom) with the fill colour where the resized image is smaller than ``size``; then the
    ``size`` (h, w) window at ``crop`` (top, left).
    """

    resized: tuple[int, int]
    interpolation: str
    pad: tuple[int, int, int, int]
    crop: tuple[int, int]
    size: tuple[int, int]


def input_geometry(cfg: Mapping[str, Any], height: int, width: int) -> InputGeometry:
    """The geometry of open_clip's ``image_transform`` (inference) for ``preprocess_cfg``.

    Mirrors its integer arithmetic exactly: ``shortest`` on a square size is torchvision's
    ``Resize(int)`` (the long side truncated) + ``CenterCrop``; ``shortest`` on a non-square
    size and ``longest`` use ``ResizeKeepRatio`` (sides rounded; the former always bicubic,
    as open_clip builds it) + a centre crop or pad; ``squash`` resizes to the size outright.
    """
    size = cfg["size"]
    target = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    interpolation = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
    mode = cfg.get("resize_mode") or "shortest"
    if mode == "squash":
        resized = target
    elif mode == "shortest" and target[0] == target[1]:
        short, long = sorted((height, width))
        long = int(target[0] * long / short)
        resized = (target[0], long) if height <= width else (long, target[0])
    elif mode in ("shortest", "longest"):
        ratios = (height / target[0], width / target[1])
        ratio = max(ratios) if mode == "longest" else min(ratios)
        resized = (round(height / ratio), round(width / ratio))
        if mode == "shortest":
            interpolation = "bicubic"
    else:
        raise MachineUnavailableError(f"open_clip resize mode {mode!r} is not supported")
    gaps = (max(0, target[0] - resized[0]), max(0, target[1] - resized[1]))
    pad = (gaps[1] // 2, gaps[0] // 2, (gaps[1] + 1) // 2, (gaps[0] + 1) // 2)
    padded = (resized[0] + gaps[0], resized[1] + gaps[1])
    crop = (round((padded[0] - target[0]) / 2.0), round((padded[1] - target[1]) / 2.0))
    return InputGeometry(resized, interpolation, pad, crop, target)


def _per_channel(value: Any) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]
    return values * 3 if len(values) == 1 else values


def _visual_features(module: Any, x: Any) -> Any:
    """The image embedding of prepared input ``x`` by a vision tower (or an adapted copy)."""
    parameter = next(module.parameters(), None)
    if parameter is not None:
        x = x.to(device=parameter.device, dtype=parameter.dtype)
    return module(x).float().cpu()
