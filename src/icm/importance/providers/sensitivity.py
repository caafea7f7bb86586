"""``sensitivity=<machine>``: where degrading the image moves the machine's features most.

For any machine with a torch model (``Machine.torch_parts``; EfficientNet-Lite0 here,
any torch vision encoder through :func:`feature_sensitivity`), the image is blended with a
degraded copy under a per-block mask ``m``: ``x(m) = x + m * (degrade(x) - x)``. The feature
distortion ``D(m) = |f(x(m)) - f(x)|^2 / |f(x)|^2`` is 0 at ``m = 0`` and grows as blocks
degrade. Each block's importance is its integrated gradient: the mean of ``dD/dm_b`` along
``m = t * 1`` for a few ``t`` in (0, 1], times the unit step. By the completeness property of
integrated gradients the block scores add up to ``D(1) - D(0)``, the whole distortion, so the
map says how much of the machine's feature change each block is responsible for.

The gradient at ``m = 0`` alone would be useless: ``D`` is a squared distance, flat at its
minimum. Blocks the model never sees (outside a classifier's centre crop) get no gradient and
score 0, which is the truth for that machine.

The degradation is a Gaussian blur (sigma 2 px at the machine's input scale), the loss that
transform codecs inflict first: high frequencies go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap, grid_shape, normalise
from icm.importance.providers.base import MachineProvider
from icm.importance.registry import UnknownImportanceError, register_importance

DEFAULT_MACHINE = "classify:efficientnet-lite0"
#: points along the straight path from pristine to fully degraded (integrated gradients)
STEPS = (0.25, 0.5, 0.75, 1.0)
BLUR_SIGMA = 2.0

Features = Callable[[Any], Any]


@register_importance
class SensitivityProvider(MachineProvider):
    name = "sensitivity"
    summary = "how much each block moves a differentiable machine's features (integrated grads)"
    argument_help = "MACHINE (a machine with torch features, e.g. classify:efficientnet-lite0)"
    default_argument = DEFAULT_MACHINE
    install_hint = "pip install 'icm[bench]' (torch + EfficientNet-Lite0)"

    @classmethod
    def unavailable_reason(cls, argument: str | None) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed"
        return super().unavailable_reason(argument)

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        parts = self.machine().torch_parts()
        if parts is None:
            raise UnknownImportanceError(
                f"importance sensitivity: machine {self.machine().name} has no differentiable "
                "features (torch models do; ncnn/ONNX ones do not)"
            )
        scores = feature_sensitivity(parts.features_of, image, block)
        params = {"machine": self.machine().name, "blur_sigma": BLUR_SIGMA, "steps": len(STEPS)}
        height, width = image.shape[:2]
        return ImportanceMap(normalise(scores), block, width, height, self.full_name, params)

    def fingerprint(self) -> str:
        return f"{self.full_name}|{self.machine().fingerprint()}|blur{BLUR_SIGMA}|ig{len(STEPS)}"


def feature_sensitivity(
    features: Features, image: np.ndarray, block: int = DEFAULT_BLOCK
) -> np.ndarray:
    """Per-block integrated-gradient attribution of the feature distortion, ``rows x cols``.

    ``features`` maps a (1, 3, H, W) float tensor in 0..255 to any tensor; use this directly
    with your own torch vision encoder. Scores are >= 0 (negative attributions, blocks whose
    blur happens to pull features back, are clipped: they do not deserve extra bits).
    """
    import torch

    height, width = image.shape[:2]
    rows, cols = grid_shape(height, width, block)
    with torch.no_grad():
        pristine = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
        degraded = _blur(pristine, _input_sigma(features, pristine))
        reference = features(pristine)
        scale = reference.pow(2).sum().clamp_min(1e-12)
    total = torch.zeros(rows, cols, dtype=torch.float64)
    for step in STEPS:
        mask = torch.full((1, 1, rows, cols), step, requires_grad=True)
        dense = mask.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :height, :width]
        blended = pristine + dense * (degraded - pristine)
        distortion = (features(blended) - reference).pow(2).sum() / scale
        (grad,) = torch.autograd.grad(distortion, mask)
        total += grad[0, 0].double()
    return np.clip((total / len(STEPS)).numpy(), 0.0, None)


def _input_sigma(features: Features, pristine: Any) -> float:
    """Blur sigma in image pixels equal to ``BLUR_SIGMA`` at about the model's input scale.

    Machines read a downscaled image; a 2-px blur at full resolution would be invisible to a
    224-px classifier looking at a 2000-px photo. The model scale is assumed to be 224 px on
    the shorter side unless the machine says otherwise (the degradation only needs to be
    visible to it, not exact).
    """
    shorter = min(pristine.shape[-2:])
    return BLUR_SIGMA * max(1.0, shorter / getattr(features, "input_side", 224))


def _blur(x: Any, sigma: float) -> Any:
    """Separable Gaussian blur of a (1, C, H, W) tensor with reflect padding."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    pad_h = min(radius, x.shape[-2] - 1)
    pad_w = min(radius, x.shape[-1] - 1)
    x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    horizontal = kernel[None, None, None, :].repeat(channels, 1, 1, 1)
    vertical = kernel[None, None, :, None].repeat(channels, 1, 1, 1)
    if pad_w < radius:
        horizontal = horizontal[..., radius - pad_w : radius + pad_w + 1]
    if pad_h < radius:
        vertical = vertical[..., radius - pad_h : radius + pad_h + 1, :]
    x = F.conv2d(x, horizontal, groups=channels)
    return F.conv2d(x, vertical, groups=channels)
