"""A machine's multi-level features as a training loss (CoTAM's multi-level feature loss).

Pixel losses (MSE, L1) reward smoothing, and smoothing is what costs a machine its answers. A
codec or restorer trained for a machine also matches the machine's intermediate features of the
clean image: shallow taps keep edges and textures, deeper ones keep what the classifier builds
from them. Used by learned-codec training (``icm.learned``) and restorer training
(``icm.restore``).
"""

from __future__ import annotations

import torch

from icm.errors import IcmError

#: EfficientNet-Lite0 blocks whose outputs are compared (strides 4, 8 and 16)
LITE0_TAPS = (2, 4, 10)
SUPPORTED = ("classify:efficientnet-lite0",)


class MachineFeatures:
    """A frozen machine's multi-level features of images in [0, 1] (differentiable)."""

    def __init__(self, machine: str) -> None:
        from icm.machines import get_machine

        if machine not in SUPPORTED:
            raise IcmError(f"the machine feature loss supports {', '.join(SUPPORTED)}, "
                           f"not {machine!r}")
        self.module = get_machine(machine).torch_parts().module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.module
        h = net._swish(net._bn0(net._conv_stem((x * 255.0 - 127.0) / 128.0)))
        taps = []
        for index, block in enumerate(net._blocks[: max(LITE0_TAPS) + 1]):
            h = block(h)
            if index in LITE0_TAPS:
                taps.append(h)
        return taps


def feature_distortion(features: MachineFeatures, x_hat: torch.Tensor,
                       x: torch.Tensor) -> torch.Tensor:
    """Per image, the mean over taps of ||f(x_hat) - f(x)||^2 / ||f(x)||^2: relative, so each
    tap weighs the same whatever its activation scale."""
    with torch.no_grad():
        reference = features(x)
    terms = [(a - r).pow(2).mean(dim=(1, 2, 3)) / r.pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-8)
             for a, r in zip(features(x_hat), reference, strict=True)]
    return torch.stack(terms).mean(dim=0)
