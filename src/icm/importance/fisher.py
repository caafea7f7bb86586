"""How much a machine's output moves per unit of pixel error: the Fisher diagonal.

A codec adds an error ``e`` to the image ``x``. The machine's output distortion ``D(x + e)``
(the KL divergence of its class probabilities, or the relative distance of its features) is
zero and flat at ``e = 0``: its gradient there is zero, so first-order attributions say nothing
about small coding errors. Its second-order term is what matters::

    D(x + e) ~= 1/2 e^T G e,    G = J^T F J

with ``J`` the Jacobian of the model's output (logits or features) with respect to the pixels
and ``F`` the curvature of the output distortion at the pristine output: for softmax logits
``F = diag(p) - p p^T`` (the Fisher information of the class distribution), for features
``F = I / |f|^2``. ``G`` is the Gauss-Newton matrix; it is exact at second order, and positive
semi-definite.

Its diagonal is estimated without forming ``J``: for a random vector ``v`` with identity
covariance (Rademacher signs here, which give the lowest variance), ``u = F^(1/2) v`` and one
vector-Jacobian product ``g = J^T u`` has ``E[g * g] = diag(J^T F J) = diag(G)``. For softmax,
``F^(1/2) v = sqrt(p) * v - p (sqrt(p) . v)`` (check: it squares to ``diag(p) - p p^T`` because
the probabilities sum to 1). So ``probes`` backward passes through the model, after one forward
pass, give ``diag(G)`` for every pixel and channel at once.

Cost: one forward and ``probes`` backward passes at the image's coded size (EfficientNet-Lite0
on a 336x224 fitted photo: about 0.1 s per probe on one CPU core). The estimate is unbiased
with relative noise ``sqrt(2 / probes)`` per pixel, which pooling over a block's 768 samples
(16 x 16 x 3) averages down further; the default of 8 probes is measured in
``benchmarks/machine_aware.py``.

Pixels the model never reads (outside a centre crop, beyond a resampling filter's support) get a
gradient of exactly zero, so their weight is exactly zero: that is the truth for that machine,
and the allocation rule (:mod:`icm.importance.allocation`) codes them at the coarsest level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from icm.importance.maps import block_means

DEFAULT_PROBES = 8
OutputKind = Literal["logits", "features"]


def fisher_diagonal(
    forward: Callable[[Any], Any],
    image: np.ndarray,
    *,
    output: OutputKind = "logits",
    probes: int = DEFAULT_PROBES,
    seed: int = 0,
) -> np.ndarray:
    """``diag(G)`` per pixel and channel, (H, W, 3) float32 >= 0, for one RGB uint8 image.

    ``forward`` maps a (1, 3, H, W) float tensor of 0..255 RGB, at the image's own size, to the
    model's output, differentiably (preprocessing included): ``TorchParts.prepare`` followed by
    the model, for any torch vision model, CLIP and ViTs included. ``output`` says how to read
    that output: ``logits`` of a softmax classifier, or ``features`` (an embedding).
    The estimate is deterministic for a given ``seed``.
    """
    import torch

    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    pixels = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    pixels.requires_grad_(True)
    result = forward(pixels)
    outputs = result.reshape(-1)
    square_root = _curvature_root(outputs.detach().double(), output)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(pixels)
    for probe in range(probes):
        signs = torch.randint(0, 2, outputs.shape, generator=generator).double() * 2 - 1
        direction = square_root(signs).to(outputs.dtype)
        (grad,) = torch.autograd.grad(outputs, pixels, grad_outputs=direction,
                                      retain_graph=probe < probes - 1)
        total += grad.detach() ** 2
    return (total / probes)[0].permute(1, 2, 0).numpy().astype(np.float32)


def _curvature_root(outputs: Any, output: OutputKind) -> Callable[[Any], Any]:
    """``v -> F^(1/2) v`` for the output distortion's curvature ``F`` at ``outputs``."""
    import torch

    if output == "logits":
        probabilities = torch.softmax(outputs, dim=0)
        root = probabilities.sqrt()
        return lambda v: root * v - probabilities * (root @ v)
    if output == "features":
        scale = outputs.norm().clamp_min(1e-12)
        return lambda v: v / scale
    raise ValueError(f"output must be 'logits' or 'features', got {output!r}")


def block_weights(
    pixel_weights: np.ndarray, block: int, residual: np.ndarray | None = None
) -> np.ndarray:
    """Per-block weights ``w_i`` (rows x cols) from per-pixel ``diag(G)`` (H, W, 3).

    Without a residual: the block's mean of ``diag(G)`` over pixels and channels, the output
    distortion per unit of squared sample error if the codec's error were white. With the
    codec's actual residual ``r`` at the base level (decoded minus original):
    ``sum(G r^2) / sum(r^2)``, the same weight measured along the error the codec really
    makes, so a block whose error falls on pixels the model ignores is not protected for the
    pixels it reads. A block with no residual at all (flat, coded exactly) keeps its plain
    mean.
    """
    weights = np.asarray(pixel_weights, dtype=np.float64)
    plain = block_means(weights.mean(axis=2), block)
    if residual is None:
        return plain
    error = np.asarray(residual, dtype=np.float64) ** 2
    weighted = block_means((weights * error).sum(axis=2), block)
    energy = block_means(error.sum(axis=2), block)
    coded = energy > 1e-9
    return np.where(coded, weighted / np.where(coded, energy, 1.0), plain)


def machine_block_weights(parts: Any, image: np.ndarray, block: int,
                          probes: int = DEFAULT_PROBES) -> np.ndarray:
    """Per-block weights of a machine's ``TorchParts`` on ``image``: its Fisher diagonal,
    averaged over ``block``-px blocks (0 where it reads nothing)."""
    forward, kind = machine_output(parts)
    return block_weights(fisher_diagonal(forward, image, output=kind, probes=probes), block)


def machine_output(parts: Any) -> tuple[Callable[[Any], Any], OutputKind]:
    """The forward function and output kind of a machine's ``TorchParts``: its logits where it
    has them (a classifier's fidelity reads probabilities), else its features."""
    if parts.logits is not None:
        return (lambda x: parts.logits(parts.module, parts.prepare(x))), "logits"
    return parts.features_of, "features"
