"""``clip-attention`` and ``prompt``: where a CLIP ViT looks, and where a text prompt is.

Both read the image through the CLIP machine (:mod:`icm.machines.clip`): the same model names
(``ViT-B-32@laion2b_s34b_b79k``, ``ViT-B-16@/models/weights.bin``, ``hf-hub:org/repo``), the
same loading, device (``ICM_DEVICE``) and preprocessing, so a map is about exactly what the
``clip:`` machine will see. Only open_clip's own ``VisionTransformer`` image towers qualify:
ResNet and timm towers have no patch tokens of this shape.

``clip-attention`` follows CoTAM (Liu et al., 2025, "When MLLMs meet compression distortion"):
CLIP's shallow layers scan the whole image broadly, before semantics narrow attention onto a
few summary tokens, so their attention says which regions the encoder reads at all. The map is
the attention each patch *receives* from every other token, averaged over heads and the first
:data:`SHALLOW_LAYERS` blocks (see :func:`received_attention` for why not the CLS row).

``prompt=<text>[@<model>]`` is CLIP patch-to-text relevance: each final patch token goes through
the pooled token's own head (``ln_post``, then ``proj``) into the joint space, and its cosine
with the prompt's text embedding, above the image's mean, is the score. Final-layer CLIP patch
tokens localise coarsely (MaskCLIP and others rework the last block to sharpen them); this is
the plain reading, kept honest rather than clever.

Geometry: the ViT sees a square crop (``shortest``), a letterbox (``longest``) or a squash of
the picture; :func:`input_box` finds, in original pixels, the rectangle its input covers, and
:func:`grid_to_pixels` lays the patch grid over that rectangle (bilinear between patch centres,
to within one model-input pixel of open_clip's rounding). Pixels outside it, which the model
never sees, get the map's minimum: bits spent there cannot change what CLIP reads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from icm.errors import IcmError
from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap
from icm.importance.providers.base import ImportanceProvider
from icm.importance.registry import UnknownImportanceError, register_importance
from icm.machines import KNOWN_MODELS, get_machine, parse_machine
from icm.machines.clip import ClipMachine
from icm.spec import split_qualifier

#: how many leading transformer blocks ``clip-attention`` averages (CoTAM's "shallow layers")
SHALLOW_LAYERS = 3
#: the model both providers use when none is named: the clip machine's first listed one
DEFAULT_MODEL = KNOWN_MODELS[ClipMachine.family][0].removeprefix(f"{ClipMachine.family}:")
_MODEL_HELP = "the clip machine's model without 'clip:' (ViT-B-32@laion2b_s34b_b79k, a path)"


class _ClipProvider(ImportanceProvider):
    """What both providers share: the clip machine, loaded once, and the crop geometry."""

    install_hint = ClipMachine.install_hint
    default_argument = DEFAULT_MODEL

    def __init__(self, argument: str | None = None) -> None:
        super().__init__(argument)
        self._machine: ClipMachine | None = None

    # -- names --------------------------------------------------------------------------------
    @classmethod
    def model_of(cls, argument: str | None) -> str:
        """The clip machine's model spelling inside ``argument`` (no ``clip:`` prefix)."""
        model = (argument or DEFAULT_MODEL).strip()
        return model.removeprefix(f"{ClipMachine.family}:") or DEFAULT_MODEL

    @classmethod
    def unavailable_reason(cls, argument: str | None) -> str | None:
        for module in ("torch", "open_clip"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return ClipMachine.unavailable_reason(parse_machine(cls._machine_name(argument)))

    @classmethod
    def _machine_name(cls, argument: str | None) -> str:
        return f"{ClipMachine.family}:{cls.model_of(argument)}"

    def fingerprint(self) -> str:
        """Provider, its settings and the clip machine's fingerprint (weights' identity)."""
        return f"{self.full_name}|{self._settings()}|{self._clip().fingerprint()}"

    def _settings(self) -> str:
        return ""

    # -- the model ----------------------------------------------------------------------------
    def _clip(self) -> ClipMachine:
        """The clip machine for this provider's model (cheap: weights load in :meth:`_visual`)."""
        if self._machine is None:
            try:
                machine = get_machine(self._machine_name(self.argument))
            except IcmError as exc:
                raise UnknownImportanceError(f"importance {self.full_name!r}: {exc}") from exc
            assert isinstance(machine, ClipMachine)
            self._machine = machine
        return self._machine

    def _visual(self) -> Any:
        """The loaded model's image tower, refused unless it is an open_clip ViT."""
        machine = self._clip()
        try:
            model = machine.model()
        except IcmError as exc:
            raise UnknownImportanceError(f"importance {self.full_name!r}: {exc}") from exc
        visual = model.visual
        if not all(hasattr(visual, key) for key in ("transformer", "grid_size", "ln_post")):
            raise UnknownImportanceError(
                f"importance {self.full_name!r} needs an open_clip ViT image tower; "
                f"{self.model_of(self.argument)} has {type(visual).__name__}"
            )
        return visual

    def _input(self, image: np.ndarray) -> Any:
        """The (1, 3, S, S) tensor the clip machine itself would feed the model."""
        return self._clip().image_input(image)

    def _finish(
        self, grid: np.ndarray, image: np.ndarray, visual: Any, block: int
    ) -> ImportanceMap:
        """Patch grid -> pixels of the original image -> block map."""
        height, width = image.shape[:2]
        cfg = visual.preprocess_cfg
        box = input_box(height, width, cfg["size"], cfg.get("resize_mode", "shortest"))
        dense = grid_to_pixels(grid, height, width, box, fill=float(grid.min()))
        params = {"model": self._clip().name, "grid": f"{grid.shape[1]}x{grid.shape[0]}"}
        return ImportanceMap.from_dense(dense, block, self.full_name, params)


@register_importance
class ClipAttentionProvider(_ClipProvider):
    """CoTAM-style shallow-layer attention of a CLIP ViT."""

    name = "clip-attention"
    summary = "attention CLIP's shallow ViT layers pay each patch (CoTAM); open_clip ViTs"
    argument_help = _MODEL_HELP

    def _settings(self) -> str:
        return f"layers={SHALLOW_LAYERS}|received"

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        import torch

        visual = self._visual()
        blocks = list(visual.transformer.resblocks[:SHALLOW_LAYERS])
        if not all(isinstance(b.attn, torch.nn.MultiheadAttention) for b in blocks):
            raise UnknownImportanceError(
                f"importance {self.full_name!r}: custom attention blocks (qk-norm, scaled "
                "cosine) do not expose their weights; use a standard CLIP ViT"
            )
        with torch.no_grad(), attention_weights(blocks) as captured:
            visual(self._input(image))
        attention = torch.stack(captured).mean(dim=0)[0].float().cpu().numpy()
        rows, cols = visual.grid_size
        grid = received_attention(attention)[-rows * cols :].reshape(rows, cols)
        return self._finish(grid, image, visual, block)


@register_importance
class PromptProvider(_ClipProvider):
    """Where in the image a text prompt is, by CLIP patch-to-text cosine."""

    name = "prompt"
    summary = "CLIP patch-to-text relevance of a prompt (prompt=a red car[@model])"
    argument_help = "<text>[@<clip model>]"
    default_argument = None

    def __init__(self, argument: str | None = None) -> None:
        super().__init__(argument)
        self.text = self.split(argument)[0]
        self._text_embedding: Any = None

    @classmethod
    def split(cls, argument: str | None) -> tuple[str, str]:
        """``'a red car@ViT-B-32@openai'`` -> ``('a red car', 'ViT-B-32@openai')``: the first
        ``@`` ends the text, since model names carry their own ``@weights``."""
        text, model = split_qualifier(argument or "")
        return text, model or DEFAULT_MODEL

    @classmethod
    def model_of(cls, argument: str | None) -> str:
        return super().model_of(cls.split(argument)[1])

    @classmethod
    def unavailable_reason(cls, argument: str | None) -> str | None:
        if not cls.split(argument)[0]:
            return "the prompt text is empty (prompt=<text>[@<clip model>])"
        return super().unavailable_reason(argument)

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        import torch

        visual = self._visual()
        if getattr(visual, "attn_pool", None) is not None or visual.proj is None:
            raise UnknownImportanceError(
                f"importance {self.full_name!r}: the image tower pools by attention or has "
                "no projection, so its patch tokens are not in the joint space"
            )
        with torch.no_grad(), final_tokens(visual) as captured:
            visual(self._input(image))
            patches = visual.ln_post(captured[0][0]) @ visual.proj
        rows, cols = visual.grid_size
        patches = torch.nn.functional.normalize(patches[-rows * cols :].float(), dim=-1)
        cosine = (patches @ self._text().to(patches.device)).cpu().numpy().reshape(rows, cols)
        return self._finish(np.maximum(cosine - cosine.mean(), 0.0), image, visual, block)

    def _text(self) -> Any:
        """The prompt's unit text embedding, encoded once per provider."""

        if self._text_embedding is None:
            self._visual()  # refuses non-ViT towers before any text work
            self._text_embedding = self._clip().text_features([self.text])[0]
        return self._text_embedding


# -- reading the transformer ---------------------------------------------------------------------
@contextmanager
def attention_weights(blocks: list[Any]) -> Iterator[list[Any]]:
    """Collect each block's head-averaged (batch, tokens, tokens) attention during a forward.

    open_clip 3's ``ResidualAttentionBlock`` calls ``nn.MultiheadAttention`` with
    ``need_weights=False`` (the fused path); a forward hook re-runs the module's own
    ``forward`` on the very same inputs with weights on. MultiheadAttention handles
    ``batch_first`` itself and returns weights as (batch, query, key) either way.
    """
    captured: list[Any] = []

    def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        again = {**kwargs, "need_weights": True, "average_attn_weights": True}
        captured.append(module.forward(*args, **again)[1])

    handles = [block.attn.register_forward_hook(hook, with_kwargs=True) for block in blocks]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def final_tokens(visual: Any) -> Iterator[list[Any]]:
    """Collect the transformer's output tokens (batch, tokens, width) during a forward.

    open_clip's ``Transformer.forward`` returns batch-first tokens whatever its internal
    layout, so no transpose is needed here.
    """
    captured: list[Any] = []
    handle = visual.transformer.register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        yield captured
    finally:
        handle.remove()


def received_attention(attention: np.ndarray) -> np.ndarray:
    """How much attention each token receives from the *other* tokens (mean over queries).

    Not the CLS row: in shallow layers the CLS token has gathered nothing yet and is one
    query among hundreds, so its row is noisy; every query's vote is a steadier measure of
    what the encoder reads, and it works for towers that average-pool instead of using CLS.
    The diagonal goes because a token attending to itself says nothing about its neighbours.
    """
    tokens = attention.shape[0]
    return (attention.sum(axis=0) - np.diag(attention)) / max(1, tokens - 1)


# -- geometry ------------------------------------------------------------------------------------
def input_box(
    height: int, width: int, size: int | tuple[int, int], resize_mode: str
) -> tuple[float, float, float, float]:
    """(top, left, box height, box width) in original pixels of what the model input shows.

    ``shortest`` scales the shorter side to fit and centre-crops (box inside the image),
    ``longest`` scales the longer side and pads (box around the image), ``squash`` stretches
    (box = image): open_clip's three inference modes.
    """
    target_h, target_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    scale_y, scale_x = target_h / height, target_w / width
    if resize_mode == "shortest":
        scale_y = scale_x = max(scale_y, scale_x)
    elif resize_mode == "longest":
        scale_y = scale_x = min(scale_y, scale_x)
    elif resize_mode != "squash":
        raise UnknownImportanceError(f"unknown open_clip resize mode {resize_mode!r}")
    box_h, box_w = target_h / scale_y, target_w / scale_x
    return (height - box_h) / 2, (width - box_w) / 2, box_h, box_w


def grid_to_pixels(
    grid: np.ndarray,
    height: int,
    width: int,
    box: tuple[float, float, float, float],
    fill: float,
) -> np.ndarray:
    """A (rows, cols) patch grid laid over ``box`` of a height x width image, bilinear between
    patch centres (nearest beyond the outer centres); pixels outside the box get ``fill``."""
    top, left, box_h, box_w = box
    rows, cols = grid.shape
    y = (np.arange(height) + 0.5 - top) / box_h
    x = (np.arange(width) + 0.5 - left) / box_w
    dense = _linear_weights(y * rows - 0.5, rows) @ grid @ _linear_weights(x * cols - 0.5, cols).T
    inside = np.outer((y >= 0) & (y < 1), (x >= 0) & (x < 1))
    return np.where(inside, dense, fill)


def _linear_weights(positions: np.ndarray, count: int) -> np.ndarray:
    """(len(positions), count) linear-interpolation weights, clamped at both ends."""
    clamped = np.clip(positions, 0, count - 1)
    low = np.floor(clamped).astype(int)
    high = np.minimum(low + 1, count - 1)
    frac = clamped - low
    weights = np.zeros((len(positions), count))
    index = np.arange(len(positions))
    np.add.at(weights, (index, low), 1 - frac)
    np.add.at(weights, (index, high), frac)
    return weights
